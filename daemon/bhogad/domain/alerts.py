"""Alerts: which quota events a person should hear about, each exactly once.

``evaluate`` is pure: it takes what the daemon knows now (every provider's quota, each window's
outlook at the current burn) and the record of what was already said (``AlertState``), and returns
the alerts to raise and the new record. The caller persists the record before delivering the alerts,
so a restart neither repeats nor loses one.

The rules (after the field's experience: fire once per crossing per window per reset period, re-arm
on a new reset, treat a window that disappears as *not* a reset, one predictive alert per episode):

* threshold: a window's use reaches a configured percent (80, 95, 100). Once per threshold per
  period; a jump past several thresholds raises only the highest.
* projected_exhaustion: at the current burn the window runs out before it resets. Once per episode;
  re-armed only when a reading says it will last (or the period ends).
* cooldown_start / cooldown_end: a provider starts cooling down (a 429, a limit hit in a log) and
  when that ends. An extended cooldown is the same episode.
* window_reset: a window that had been used passed its reset time.
* unavailable: a provider that was available is not any more (expired or refused login).

A period is identified by the window's reset time. Providers report it with jitter (Anthropic's
moves by fractions of a second between readings), so a reset time within ``_SAME_PERIOD`` of the
held one is the same period.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Final

import msgspec

from bhoga.protocol import Alert, AlertKind, ProviderQuota, QuotaWindow, WindowKind

_SAME_PERIOD: Final = timedelta(minutes=30)
#: Fired keys are forgotten this long after they fired (every period they belong to is over).
_FORGET_AFTER: Final = timedelta(days=62)


class AlertRules(msgspec.Struct, kw_only=True, frozen=True):
    thresholds: tuple[float, ...] = (80.0, 95.0, 100.0)
    projected: bool = True
    #: Early in a window a few calls make any average burn look fatal; say nothing below this use.
    projected_from_pct: float = 40.0
    cooldowns: bool = True
    resets: bool = True
    unavailable: bool = True


class AlertState(msgspec.Struct, kw_only=True):
    """What has been said already; persisted whole after every change."""

    #: Key of every alert fired (with its period), and when.
    fired: dict[str, datetime] = msgspec.field(default_factory=dict)
    #: ``provider|window`` → the reset time of the period last seen (None: not known).
    periods: dict[str, datetime | None] = msgspec.field(default_factory=dict)
    #: ``provider|window`` → percent used at the last reading (a reset of an unused window is no news).
    used: dict[str, float] = msgspec.field(default_factory=dict)
    #: ``provider|window`` windows inside a projected-exhaustion episode.
    at_risk: list[str] = msgspec.field(default_factory=list)
    #: provider → the end of the cooldown announced.
    cooldowns: dict[str, datetime] = msgspec.field(default_factory=dict)
    #: provider → whether it was available at the last look.
    available: dict[str, bool] = msgspec.field(default_factory=dict)


class Outlook(msgspec.Struct, kw_only=True, frozen=True):
    """A window's projection at its current burn (from ``pace.outlook``)."""

    lasts: bool
    #: Hours until empty at the current burn; None when nothing burns it.
    empty_in_h: float | None = None


