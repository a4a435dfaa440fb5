"""The one quota model: what a window means now, what a provider's windows add up to, and how
readings and cooldowns merge.

Both sides decide with these functions: the library's ``calibrate``/``mark_throttled`` (through
``bhoga.quota.headers``) and the daemon's state (``bhogad.domain.state``). Each rule is a small named
pure function so a change to one (say, readings that must be monotone within a period) is one local
edit that both sides get. All datetimes here are aware UTC; callers convert at their boundary.

The semantics (README "How ranking works"):

* A window past its reset counts as reset: 0 % used, read at the reset, fresh.
* A reading older than the provider's staleness horizon is stale: it no longer sets the remaining
  fraction, but since usage only grows within a window, a stale 100 % still blocks until its reset.
  A window never read (no ``updated_at``) is stale. Manual windows do not age.
* The remaining fraction is that of the tightest fresh *quota* window; rate buckets block while
  empty (``throttled``) but say nothing about how much of a budget is left.
* A cooldown only grows, and never beyond :data:`bhoga.quota.values.LONGEST_WINDOW` from now.
* A newer reading of a window replaces an older one, whatever its source; but inside one reset
  period usage only grows, so a lower reading with the same reset keeps the higher figure
  (:func:`monotone`).
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from datetime import datetime, timedelta
from typing import Final

import msgspec

from bhoga.protocol import ProviderStatus, QuotaWindow, Source, WindowKind
from bhoga.quota.families import split_vendor
from bhoga.quota.values import MAX_WINDOWS, bound_cooldown

__all__ = [
    "LOW_FRACTION",
    "Standing",
    "cap_windows",
    "effective_window",
    "grow_cooldown",
    "limiting_windows",
    "monotone",
    "scope_applies",
    "standing",
    "supersedes",
]

#: Below 10 % remaining a provider is ``low`` (the library's threshold, kept).
LOW_FRACTION: Final = 0.10

#: Fixed windows at least this long (weekly, monthly) roll on at their length after a reset; a
#: 5-hour window starts at the next message, which we cannot know.
_ROLLING_FROM_MIN: Final = 10080


# --------------------------------------------------------------------------------------------------
# One window, now


def effective_window(w: QuotaWindow, now: datetime, stale_after: timedelta | None) -> QuotaWindow:
    """The window as it stands ``now``: reset if its reset time passed, marked stale if too old.

    ``stale_after`` is the provider's staleness horizon; ``None`` (the library, which knows none)
    keeps the window's own ``stale`` mark.
    """
    if w.resets_at is not None and w.resets_at <= now:
        # A new window began. Usage since the reset is unknown until the next reading, and 0 % is the
        # best estimate at the boundary; the reset is the reading's time, so it is not stale yet.
        next_reset = None
        if w.window_min and w.window_min >= _ROLLING_FROM_MIN:
            length = timedelta(minutes=w.window_min)
            periods = (now - w.resets_at) // length + 1
            next_reset = w.resets_at + periods * length
        return msgspec.structs.replace(
            w, pct_used=0.0, remaining=w.limit, resets_at=next_reset, updated_at=w.resets_at, stale=False
        )
    if w.updated_at is None:
        stale = True
    elif stale_after is None:
        stale = w.stale
    else:
        stale = w.source is not Source.MANUAL and now - w.updated_at > stale_after
    return msgspec.structs.replace(w, stale=stale) if stale != w.stale else w


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


def limiting_windows(windows: Iterable[QuotaWindow], model: str) -> list[QuotaWindow]:
    """The windows that limit ``model``; the provider-wide picture (``*``) is limited by account-wide
    windows only, though it lists every scope."""
    if model == "*":
        return [w for w in windows if w.scope == "*"]
    return [w for w in windows if scope_applies(w.scope, model)]


# --------------------------------------------------------------------------------------------------
# A provider's windows together


class Standing(msgspec.Struct, kw_only=True):
    """What a provider's limiting windows and cooldown say for one model now."""

    status: ProviderStatus
    #: Remaining fraction of the tightest fresh quota window, 0..1, or -1.0 when unknown.
    quota_pct: float
    tightest: QuotaWindow | None
    #: Why requests cannot go through now (cooldown, full window), in words; ``None`` if they can.
    blocking: str | None
    #: The fresh quota windows, the ones that set the fraction.
    fresh: list[QuotaWindow]


