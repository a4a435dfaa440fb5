"""Turn provider response headers (and error bodies) into quota windows and cooldowns.

Everything here is a pure function of its arguments: no I/O and no clock reads, except that the two
library-compatible helpers (``calibrate``, ``mark_throttled``) use the current time when the caller
passes no ``now``. The module lives in the thin client, so it imports only the standard library and
msgspec.

The shapes read here are in ``reference/provider-wire-spec.md``: Anthropic API buckets (§2), Anthropic
subscription "unified" headers (§1.4), Codex ``x-codex-*`` families and the usage-limit 429 body
(§3.3), OpenAI and Copilot ``x-ratelimit-*`` with Go durations (§4, §5) and OpenRouter's
``X-RateLimit-*`` with unix-millisecond resets (§6).

Two rules hold throughout. Nothing raises on bad input: a value that does not parse is "not
reported", never zero and never a crash. And every datetime that leaves this module is timezone-aware
UTC, because comparing naive and aware datetimes is the crash the old library shipped.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Final, NamedTuple

import msgspec

from bhoga.protocol import ProviderQuota, ProviderStatus, QuotaWindow, Source, WindowKind
from bhoga.quota import model
from bhoga.quota.values import (
    LONGEST_WINDOW,
    MAX_FAMILIES,
    MAX_FAMILY_NAME,
    after,
    as_utc,
    bound_cooldown,
    clamp_pct,
    flag,
    go_duration,
    label,
    length_name,
    minutes as _minutes,
    number,
    plausible_end,
    raw_text,
    reset,
    retry_after,
    shift,
    window_problem,
)

__all__ = [
    "HeaderReading",
    "apply_reading",
    "calibrate",
    "mark_throttled",
    "normalise_headers",
    "parse_go_duration",
    "parse_reset",
    "parse_retry_after",
    "read_response",
    "refresh_status",
    "window_name",
]


class HeaderReading(msgspec.Struct, kw_only=True):
    """What one response says about quota: its windows, and whether to stop sending for a while."""

    #: Every window the headers describe, with ``source=headers`` and ``updated_at`` = the reading time.
    windows: list[QuotaWindow]
    #: Set only when the response says "stop until" (a 429, or a rejected subscription window).
    cooldown_until: datetime | None = None
    cooldown_reason: str | None = None
    plan: str | None = None
    #: Credit and extra-usage state as short labels (``has_credits``, ``balance``, ``overage_status``).
    credits: dict[str, str] = {}
    #: Human names of non-default Codex limits, by limit id (``codex_bengalfox`` → ``GPT-5.3-Codex-Spark``).
    limit_names: dict[str, str] = {}


# --------------------------------------------------------------------------------------------------
# Value parsers: the shared ones in bhoga.quota.values, under the names this module has always used

_text = raw_text
_number = number
_flag = flag
_label = label
_as_utc = as_utc
_after = shift
_clamp_pct = clamp_pct
parse_go_duration = go_duration


def _fmt_seconds(seconds: float) -> str:
    return f"{seconds:.3f}".rstrip("0").rstrip(".") + "s"


def parse_retry_after(value: str, now: datetime) -> datetime | None:
    """When a ``Retry-After`` ends: delay seconds (int or float) or an HTTP-date; garbage gives ``None``."""
    return retry_after(value, now)


def parse_reset(value: str, now: datetime) -> datetime | None:
    """When a window or bucket resets (see :func:`bhoga.quota.values.reset` for the formats)."""
    return reset(value, now)


def _epoch_reset(value: object, now: datetime) -> datetime | None:
    """A ``reset-at`` style value: ``0`` or ``""`` means "no reset", not "resets right now"."""
    seconds = _number(value)
    if seconds is not None and seconds <= 0:
        return None
    return reset(value, now)


def _relative_reset(value: object, now: datetime) -> datetime | None:
    """A ``reset-after-seconds`` / ``resets_in_seconds`` value; zero means "not reported"."""
    return after(now, value)


def normalise_headers(headers: Mapping[str, Any] | None) -> dict[str, str]:
    """Lower-case names and stripped text values; entries without a usable value are dropped.

    HTTP header names are case-insensitive, but ``dict(requests_response.headers)`` keeps the
    server's casing; matching exact keys silently ignored ``X-RateLimit-Remaining-Tokens`` before.
    """
    normalised: dict[str, str] = {}
    if headers is None:
        return normalised
    try:
        items = list(headers.items())
    except (AttributeError, TypeError):
        return normalised
    for name, value in items:
        key, text = _text(name), _text(value)
        if key is not None and text is not None:
            normalised[key.lower()] = text
    return normalised


# --------------------------------------------------------------------------------------------------
# Count buckets: Anthropic API, OpenAI / Copilot, OpenRouter


def _bucket(
    name: str,
    h: Mapping[str, str],
    limit_key: str,
    remaining_key: str,
    reset_key: str,
    now: datetime,
    window_min: int | None,
) -> QuotaWindow | None:
    limit, remaining = _number(h.get(limit_key)), _number(h.get(remaining_key))
    # Azure answers -1 / 0 for "no limit known": that is unknown, not "fully used".
    if limit is None or remaining is None or limit <= 0:
        return None
    return QuotaWindow(
        name=name,
        pct_used=_clamp_pct(100.0 * (limit - remaining) / limit),
        resets_at=parse_reset(h.get(reset_key, ""), now),
        window_min=window_min,
        updated_at=now,
        source=Source.HEADERS,
        kind=WindowKind.RATE,
        limit=limit,
        remaining=remaining,
    )


_ANTHROPIC_BUCKETS: Final = (
    ("requests", "requests"),
    ("tokens", "tokens"),
    ("input-tokens", "input_tokens"),
    ("output-tokens", "output_tokens"),
)


def _anthropic_api_windows(h: Mapping[str, str], now: datetime) -> Iterable[QuotaWindow | None]:
    for part, name in _ANTHROPIC_BUCKETS:
        base = f"anthropic-ratelimit-{part}"
        yield _bucket(name, h, f"{base}-limit", f"{base}-remaining", f"{base}-reset", now, 1)


def _openai_windows(h: Mapping[str, str], now: datetime) -> Iterable[QuotaWindow | None]:
    # The length is not stated: OpenAI's request limit is per minute or per day depending on tier.
    for part in ("requests", "tokens"):
        yield _bucket(
            part,
            h,
            f"x-ratelimit-limit-{part}",
            f"x-ratelimit-remaining-{part}",
            f"x-ratelimit-reset-{part}",
            now,
            None,
        )


def _openrouter_windows(h: Mapping[str, str], now: datetime) -> Iterable[QuotaWindow | None]:
    yield _bucket("requests", h, "x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset", now, None)


# --------------------------------------------------------------------------------------------------
# Anthropic subscription "unified" headers


class _Stop(NamedTuple):
    until: datetime
    reason: str


class _Unified(NamedTuple):
    windows: list[QuotaWindow]
    #: Windows the response rejected (``None`` = a per-model or overage claim), with their reset.
    rejected: list[tuple[str | None, datetime | None]]
    #: The overall status is rejected but overage (extra usage) is paying for the request.
    using_overage: bool
    extras: dict[str, str]


_UNIFIED: Final = "anthropic-ratelimit-unified-"
_UNIFIED_WINDOWS: Final = (("5h", "burst", 300), ("7d", "weekly", 10080))
#: Which window a representative claim names; per-model claims have no window in headers (§1.4).
_CLAIM_WINDOW: Final = {
    "five_hour": "burst",
    "seven_day": "weekly",
    "seven_day_overage_included": "weekly",
}


def _status(h: Mapping[str, str], key: str) -> str:
    return h.get(key, "").lower()


def _read_unified(h: Mapping[str, str], now: datetime) -> _Unified:
    overall_rejected = _status(h, f"{_UNIFIED}status") == "rejected"
    claimed = _CLAIM_WINDOW.get(_status(h, f"{_UNIFIED}representative-claim"))
    overall_reset = _epoch_reset(h.get(f"{_UNIFIED}reset"), now)
    windows: list[QuotaWindow] = []
    rejected: list[tuple[str | None, datetime | None]] = []
    for code, name, minutes in _UNIFIED_WINDOWS:
        fraction = _number(h.get(f"{_UNIFIED}{code}-utilization"))
        resets_at = _epoch_reset(h.get(f"{_UNIFIED}{code}-reset"), now)
        # Only the window's own status, or the overall one when its claim is this window, rejects
        # the account: a scoped or overage rejection must not (§1.4).
        is_rejected = _status(h, f"{_UNIFIED}{code}-status") == "rejected" or (
            overall_rejected and claimed == name
        )
        if is_rejected:
            resets_at = resets_at or (overall_reset if claimed == name else None)
            rejected.append((name, resets_at))
        elif fraction is None:
            continue  # missing is not zero
        windows.append(
            QuotaWindow(
                name=name,
                # The headers send a fraction (0.37), the rest of bhoga speaks percent (37).
                pct_used=100.0 if is_rejected else _clamp_pct(100.0 * (fraction or 0.0)),
                resets_at=resets_at,
                window_min=minutes,
                updated_at=now,
                source=Source.HEADERS,
                kind=WindowKind.QUOTA,
            )
        )
    if overall_rejected and claimed is None:
        # A per-model or overage claim: this request is refused until the claim resets, but no
        # account-wide window is known to be full.
        rejected.append((None, overall_reset))
    overage = _status(h, f"{_UNIFIED}overage-status")
    extras = {
        key: label
        for key, label in (
            ("overage_status", _label(overage)),
            ("overage_disabled_reason", _label(h.get(f"{_UNIFIED}overage-disabled-reason"))),
        )
        if label is not None
    }
    using_overage = overall_rejected and overage in ("allowed", "allowed_warning")
    return _Unified(windows, rejected, using_overage, extras)


def _unified_stop(unified: _Unified, status_code: int, now: datetime, default_s: float) -> _Stop | None:
    if not unified.rejected:
        return None
    # A request billed to overage succeeded; it is a 429 that says the account is really stopped.
    if unified.using_overage and status_code != 429:
        return None
    # Every rejected window must reset before requests go through again, so wait for the last one.
    name, until = max(unified.rejected, key=lambda item: item[1] or datetime.min.replace(tzinfo=UTC))
    # A reset beyond any real window is not believed: the default cooldown stands in for it.
    until = plausible_end(until, now)
    if until is None or until <= now:
        until = _after(now, default_s) if default_s > 0 else None
    if until is None:
        return None
    return _Stop(until, f"usage limit reached ({name})" if name else "usage limit reached")


# --------------------------------------------------------------------------------------------------
# Codex x-codex-* (and other x-<family>-*) headers

_FAMILY_SUFFIXES: Final = ("-primary-used-percent", "-secondary-used-percent")
_DEFAULT_LIMIT: Final = "codex"
_FAMILY_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")


def window_name(minutes: int) -> str:
    """Name a window by its length, never its position (see :func:`bhoga.quota.values.length_name`)."""
    return length_name(minutes)


def _codex_families(h: Mapping[str, str]) -> list[str]:
    """The ``x-<name>`` limit families present, Codex's own first, at most ``MAX_FAMILIES`` of them
    with names of at most ``MAX_FAMILY_NAME`` characters: a response could otherwise name thousands
    of limits of its own making and each would become a window."""
    prefixes = {
        key.removesuffix(suffix)
        for key in h
        for suffix in _FAMILY_SUFFIXES
        if key.startswith("x-")
        and key.endswith(suffix)
        and 0 < len(key) - len(suffix) - 2 <= MAX_FAMILY_NAME
        and _FAMILY_CHARS.issuperset(key[2 : len(key) - len(suffix)])
    }
    default = f"x-{_DEFAULT_LIMIT}"
    extra = sorted(prefixes - {default})[:MAX_FAMILIES]
    return [default, *extra] if default in prefixes else extra


def _codex_window(
    h: Mapping[str, str], prefix: str, which: str, scope: str, now: datetime
) -> QuotaWindow | None:
    used = _number(h.get(f"{prefix}-{which}-used-percent"))
    if used is None:
        return None
    length = _minutes(h.get(f"{prefix}-{which}-window-minutes"))
    resets_at = _epoch_reset(h.get(f"{prefix}-{which}-reset-at"), now) or _relative_reset(
        h.get(f"{prefix}-{which}-reset-after-seconds"), now
    )
    # Codex's own rule: an all-zero slot ("0" minutes, no reset, 0 %) is an absent window. A
    # weekly-only plan sends exactly that as its secondary.
    if used == 0 and length is None and resets_at is None:
        return None
    return QuotaWindow(
        # Without a length there is nothing to classify by; the slot name is the only honest label.
        name=window_name(length) if length is not None else which,
        pct_used=_clamp_pct(used),
        resets_at=resets_at,
        window_min=length,
        updated_at=now,
        scope=scope,
        source=Source.HEADERS,
        kind=WindowKind.QUOTA,
    )


class _Codex(NamedTuple):
    windows: list[QuotaWindow]
    limit_names: dict[str, str]


def _read_codex(h: Mapping[str, str], now: datetime) -> _Codex:
    windows: list[QuotaWindow] = []
    names: dict[str, str] = {}
    for prefix in _codex_families(h):
        limit_id = prefix.removeprefix("x-").replace("-", "_")
        # Another family (e.g. the Spark model's) limits only the models it names; giving it the
        # account scope would let one model's full window block every model.
        scope = "*" if limit_id == _DEFAULT_LIMIT else f"limit:{limit_id}"
        for which in ("primary", "secondary"):
            window = _codex_window(h, prefix, which, scope, now)
            if window is not None:
                windows.append(window)
        name = _label(h.get(f"{prefix}-limit-name"))
        if name is not None and limit_id != _DEFAULT_LIMIT:
            names[limit_id] = name
    return _Codex(windows, names)


def _codex_credits(h: Mapping[str, str]) -> dict[str, str]:
    credits: dict[str, str] = {}
    for field in ("has_credits", "unlimited"):
        flag = _flag(h.get(f"x-codex-credits-{field.replace('_', '-')}"))
        if flag is not None:
            credits[field] = "true" if flag else "false"
    balance = _label(h.get("x-codex-credits-balance"))
    if balance is not None:
        credits["balance"] = balance
    return credits


# --------------------------------------------------------------------------------------------------
# Error bodies


def _error_object(body: Mapping[str, Any] | None) -> Mapping[str, Any]:
    error = body.get("error") if isinstance(body, Mapping) else None
    return error if isinstance(error, Mapping) else {}


def _body_headers(body: Mapping[str, Any] | None) -> dict[str, str]:
    """OpenRouter copies the rate-limit headers into ``error.metadata.headers`` of its 429 body."""
    metadata = _error_object(body).get("metadata")
    copied = metadata.get("headers") if isinstance(metadata, Mapping) else None
    return normalise_headers(copied) if isinstance(copied, Mapping) else {}


class _UsageLimit(NamedTuple):
    until: datetime | None
    plan: str | None


def _codex_usage_limit(body: Mapping[str, Any] | None, now: datetime) -> _UsageLimit | None:
    """Codex's 429 ``usage_limit_reached`` body: the plan's allowance is spent until ``resets_at``."""
    error = _error_object(body)
    if _text(error.get("type")) != "usage_limit_reached":
        return None
    until = _epoch_reset(error.get("resets_at"), now) or _relative_reset(error.get("resets_in_seconds"), now)
    return _UsageLimit(plausible_end(until, now), _label(error.get("plan_type")))


# --------------------------------------------------------------------------------------------------
# Cooldowns


def _retry_after(h: Mapping[str, str], now: datetime) -> datetime | None:
    """The ``retry-after`` advice, if any. One further ahead than any real window (``Wed, 21 Oct 2099
    07:28:00 GMT``) is not believed, so the other signals decide, as for garbage."""
    # retry-after-ms is the precise form of the same advice, so it wins when both are sent.
    millis = _number(h.get("retry-after-ms"))
    if millis is not None and millis > 0:
        return plausible_end(_after(now, millis / 1000.0), now)
    until = plausible_end(parse_retry_after(h.get("retry-after", ""), now), now)
    # "retry-after: 0" on a 429 is a throttling symptom (Claude's usage endpoint answers it to
    # unknown clients), not permission to hammer: fall through to the other signals.
    return until if until is not None and until > now else None


def _first_exhausted_reset(windows: Iterable[QuotaWindow], now: datetime) -> _Stop | None:
    """The earliest reset among buckets and windows that this response shows as empty."""
    empty = [
        (w.resets_at, w.name)
        for w in windows
        if w.resets_at is not None
        and w.resets_at > now
        and ((w.remaining is not None and w.remaining <= 0) or w.pct_used >= 100.0)
    ]
    if not empty:
        return None
    until, name = min(empty)
    return _Stop(until, f"429 rate limited ({name} exhausted until its reset)")


def _rate_limited_stop(
    h: Mapping[str, str],
    usage_limit: _UsageLimit | None,
    windows: list[QuotaWindow],
    now: datetime,
    default_s: float,
) -> _Stop | None:
    stop: _Stop | None = None
    retry_at = _retry_after(h, now)
    if retry_at is not None:
        stop = _Stop(
            retry_at, f"429 rate limited (retry-after {_fmt_seconds((retry_at - now).total_seconds())})"
        )
    elif usage_limit is not None and usage_limit.until is not None and usage_limit.until > now:
        stop = _Stop(usage_limit.until, "usage limit reached")
    else:
        stop = _first_exhausted_reset(windows, now)
    if stop is None and default_s > 0:
        until = _after(now, default_s)
        if until is not None:
            stop = _Stop(until, f"429 rate limited (no reset given, {_fmt_seconds(default_s)} default)")
    if stop is not None and usage_limit is not None:
        # The body says why, whichever signal said until when.
        stop = _Stop(stop.until, "usage limit reached")
    return stop


# --------------------------------------------------------------------------------------------------
# The reading


_FAMILY_PREFIXES: Final = (_UNIFIED, "anthropic-ratelimit-", "x-ratelimit-")


def read_response(
    headers: Mapping[str, str],
    *,
    status_code: int = 200,
    error_body: Mapping[str, Any] | None = None,
    now: datetime,
    default_cooldown_s: float = 60.0,
) -> HeaderReading:
    """Everything one response says about quota.

    A cooldown is set for a 429 (from ``retry-after``/``retry-after-ms``, else Codex's usage-limit
    body, else the earliest reset of an empty bucket, else ``default_cooldown_s``) and for a rejected
    subscription window whatever the status. Other statuses set none: a 529 is provider load, which
    the daemon tracks as health, not quota.
    """
    now = _as_utc(now)
    default_s = default_cooldown_s if math.isfinite(default_cooldown_s) else 0.0
    # Real headers win over the copies OpenRouter puts in its error body.
    h = {**_body_headers(error_body), **normalise_headers(headers)}
    # Most responses carry one family of headers or none; probing every family's dozens of names on
    # every turn was the daemon's main cost per recorded turn, so look only where names are present.
    present = {prefix for prefix in _FAMILY_PREFIXES if any(k.startswith(prefix) for k in h)}
    unified = _read_unified(h, now) if _UNIFIED in present else _Unified([], [], False, {})
    codex = _read_codex(h, now)
    candidates: list[QuotaWindow | None] = []
    if "anthropic-ratelimit-" in present:
        candidates.extend(_anthropic_api_windows(h, now))
    if "x-ratelimit-" in present:
        candidates.extend((*_openai_windows(h, now), *_openrouter_windows(h, now)))
    buckets = [w for w in candidates if w is not None]
    # A window that cannot be true (a reset in the year 5138, a limit of 1e300) is not reported.
    windows = [w for w in (*buckets, *unified.windows, *codex.windows) if window_problem(w, now) is None]
    usage_limit = _codex_usage_limit(error_body, now) if status_code == 429 else None

    stops = [
        stop
        for stop in (
            # The quota stop comes first so that, on a tie, its more telling reason is kept.
            _unified_stop(unified, status_code, now, default_s),
            _rate_limited_stop(h, usage_limit, windows, now, default_s) if status_code == 429 else None,
        )
        if stop is not None
    ]
    stop = max(stops, key=lambda s: s.until) if stops else None
    if stop is not None and (bounded := bound_cooldown(stop.until, now)) < stop.until:
        # Say so: a person reading `bhoga status` should not wonder why it ends before the server said.
        stop = _Stop(bounded, f"{stop.reason}; capped at {LONGEST_WINDOW.days} days")
    return HeaderReading(
        windows=windows,
        cooldown_until=stop.until if stop else None,
        cooldown_reason=stop.reason if stop else None,
        plan=_label(h.get("x-codex-plan-type")) or (usage_limit.plan if usage_limit else None),
        credits={**_codex_credits(h), **unified.extras},
        limit_names=codex.limit_names,
    )


# --------------------------------------------------------------------------------------------------
# Applying a reading to a ProviderQuota (the library's calibrate / mark_throttled, made correct)


def _utc_window(w: QuotaWindow) -> QuotaWindow:
    # The library's callers may hold naive datetimes (state written by the old library); the model
    # compares aware UTC only, so convert once here, at the library's boundary.
    updated, resets = w.updated_at, w.resets_at
    if (updated is None or updated.tzinfo is UTC) and (resets is None or resets.tzinfo is UTC):
        return w
    return msgspec.structs.replace(
        w,
        updated_at=_as_utc(updated) if updated is not None else None,
        resets_at=_as_utc(resets) if resets is not None else None,
    )


def _utc_quota(q: ProviderQuota) -> None:
    for key, w in q.windows.items():
        converted = _utc_window(w)
        if converted is not w:
            q.windows[key] = converted
    if q.cooldown_until is not None:
        q.cooldown_until = _as_utc(q.cooldown_until)


def _extend_cooldown(q: ProviderQuota, until: datetime, reason: str, now: datetime) -> None:
    grown = model.grow_cooldown(q.cooldown_until, until, now)
    if grown is not None:
        q.cooldown_until = grown
        q.cooldown_reason = reason


def refresh_status(q: ProviderQuota, *, now: datetime) -> ProviderQuota:
    """Recompute ``q.quota_pct`` and ``q.status`` from its windows and cooldown, in place.

    The daemon's rules (:mod:`bhoga.quota.model`): the windows that limit ``q.model_id``, each as it
    stands now; a ``ProviderQuota`` knows no staleness horizon, so only its own ``stale`` marks (and
    windows never read) count as stale.
    """
    now = _as_utc(now)
    _utc_quota(q)
    windows = [model.effective_window(w, now, None) for w in q.windows.values()]
    found = model.standing(
        model.limiting_windows(windows, q.model_id), q.cooldown_until, q.cooldown_reason, now
    )
    q.quota_pct = found.quota_pct
    if q.status != ProviderStatus.UNAVAILABLE:
        # Whether a provider can be used here is the daemon's call, not a header's.
        q.status = found.status
    return q


def apply_reading(q: ProviderQuota, reading: HeaderReading, *, now: datetime) -> ProviderQuota:
    """Merge a reading into ``q`` in place: newer windows replace older ones of the same key."""
    now = _as_utc(now)
    _utc_quota(q)
    for window in reading.windows:
        held = q.windows.get(window.key)
        if model.supersedes(window, held):
            q.windows[window.key] = model.monotone(window, held)
    model.cap_windows(q.windows)
    if reading.cooldown_until is not None:
        _extend_cooldown(q, reading.cooldown_until, reading.cooldown_reason or "cooling down", now)
    return refresh_status(q, now=now)


def calibrate(
    q: ProviderQuota,
    headers: Mapping[str, str],
    *,
    status_code: int = 200,
    now: datetime | None = None,
) -> ProviderQuota:
    """The library's helper: update ``q`` (in place, and returned) from one response's headers."""
    now = _as_utc(now) if now is not None else datetime.now(UTC)
    return apply_reading(q, read_response(headers, status_code=status_code, now=now), now=now)


def mark_throttled(
    q: ProviderQuota, retry_after: float = 60.0, *, now: datetime | None = None
) -> ProviderQuota:
    """The library's helper: cool ``q`` down for ``retry_after`` seconds, in place, and return it.

    Unlike the library, a zero, negative or non-finite ``retry_after`` starts no cooldown, so it
    cannot leave a provider marked throttled with nothing to end it; and no cooldown lasts longer
    than the longest real window (a month).
    """
    now = _as_utc(now) if now is not None else datetime.now(UTC)
    _utc_quota(q)
    seconds = _number(retry_after)
    if seconds is not None and seconds > 0:
        until = _after(now, seconds)
        if until is not None:
            _extend_cooldown(q, until, f"throttled (retry-after {_fmt_seconds(seconds)})", now)
    return refresh_status(q, now=now)