def _fmt(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M UTC") if at is not None else "an unknown time"


def _period_id(at: datetime | None) -> str:
    return at.isoformat(timespec="minutes") if at is not None else "open"


def evaluate(
    state: AlertState,
    quotas: Sequence[ProviderQuota],
    outlooks: Mapping[tuple[str, str], Outlook],
    rules: AlertRules,
    now: datetime,
) -> tuple[AlertState, list[Alert]]:
    """The alerts ``quotas`` call for now, and the record to keep. ``state`` is not changed."""
    st = msgspec.structs.replace(
        state,
        fired=dict(state.fired),
        periods=dict(state.periods),
        used=dict(state.used),
        at_risk=list(state.at_risk),
        cooldowns=dict(state.cooldowns),
        available=dict(state.available),
    )
    alerts: list[Alert] = []

    def fire(key: str, alert: Alert) -> None:
        if key not in st.fired:
            st.fired[key] = now
            alerts.append(alert)

    for q in quotas:
        pid = q.provider_id
        _availability(st, q, rules, now, alerts)
        _cooldown(st, q, rules, now, alerts)
        for w in sorted(q.windows.values(), key=lambda w: w.key):
            if w.kind is not WindowKind.QUOTA:
                continue
            _window(st, pid, w, outlooks.get((pid, w.key)), rules, now, fire)
    st.fired = {k: at for k, at in st.fired.items() if now - at < _FORGET_AFTER}
    return st, alerts


def _window(
    st: AlertState,
    pid: str,
    w: QuotaWindow,
    outlook: Outlook | None,
    rules: AlertRules,
    now: datetime,
    fire: Callable[[str, Alert], None],
) -> None:
    wid = f"{pid}|{w.key}"
    held = st.periods.get(wid)
    known = wid in st.periods
    new_period = not known
    if known and held is not None and now >= held:
        # The held period's reset time passed: that window reset, whatever this reading says.
        new_period = True
        if rules.resets and st.used.get(wid, 0.0) > 0.0:
            fire(
                f"reset|{wid}|{_period_id(held)}",
                Alert(
                    kind=AlertKind.WINDOW_RESET,
                    provider=pid,
                    at=now,
                    window=w.key,
                    pct_used=w.pct_used,
                    resets_at=w.resets_at,
                    message=f"{pid} '{w.key}' window reset at {_fmt(held)}",
                ),
            )
    elif known and w.resets_at is not None and (held is None or w.resets_at - held > _SAME_PERIOD):
        new_period = True  # a reading of a later period (the reset passed while we did not look)
    if new_period:
        st.periods[wid] = w.resets_at
        if wid in st.at_risk:
            st.at_risk.remove(wid)
    elif w.resets_at is not None and held is None:
        st.periods[wid] = w.resets_at
    period = _period_id(st.periods.get(wid))
    if w.stale:
        st.used[wid] = w.pct_used
        return
    crossed = [t for t in rules.thresholds if w.pct_used >= t]
    if crossed:
        top = max(crossed)
        key = f"threshold|{wid}|{top:g}|{period}"
        unsaid = key not in st.fired
        for t in crossed:  # the lower ones are implied by the highest
            if t != top:
                st.fired.setdefault(f"threshold|{wid}|{t:g}|{period}", now)
        if unsaid:
            verb = "is used up" if top >= 100 else f"is {w.pct_used:.0f}% used"
            fire(
                key,
                Alert(
                    kind=AlertKind.THRESHOLD,
                    provider=pid,
                    at=now,
                    window=w.key,
                    pct_used=w.pct_used,
                    threshold=top,
                    resets_at=w.resets_at,
                    message=f"{pid} '{w.key}' {verb} (≥{top:g}%); resets {_fmt(w.resets_at)}",
                ),
            )
    if rules.projected and outlook is not None and w.pct_used < 100.0:
        if outlook.lasts:
            if wid in st.at_risk:
                st.at_risk.remove(wid)  # re-armed: a reading says it will last
        elif wid not in st.at_risk and w.pct_used >= rules.projected_from_pct:
            st.at_risk.append(wid)
            eta = f" in about {outlook.empty_in_h:.1f} h" if outlook.empty_in_h is not None else ""
            fire(
                f"projected|{wid}|{period}|{now.isoformat(timespec='minutes')}",
                Alert(
                    kind=AlertKind.PROJECTED_EXHAUSTION,
                    provider=pid,
                    at=now,
                    window=w.key,
                    pct_used=w.pct_used,
                    resets_at=w.resets_at,
                    message=f"{pid} '{w.key}' will run out{eta} at the current pace, before it resets "
                    f"{_fmt(w.resets_at)}",
                ),
            )
    st.used[wid] = w.pct_used


def _cooldown(
    st: AlertState, q: ProviderQuota, rules: AlertRules, now: datetime, alerts: list[Alert]
) -> None:
    pid = q.provider_id
    held = st.cooldowns.get(pid)
    until = q.cooldown_until
    if until is not None and until > now:
        if held is None:
            if rules.cooldowns:
                alerts.append(
                    Alert(
                        kind=AlertKind.COOLDOWN_START,
                        provider=pid,
                        at=now,
                        resets_at=until,
                        message=f"{pid} is cooling down until {_fmt(until)}: "
                        f"{q.cooldown_reason or 'rate limited'}",
                    )
                )
            st.cooldowns[pid] = until
        elif until > held:
            st.cooldowns[pid] = until  # the same episode, extended
    elif held is not None:
        del st.cooldowns[pid]
        if rules.cooldowns:
            alerts.append(
                Alert(
                    kind=AlertKind.COOLDOWN_END,
                    provider=pid,
                    at=now,
                    message=f"{pid} cooldown is over; it can be used again",
                )
            )


def _availability(
    st: AlertState, q: ProviderQuota, rules: AlertRules, now: datetime, alerts: list[Alert]
) -> None:
    pid = q.provider_id
    was = st.available.get(pid)
    st.available[pid] = q.available
    if was and not q.available and rules.unavailable and q.reason != "disabled in config":
        alerts.append(
            Alert(
                kind=AlertKind.UNAVAILABLE,
                provider=pid,
                at=now,
                message=f"{pid} is unavailable: {q.reason}",
            )
        )
