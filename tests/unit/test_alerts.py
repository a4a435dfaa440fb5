"""The alert rules (pure): once per threshold per period, episodes for projections and cooldowns,
resets, availability; and, by property, never twice for one window, threshold and period."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
from hypothesis import given, settings, strategies as st

from bhoga.protocol import Alert, AlertKind, ProviderQuota, QuotaWindow, Source
from bhogad.domain.alerts import AlertRules, AlertState, Outlook, evaluate

T0 = datetime(2026, 9, 24, 12, 0, tzinfo=UTC)
RESET = T0 + timedelta(hours=3)
RULES = AlertRules()


def quota(
    pct: float, *, resets: datetime | None = RESET, available: bool = True, **kw: object
) -> ProviderQuota:
    w = QuotaWindow(
        name="burst", pct_used=pct, resets_at=resets, window_min=300, updated_at=T0, source=Source.OAUTH
    )
    return ProviderQuota(provider_id="claude_code", available=available, windows={"burst": w}, **kw)  # type: ignore[arg-type]


def step(
    state: AlertState, q: ProviderQuota, now: datetime, outlooks: dict[tuple[str, str], Outlook] | None = None
) -> tuple[AlertState, list[Alert]]:
    new, alerts = evaluate(state, [q], outlooks or {}, RULES, now)
    # What is stored must come back the same (it survives a restart as bytes).
    assert msgspec.json.decode(msgspec.json.encode(new), type=AlertState) == new
    return new, alerts


def kinds(alerts: list[Alert]) -> list[tuple[str, float | None]]:
    return [(a.kind.value, a.threshold) for a in alerts]


def test_thresholds_once_per_period_and_jumps_raise_the_highest() -> None:
    s = AlertState()
    s, a = step(s, quota(50), T0)
    assert a == []
    s, a = step(s, quota(81), T0 + timedelta(minutes=1))
    assert kinds(a) == [("threshold", 80.0)] and "81% used" in a[0].message
    s, a = step(s, quota(85), T0 + timedelta(minutes=2))
    assert a == []
    s, a = step(s, quota(100), T0 + timedelta(minutes=3))  # jumped past 95 to 100
    assert kinds(a) == [("threshold", 100.0)] and "used up" in a[0].message
    s, a = step(s, quota(96), T0 + timedelta(minutes=4))  # 95 is implied by 100: not said again
    assert a == []
    # The reset time jitters by a second between readings: the same period.
    s, a = step(s, quota(100, resets=RESET + timedelta(seconds=1)), T0 + timedelta(minutes=5))
    assert a == []


def test_new_period_rearms_and_a_used_window_reports_its_reset() -> None:
    s = AlertState()
    s, _ = step(s, quota(90), T0)
    later = RESET + timedelta(minutes=1)
    s, a = step(s, quota(0, resets=None), later)  # the effective window after its reset
    assert kinds(a) == [("window_reset", None)]
    s, a = step(s, quota(82, resets=RESET + timedelta(hours=5)), later + timedelta(hours=1))
    assert kinds(a) == [("threshold", 80.0)]
    s, a = step(s, quota(83, resets=RESET + timedelta(hours=5)), later + timedelta(hours=2))
    assert a == []


def test_a_window_that_disappears_is_not_a_reset() -> None:
    s = AlertState()
    s, _ = step(s, quota(90), T0)
    gone = ProviderQuota(provider_id="claude_code", available=True)
    s, a = step(s, gone, T0 + timedelta(minutes=5))
    assert a == []
    s, a = step(s, quota(90), T0 + timedelta(minutes=10))
    assert a == []  # back, same period: nothing new


def test_stale_readings_raise_nothing() -> None:
    s = AlertState()
    q = quota(99)
    q.windows["burst"].stale = True
    s, a = step(s, q, T0)
    assert a == []


def test_projected_exhaustion_once_per_episode() -> None:
    s = AlertState()
    risky = {("claude_code", "burst"): Outlook(lasts=False, empty_in_h=1.5)}
    fine = {("claude_code", "burst"): Outlook(lasts=True, empty_in_h=9.0)}
    s, a = step(s, quota(10), T0 - timedelta(minutes=5), risky)
    assert a == []  # too early in the window to say
    s, a = step(s, quota(40), T0, risky)
    assert kinds(a) == [("projected_exhaustion", None)] and "1.5 h" in a[0].message
    s, a = step(s, quota(45), T0 + timedelta(minutes=5), risky)
    assert a == []
    s, a = step(s, quota(46), T0 + timedelta(minutes=10), fine)  # re-armed
    assert a == []
    s, a = step(s, quota(60), T0 + timedelta(minutes=15), risky)
    assert kinds(a) == [("projected_exhaustion", None)]


def test_cooldown_start_extension_and_end() -> None:
    s = AlertState()
    until = T0 + timedelta(minutes=30)
    s, a = step(s, quota(10, cooldown_until=until, cooldown_reason="HTTP 429"), T0)
    assert kinds(a) == [("cooldown_start", None)] and "HTTP 429" in a[0].message
    s, a = step(s, quota(10, cooldown_until=until + timedelta(minutes=5)), T0 + timedelta(minutes=1))
    assert a == []  # extended: the same episode
    s, a = step(s, quota(10), until + timedelta(minutes=6))
    assert kinds(a) == [("cooldown_end", None)]
    s, a = step(s, quota(10), until + timedelta(minutes=7))
    assert a == []


def test_unavailable_only_after_being_available() -> None:
    s = AlertState()
    s, a = step(s, quota(10, available=False, reason="not signed in"), T0)
    assert a == []  # a provider this machine never had is no news
    s, a = step(s, quota(10), T0 + timedelta(minutes=1))
    s, a = step(s, quota(10, available=False, reason="Claude Code token expired"), T0 + timedelta(minutes=2))
    assert kinds(a) == [("unavailable", None)] and "token expired" in a[0].message
    s, a = step(s, quota(10, available=False, reason="Claude Code token expired"), T0 + timedelta(minutes=3))
    assert a == []


def test_rules_switch_kinds_off() -> None:
    rules = AlertRules(thresholds=(50.0,), cooldowns=False)
    until = T0 + timedelta(minutes=30)
    _, a = evaluate(AlertState(), [quota(60, cooldown_until=until)], {}, rules, T0)
    assert kinds(a) == [("threshold", 50.0)]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 120), st.integers(0, 2), st.integers(0, 50)), min_size=1, max_size=40))
def test_never_twice_per_threshold_and_period(readings: list[tuple[float, int, int]]) -> None:
    """Whatever the readings (in any order of percent, over up to three periods, with jitter in the
    reset time), each threshold fires at most once per period, and only when reached."""
    s = AlertState()
    now = T0
    said: list[tuple[float | None, datetime | None]] = []
    for pct, period, jitter_s in sorted(readings, key=lambda r: r[1]):
        resets = RESET + timedelta(hours=5 * period, seconds=jitter_s)
        now = max(now, resets - timedelta(hours=3)) + timedelta(seconds=1)
        s, alerts = evaluate(s, [quota(pct, resets=resets)], {}, RULES, now)
        for a in alerts:
            if a.kind is AlertKind.THRESHOLD:
                assert a.pct_used is not None and a.threshold is not None and a.pct_used >= a.threshold
                said.append((a.threshold, RESET + timedelta(hours=5 * period)))
    assert len(said) == len(set(said))
