"""The daemon's in-memory quota model and the pure functions that change and read it.

Nothing here does I/O or awaits: every change happens on the event loop in one synchronous call, so no
reader ever sees half an update. Persistence and the network live at the edges (store, server).

Two rules shape the model:

* A window is one limit, keyed by name and scope (``weekly`` or ``weekly/opus``). A newer reading of
  the same window replaces the older one, whatever its source, so a manual ``set_quota`` wins until a
  poll or a header reports the same window again. Windows of different scopes never hide each other:
  a model is limited by every window that applies to it, account-wide and model-scoped alike.
* Usage only grows inside a window, so a stale reading still bounds what is left from above. Stale
  windows therefore still mark a provider exhausted, but only fresh ones set its remaining fraction.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import msgspec
from bhoga.families import split_vendor
from bhoga.headers import HeaderReading
from bhoga.protocol import (
    Health,
    ProviderKind,
    ProviderQuota,
    ProviderStatus,
    QuotaWindow,
    SetQuotaParams,
    Source,
    Turn,
    WindowKind,
)

from bhogad.config import Config, ProviderConfig

# Consecutive failed turns (5xx, 529, timeouts) before a provider is degraded, then unhealthy.
DEGRADED_AFTER = 2
UNHEALTHY_AFTER = 5


class Availability(msgspec.Struct, kw_only=True):
    """What discovery found on this machine: credentials, a CLI, or nothing (with why)."""

    available: bool
    reason: str


class ProviderState(msgspec.Struct, kw_only=True):
    """Everything remembered about one provider; persisted as one record."""

    id: str
    windows: dict[str, QuotaWindow] = msgspec.field(default_factory=dict)
    cooldown_until: datetime | None = None
    cooldown_reason: str | None = None
    consecutive_failures: int = 0
    last_error: str | None = None
    #: Set by a 401/403 turn: the credentials the harness uses were refused.
    auth_failed_at: datetime | None = None
    n_requests: int = 0
    consumed: int = 0
    last_turn_at: datetime | None = None
    #: When the provider last accepted a harness's credentials (any 2xx/3xx, or a 429: limited, not refused).
    accepted_at: datetime | None = None
    last_poll_at: datetime | None = None
    last_poll_error: str | None = None
    detected: Availability | None = None


class PollResult(msgspec.Struct, kw_only=True):
    """What one discovery run of one provider found."""

    at: datetime
    availability: Availability
    windows: list[QuotaWindow] = msgspec.field(default_factory=list)
    #: Why the poll failed, in words a person can act on ("token expired — run `claude`"); None if ok.
    error: str | None = None


def new_provider(pid: str) -> ProviderState:
    return ProviderState(id=pid)


# --------------------------------------------------------------------------------------------------
# Changes


def merge_windows(p: ProviderState, windows: list[QuotaWindow]) -> bool:
    """Take each window unless we already hold a newer reading of it. Returns whether any changed."""
    changed = False
    for window in windows:
        key = window.key
        held = p.windows.get(key)
        if held is not None and held.updated_at and window.updated_at and held.updated_at > window.updated_at:
            continue
        p.windows[key] = window
        changed = True
    return changed


def apply_poll(p: ProviderState, result: PollResult) -> None:
    """Fold a discovery run in. A failed run keeps the last good windows; they age into staleness."""
    p.detected = result.availability
    p.last_poll_at = result.at
    p.last_poll_error = result.error
    merge_windows(p, result.windows)


def extend_cooldown(p: ProviderState, until: datetime, reason: str) -> bool:
    """Cooldowns only ever grow: a later, shorter report must not release a provider early."""
    if p.cooldown_until is not None and p.cooldown_until >= until:
        return False
    p.cooldown_until = until
    p.cooldown_reason = reason
    return True


def manual_windows(params: SetQuotaParams, kind: ProviderKind, now: datetime) -> list[QuotaWindow]:
    """The windows ``set_quota`` describes.

    Subscriptions get the library's two windows (burst and weekly; weekly defaults to the burst
    figure). An API key has no such windows, so its figure is one ``quota`` window.
    """

    def window(name: str, pct_remaining: float, minutes: int | None) -> QuotaWindow:
        return QuotaWindow(
            name=name,
            pct_used=100.0 - pct_remaining,
            resets_at=params.resets_at,
            window_min=minutes,
            updated_at=now,
            scope=params.model,
            source=Source.MANUAL,
        )

    if kind is ProviderKind.SUBSCRIPTION:
        weekly = params.pct_remaining if params.weekly_pct is None else params.weekly_pct
        return [window("burst", params.pct_remaining, 300), window("weekly", weekly, 10080)]
    windows = [window("quota", params.pct_remaining, None)]
    if params.weekly_pct is not None:
        windows.append(window("weekly", params.weekly_pct, 10080))
    return windows


def is_server_failure(status_code: int) -> bool:
    """Failures that say the provider is struggling (load, outage), not that our quota is spent."""
    return status_code >= 500 or status_code in (408, 0)


def apply_turn(p: ProviderState, turn: Turn, reading: HeaderReading, now: datetime) -> None:
    """Fold one reported model call into the provider's state."""
    at = turn.at or now
    p.n_requests += 1
    p.consumed += turn.input_tokens + turn.output_tokens + turn.cache_read_tokens + turn.cache_write_tokens
    p.last_turn_at = at
    merge_windows(p, reading.windows)
    if reading.cooldown_until is not None and reading.cooldown_until > now:
        extend_cooldown(p, reading.cooldown_until, reading.cooldown_reason or f"HTTP {turn.status_code}")
    code = turn.status_code
    if 200 <= code < 400 or code == 429:
        p.accepted_at = at
    if 200 <= code < 400:
        # One success restores health and proves the harness's credentials work.
        p.consecutive_failures = 0
        p.last_error = None
        p.auth_failed_at = None
    elif code in (401, 403):
        p.auth_failed_at = at
        p.last_error = f"HTTP {code}: credentials refused"
    elif is_server_failure(code):
        p.consecutive_failures += 1
        p.last_error = "HTTP 529: provider overloaded" if code == 529 else f"HTTP {code}: provider error"