def fmt_time(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M UTC") if at is not None else "an unknown time"


def standing(
    limiting: list[QuotaWindow],
    cooldown_until: datetime | None,
    cooldown_reason: str | None,
    now: datetime,
    low_fraction: float = LOW_FRACTION,
) -> Standing:
    """Status and remaining fraction from *effective* limiting windows and the cooldown.

    A live cooldown throttles. Otherwise the first full window blocks: an empty rate bucket
    throttles (it refills within minutes), a full quota window exhausts. Availability is the
    caller's to overlay: whether a provider can be used on this machine is not a window's question.
    """
    blocking: str | None = None
    status = ProviderStatus.UNKNOWN
    if cooldown_until is not None and cooldown_until > now:
        blocking = f"cooling down until {fmt_time(cooldown_until)} ({cooldown_reason})"
        status = ProviderStatus.THROTTLED
    if blocking is None:
        for w in limiting:
            if w.pct_used >= 100.0 and (w.resets_at is None or w.resets_at > now):
                if w.kind is WindowKind.RATE:
                    blocking = f"rate limit '{w.key}' empty until {fmt_time(w.resets_at)}"
                    status = ProviderStatus.THROTTLED
                else:
                    blocking = f"'{w.key}' window exhausted until {fmt_time(w.resets_at)}"
                    status = ProviderStatus.EXHAUSTED
                break
    fresh = [w for w in limiting if w.kind is WindowKind.QUOTA and not w.stale]
    tightest = min(fresh, key=lambda w: w.pct_remaining, default=None)
    quota_pct = tightest.pct_remaining / 100.0 if tightest is not None else -1.0
    if blocking is None:
        if quota_pct < 0:
            status = ProviderStatus.UNKNOWN
        elif quota_pct < low_fraction:
            status = ProviderStatus.LOW
        else:
            status = ProviderStatus.OK
    return Standing(status=status, quota_pct=quota_pct, tightest=tightest, blocking=blocking, fresh=fresh)


# --------------------------------------------------------------------------------------------------
# Changes: merging readings, growing cooldowns


def supersedes(new: QuotaWindow, held: QuotaWindow | None) -> bool:
    """Whether a reading replaces the held one of the same key: unless the held one is newer.

    Newest wins whatever the source: a header reading taken after a poll replaces the poll's figure,
    and holds until a poll (or another response) reports the same window later still. A reading
    that cannot be placed in time (no ``updated_at`` on either side) replaces the held one.
    """
    if held is None or held.updated_at is None or new.updated_at is None:
        return True
    return held.updated_at <= new.updated_at


#: Readings whose resets differ by no more than this belong to one period ("seconds from now"
#: resets drift by the response time).
_RESET_JITTER: Final = timedelta(minutes=1)


def monotone(new: QuotaWindow, held: QuotaWindow | None) -> QuotaWindow:
    """The reading to keep once ``new`` supersedes ``held``: inside one reset period usage only
    grows, so a lower reading of the same window with the same reset is noise and keeps the higher
    figure (with the newer time). A reading set by hand, or one whose reset moved (a new period,
    Codex's unscheduled early resets too), stands as it is."""
    if held is None or new.pct_used >= held.pct_used or new.source is Source.MANUAL:
        return new
    if held.source is Source.MANUAL or new.resets_at is None or held.resets_at is None:
        return new
    if abs(new.resets_at - held.resets_at) > _RESET_JITTER:
        return new
    remaining = new.remaining
    if held.remaining is not None and remaining is not None:
        remaining = min(remaining, held.remaining)
    return msgspec.structs.replace(new, pct_used=held.pct_used, remaining=remaining)


def cap_windows(windows: MutableMapping[str, QuotaWindow], limit: int = MAX_WINDOWS) -> list[str]:
    """Forget windows beyond ``limit``; returns the keys forgotten.

    A response can name limits of its own making (``x-<anything>-primary-used-percent``); without a
    cap they would pile up in state forever. Limits that no model maps to (``limit:<id>`` scopes,
    which is what such inventions become) go first, then the windows read longest ago, so a flood
    of invented names cannot push out the account's real windows or a quota set by hand.
    """
    if len(windows) <= limit:
        return []
    floor = datetime.min

    def keep_first(key: str) -> tuple[bool, bool, datetime]:
        w = windows[key]
        at = w.updated_at
        return (not w.scope.startswith("limit:"), at is not None, at.replace(tzinfo=None) if at else floor)

    dropped = sorted(windows, key=keep_first)[: len(windows) - limit]
    for key in dropped:
        del windows[key]
    return dropped


def grow_cooldown(held: datetime | None, until: datetime, now: datetime) -> datetime | None:
    """The new end of a cooldown asked to last ``until``, or ``None`` when the held one stands.

    A cooldown only grows: a short retry-after arriving after a long usage-limit stop must not
    reopen a provider that is still refusing requests. And it never ends later than the longest
    real window from now, however far ahead a server (or an old record) says.
    """
    until = bound_cooldown(until, now)
    if held is not None and held >= until:
        return None
    return until
