"""Pure readers for the three places Codex reports its rate limits (wire spec §3.2, §3.4, §3.5):
the ``wham/usage`` endpoint, ``codex app-server``'s ``account/rateLimits/read``, and the
``token_count`` lines of session rollout files.

All three classify a window by its length, never by its slot: Codex has moved the weekly window,
and later a 30-day one, into ``primary``. Limits other than the account-wide ``codex`` one belong to
one model (the Spark model) and are scoped to it, so they cannot block every model.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Final

import msgspec

from bhoga.protocol import QuotaWindow, Source
from bhoga.quota.values import (
    after,
    clamp_low,
    epoch,
    iso_datetime,
    mapping,
    minutes,
    model_scope,
    number,
    text,
    window_name,
)
from bhogad.discovery.providers.base import ShapeError

DEFAULT_LIMIT: Final = "codex"


class CodexReading(msgspec.Struct, kw_only=True):
    windows: list[QuotaWindow]
    plan: str | None = None
    #: Credit state as short labels (``balance``, ``has_credits``, ``unlimited``) for the status line.
    credits: dict[str, str] = msgspec.field(default_factory=dict)
    #: When the numbers were true (the rollout line's time; the poll time otherwise).
    as_of: datetime | None = None


def _scope(limit_id: str, limit_name: object) -> str:
    return "*" if limit_id == DEFAULT_LIMIT else model_scope(limit_name, limit_id)


def _window(
    *,
    slot: str,
    used: object,
    length_min: int | None,
    resets_at: datetime | None,
    scope: str,
    seen: datetime,
    source: Source,
) -> QuotaWindow | None:
    pct = number(used)
    if pct is None:
        return None
    return QuotaWindow(
        name=window_name(length_min, slot),
        pct_used=clamp_low(pct),
        resets_at=resets_at,
        window_min=length_min,
        updated_at=seen,
        scope=scope,
        source=source,
    )


def _credits(obj: object) -> dict[str, str]:
    credits = mapping(obj)
    if credits is None:
        return {}
    out: dict[str, str] = {}
    for key in ("has_credits", "hasCredits", "unlimited"):
        value = credits.get(key)
        if isinstance(value, bool):
            out["has_credits" if key == "hasCredits" else key] = "true" if value else "false"
    balance = credits.get("balance")
    label = text(balance, 30) if isinstance(balance, str) else None
    if label is None and number(balance) is not None:
        label = f"{number(balance):g}"
    if label is not None:
        out["balance"] = label
    return out


# --------------------------------------------------------------------------------------------------
# wham/usage


def _usage_limit(rate_limit: object, scope: str, now: datetime) -> list[QuotaWindow]:
    obj = mapping(rate_limit)
    if obj is None:
        return []
    windows: list[QuotaWindow] = []
    for slot in ("primary_window", "secondary_window"):
        w = mapping(obj.get(slot))
        if w is None:
            continue  # a null slot is a window the plan does not have
        seconds = number(w.get("limit_window_seconds"))
        length = minutes(seconds / 60.0) if seconds is not None else None
        window = _window(
            slot=slot.removesuffix("_window"),
            used=w.get("used_percent"),
            length_min=length,
            resets_at=epoch(w.get("reset_at")) or after(now, w.get("reset_after_seconds")),
            scope=scope,
            seen=now,
            source=Source.OAUTH,
        )
        if window is not None:
            windows.append(window)
    if (obj.get("allowed") is False or obj.get("limit_reached") is True) and windows:
        # The server's own verdict outranks its rounded percentages (99.6 shows as 99 or 100): it
        # is refusing now, so its most-used window is the one that is full, until that one resets.
        fullest = max(windows, key=lambda w: w.pct_used)
        if fullest.pct_used < 100.0:
            windows[windows.index(fullest)] = msgspec.structs.replace(fullest, pct_used=100.0)
    return windows


def _individual_limit(obj: object, now: datetime, source: Source) -> QuotaWindow | None:
    """A team seat's spend pool (``individual_limit``): amounts plus a remaining percent."""
    limit = mapping(obj)
    if limit is None:
        return None
    remaining_pct = number(_get(limit, "remaining_percent", "remainingPercent"))
    if remaining_pct is None:
        return None
    cap, used = number(limit.get("limit")), number(limit.get("used"))
    return QuotaWindow(
        name="spend",
        pct_used=clamp_low(100.0 - remaining_pct),
        resets_at=epoch(_get(limit, "reset_at", "resetsAt")),
        window_min=None,
        updated_at=now,
        scope="*",
        source=source,
        limit=cap,
        remaining=cap - used if cap is not None and used is not None else None,
    )