# --------------------------------------------------------------------------------------------------
# Reading


def scope_applies(scope: str, model: str) -> bool:
    """Whether a window scoped to ``scope`` limits ``model``.

    ``*`` limits every model. A bare family word (``opus``) limits models that have it as a dash
    token (``claude-opus-4``). Otherwise the scope is a model id and must match it. Scopes like
    ``limit:codex_bengalfox`` name a provider-side limit we cannot map to models, so they limit none.
    """
    if scope == "*" or model == "*":
        return True
    if ":" in scope:
        return False
    bare = split_vendor(model.lower())[1]
    scope = split_vendor(scope.lower())[1]
    return bare == scope or ("-" not in scope and scope in bare.split("-"))


def effective_window(w: QuotaWindow, now: datetime, stale_after: timedelta) -> QuotaWindow:
    """The window as it stands ``now``: reset if its reset time passed, marked stale if too old."""
    if w.resets_at is not None and w.resets_at <= now:
        # A new window began. Usage since the reset is unknown until the next reading, and 0 % is the
        # best estimate at the boundary; the reset is the reading's time, so it is not stale yet.
        next_reset = None
        if w.window_min:
            length = timedelta(minutes=w.window_min)
            periods = (now - w.resets_at) // length + 1
            # Fixed windows (weekly, monthly) roll on; a 5-hour window starts at the next message,
            # which we cannot know, so it stays open-ended.
            next_reset = w.resets_at + periods * length if w.window_min >= 10080 else None
        return msgspec.structs.replace(
            w, pct_used=0.0, remaining=w.limit, resets_at=next_reset, updated_at=w.resets_at, stale=False
        )
    stale = w.updated_at is None or (w.source is not Source.MANUAL and now - w.updated_at > stale_after)
    return msgspec.structs.replace(w, stale=stale) if stale != w.stale else w


class ModelView(msgspec.Struct, kw_only=True):
    """A provider's standing for one model (or ``*``), derived on demand."""

    available: bool
    reason: str
    status: ProviderStatus
    quota_pct: float
    tightest: QuotaWindow | None
    blocking: str | None
    health: Health
    windows: list[QuotaWindow]
    #: The next moment this view changes by time alone (a reset, a cooldown ending, a reading going
    #: stale, availability evidence expiring); ``None`` if nothing is scheduled. Lets callers cache it.
    changes_at: datetime | None = None


def availability(p: ProviderState, pcfg: ProviderConfig | None, cfg: Config, now: datetime) -> Availability:
    """Whether the provider can be recommended on this machine, and why (not)."""
    if pcfg is not None and not pcfg.enabled:
        return Availability(available=False, reason="disabled in config")
    if p.auth_failed_at is not None:
        return Availability(available=False, reason="credentials refused (HTTP 401/403); log in again")
    evidence = timedelta(seconds=cfg.routing.turn_evidence_s)
    if p.accepted_at is not None and now - p.accepted_at <= evidence:
        return Availability(available=True, reason="a harness reported calls it made")
    if any(w.source is Source.MANUAL for w in p.windows.values()):
        return Availability(available=True, reason="quota set by hand")
    if p.detected is not None:
        return p.detected
    return Availability(available=False, reason="no credentials found and no quota set")