def parse_usage(body: object, now: datetime) -> CodexReading:
    """Windows from ``GET …/wham/usage``; raises :class:`ShapeError` when the body is not usable."""
    data = mapping(body)
    if data is None:
        raise ShapeError(f"expected a JSON object, got {type(body).__name__}")
    if not any(key in data for key in ("rate_limit", "additional_rate_limits", "code_review_rate_limit")):
        raise ShapeError("no rate_limit in the answer")
    windows = _usage_limit(data.get("rate_limit"), "*", now)
    windows += _usage_limit(data.get("code_review_rate_limit"), "limit:code_review", now)
    extra = data.get("additional_rate_limits")
    if isinstance(extra, list):
        for entry in extra:
            item = mapping(entry)
            if item is None:
                continue  # one malformed element must not discard its siblings
            feature = text(item.get("metered_feature"), 80) or text(item.get("limit_name"), 80) or "extra"
            windows += _usage_limit(item.get("rate_limit"), model_scope(item.get("limit_name"), feature), now)
    spend = mapping(data.get("spend_control")) or {}
    pool = _individual_limit(spend.get("individual_limit") or data.get("individual_limit"), now, Source.OAUTH)
    if pool is not None:
        windows.append(pool)
    return CodexReading(
        windows=windows,
        plan=text(data.get("plan_type"), 40),
        credits=_credits(data.get("credits")),
        as_of=now,
    )


# --------------------------------------------------------------------------------------------------
# codex app-server: account/rateLimits/read


def _get(obj: Mapping[str, Any], camel: str, snake: str) -> Any:
    value = obj.get(camel)
    return value if value is not None else obj.get(snake)


def _snapshot(snapshot: Mapping[str, Any], fallback_id: str, now: datetime) -> list[QuotaWindow]:
    limit_id = text(_get(snapshot, "limitId", "limit_id"), 80) or fallback_id
    scope = _scope(limit_id, _get(snapshot, "limitName", "limit_name"))
    windows: list[QuotaWindow] = []
    for slot in ("primary", "secondary"):
        w = mapping(snapshot.get(slot))
        if w is None:
            continue
        window = _window(
            slot=slot,
            used=_get(w, "usedPercent", "used_percent"),
            length_min=minutes(_get(w, "windowDurationMins", "window_duration_mins")),
            resets_at=epoch(_get(w, "resetsAt", "resets_at")),
            scope=scope,
            seen=now,
            source=Source.CLI,
        )
        if window is not None:
            windows.append(window)
    pool = _individual_limit(_get(snapshot, "individualLimit", "individual_limit"), now, Source.CLI)
    if pool is not None and scope == "*":
        windows.append(pool)
    return windows


def parse_app_server(result: object, now: datetime) -> CodexReading:
    """Windows from the result of ``account/rateLimits/read``: every limit in
    ``rateLimitsByLimitId``, else the single ``rateLimits`` snapshot."""
    data = mapping(result)
    if data is None:
        raise ShapeError(f"expected a JSON object, got {type(result).__name__}")
    main = mapping(_get(data, "rateLimits", "rate_limits"))
    by_id = mapping(_get(data, "rateLimitsByLimitId", "rate_limits_by_limit_id"))
    if main is None and by_id is None:
        raise ShapeError("no rateLimits in the answer")
    snapshots: dict[str, Mapping[str, Any]] = {}
    if main is not None:
        snapshots[text(_get(main, "limitId", "limit_id"), 80) or DEFAULT_LIMIT] = main
    for limit_id, snapshot in (by_id or {}).items():
        if isinstance(limit_id, str) and (item := mapping(snapshot)) is not None:
            snapshots[limit_id] = item
    found: dict[str, QuotaWindow] = {}
    for limit_id, snapshot in snapshots.items():
        for window in _snapshot(snapshot, limit_id, now):
            found[window.key] = window
    plan = text(_get(main or {}, "planType", "plan_type"), 40)
    return CodexReading(
        windows=list(found.values()), plan=plan, credits=_credits((main or {}).get("credits")), as_of=now
    )


# --------------------------------------------------------------------------------------------------
# Rollout files: $CODEX_HOME/sessions/YYYY/MM/DD/rollout-*.jsonl


class RolloutReading(msgspec.Struct, kw_only=True):
    limit_id: str
    at: datetime
    windows: list[QuotaWindow]
    plan: str | None = None
    credits: dict[str, str] = msgspec.field(default_factory=dict)


def _rollout_windows(rate_limits: Mapping[str, Any], scope: str, at: datetime) -> list[QuotaWindow]:
    windows: list[QuotaWindow] = []
    if any(key in rate_limits for key in ("primary_used_percent", "secondary_used_percent")):
        # ≈ v0.40: flat fields and no reset time at all.
        for slot in ("primary", "secondary"):
            window = _window(
                slot=slot,
                used=rate_limits.get(f"{slot}_used_percent"),
                length_min=minutes(rate_limits.get(f"{slot}_window_minutes")),
                resets_at=None,
                scope=scope,
                seen=at,
                source=Source.LOCAL,
            )
            if window is not None:
                windows.append(window)
        return windows
    for slot in ("primary", "secondary"):
        w = mapping(rate_limits.get(slot))
        if w is None:
            continue
        window = _window(
            slot=slot,
            used=w.get("used_percent"),
            length_min=minutes(w.get("window_minutes")),
            # Current lines give unix seconds; ≈ v0.45 gave seconds from the line's own time.
            resets_at=epoch(w.get("resets_at")) or after(at, w.get("resets_in_seconds")),
            scope=scope,
            seen=at,
            source=Source.LOCAL,
        )
        if window is not None:
            windows.append(window)
    return windows


def parse_rollout_line(line: bytes | str) -> RolloutReading | None:
    """The rate limits on one rollout line, or ``None`` for every other line — including the
    shutdown ``token_count`` line whose windows are all null, which broke other parsers."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, Mapping) or record.get("type") != "event_msg":
        return None
    payload = mapping(record.get("payload"))
    if payload is None or payload.get("type") != "token_count":
        return None
    rate_limits = mapping(payload.get("rate_limits"))
    at = iso_datetime(record.get("timestamp")) or iso_datetime(payload.get("timestamp"))
    if rate_limits is None or at is None:
        return None
    limit_id = text(rate_limits.get("limit_id"), 80) or DEFAULT_LIMIT
    windows = _rollout_windows(rate_limits, _scope(limit_id, rate_limits.get("limit_name")), at)
    if not windows:
        return None
    return RolloutReading(
        limit_id=limit_id,
        at=at,
        windows=windows,
        plan=text(rate_limits.get("plan_type"), 40),
        credits=_credits(rate_limits.get("credits")),
    )


def newest_readings(lines: Iterable[bytes | str]) -> dict[str, RolloutReading]:
    """The newest usable reading per limit id, by the line's own timestamp (files are not always in
    time order, and several files are merged)."""
    newest: dict[str, RolloutReading] = {}
    for line in lines:
        reading = parse_rollout_line(line)
        if reading is None:
            continue
        held = newest.get(reading.limit_id)
        if held is None or reading.at >= held.at:
            newest[reading.limit_id] = reading
    return newest


def merge_rollout(readings: Mapping[str, RolloutReading]) -> CodexReading | None:
    if not readings:
        return None
    windows = [w for r in readings.values() for w in r.windows]
    main = readings.get(DEFAULT_LIMIT) or max(readings.values(), key=lambda r: r.at)
    return CodexReading(windows=windows, plan=main.plan, credits=main.credits, as_of=main.at)