def health_of(p: ProviderState) -> Health:
    if p.consecutive_failures >= UNHEALTHY_AFTER:
        return Health.UNHEALTHY
    if p.consecutive_failures >= DEGRADED_AFTER:
        return Health.DEGRADED
    return Health.HEALTHY


def _fmt(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M UTC") if at is not None else "an unknown time"


def model_view(
    p: ProviderState, model: str, pcfg: ProviderConfig | None, cfg: Config, now: datetime
) -> ModelView:
    stale_after = timedelta(seconds=pcfg.stale_after_s if pcfg else 1800.0)
    windows = [
        effective_window(w, now, stale_after) for w in p.windows.values() if scope_applies(w.scope, model)
    ]
    avail = availability(p, pcfg, cfg, now)
    health = health_of(p)

    # The provider-wide picture (``*``) lists every scope but is limited by account-wide windows only.
    limiting = windows if model != "*" else [w for w in windows if w.scope == "*"]
    blocking: str | None = None
    status = ProviderStatus.UNKNOWN
    if p.cooldown_until is not None and p.cooldown_until > now:
        blocking = f"cooling down until {_fmt(p.cooldown_until)} ({p.cooldown_reason})"
        status = ProviderStatus.THROTTLED
    for w in limiting:
        if blocking is None and w.pct_used >= 100.0 and (w.resets_at is None or w.resets_at > now):
            if w.kind is WindowKind.RATE:
                blocking = f"rate limit '{w.key}' empty until {_fmt(w.resets_at)}"
                status = ProviderStatus.THROTTLED
            else:
                blocking = f"'{w.key}' window exhausted until {_fmt(w.resets_at)}"
                status = ProviderStatus.EXHAUSTED

    fresh = [w for w in limiting if w.kind is WindowKind.QUOTA and not w.stale]
    tightest = min(fresh, key=lambda w: w.pct_remaining, default=None)
    quota_pct = tightest.pct_remaining / 100.0 if tightest is not None else -1.0
    if status is ProviderStatus.UNKNOWN and blocking is None:
        if quota_pct < 0:
            status = ProviderStatus.UNKNOWN
        elif quota_pct < cfg.routing.low_fraction:
            status = ProviderStatus.LOW
        else:
            status = ProviderStatus.OK
    if not avail.available:
        status = ProviderStatus.UNAVAILABLE
    return ModelView(
        changes_at=_next_change(p, windows, stale_after, cfg, now),
        available=avail.available,
        reason=avail.reason,
        status=status,
        quota_pct=quota_pct,
        tightest=tightest,
        blocking=blocking,
        health=health,
        windows=windows,
    )


def _next_change(
    p: ProviderState, windows: list[QuotaWindow], stale_after: timedelta, cfg: Config, now: datetime
) -> datetime | None:
    moments = [p.cooldown_until]
    if p.accepted_at is not None:
        moments.append(p.accepted_at + timedelta(seconds=cfg.routing.turn_evidence_s))
    for w in windows:
        moments.append(w.resets_at)
        if not w.stale and w.source is not Source.MANUAL and w.updated_at is not None:
            moments.append(w.updated_at + stale_after)
    return min((m for m in moments if m is not None and m > now), default=None)


def provider_quota(
    p: ProviderState, pcfg: ProviderConfig | None, cfg: Config, now: datetime, model: str = "*"
) -> ProviderQuota:
    """The client-facing record for a provider; ``model="*"`` shows every window of every scope."""
    view = model_view(p, model, pcfg, cfg, now)
    return ProviderQuota(
        provider_id=p.id,
        model_id=model,
        kind=pcfg.kind if pcfg else ProviderKind.API_KEY,
        priority=pcfg.priority if pcfg else 99,
        available=view.available,
        reason=(view.blocking or view.reason) if view.available else view.reason,
        status=view.status,
        quota_pct=view.quota_pct,
        windows={w.key: w for w in view.windows},
        cooldown_until=p.cooldown_until if p.cooldown_until and p.cooldown_until > now else None,
        cooldown_reason=p.cooldown_reason if p.cooldown_until and p.cooldown_until > now else None,
        health=view.health,
        consecutive_failures=p.consecutive_failures,
        last_error=p.last_error,
        n_requests=p.n_requests,
        consumed=p.consumed,
        last_turn_at=p.last_turn_at,
        last_poll_at=p.last_poll_at,
        last_poll_error=p.last_poll_error,
    )


def signature(q: ProviderQuota) -> tuple[object, ...]:
    """What a subscriber would notice changing; used to avoid pushing no-op events."""
    return (
        q.status,
        round(q.quota_pct, 4),
        q.available,
        q.cooldown_until,
        q.health,
        tuple((k, round(w.pct_used, 2), w.resets_at, w.stale) for k, w in sorted(q.windows.items())),
    )
