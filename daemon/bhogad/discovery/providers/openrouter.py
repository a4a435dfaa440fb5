"""OpenRouter: the API key's spending limit (``/key``) and the account's credit balance (``/credits``).

Amounts are USD with no percent, so percent used is computed: the key limit as ``used / limit`` (used
from ``limit_remaining`` when given, else the usage of the limit's period), credits as
``total_usage / total_credits``. A key without a limit, or an account without credits, reports no
window for it — unlimited is not "0 % used". ``base_url`` defaults to ``https://openrouter.ai/api/v1``.
"""

from __future__ import annotations

import calendar
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypeVar

import msgspec

from bhoga.protocol import QuotaWindow, Source
from bhoga.quota.values import MONTHLY_MIN, WEEKLY_MIN, clamp_low, mapping, number, text
from bhogad.config import ProviderConfig
from bhogad.discovery.providers.api_keys import detect
from bhogad.discovery.providers.base import (
    Context,
    Kind,
    PollFailure,
    Refusal,
    Refusals,
    ShapeError,
    fingerprint,
)
from bhogad.discovery.providers.http import fetch_usage
from bhogad.domain.state import Availability, PollResult

T = TypeVar("T")
#: What a 4xx from an endpoint means for this driver (see ``fetch_usage``).
Refused = Callable[[int], Refusal | None]

_PERIODS: Final = {"daily": 1440, "weekly": WEEKLY_MIN, "monthly": MONTHLY_MIN}


def next_period_start(period: str, now: datetime) -> datetime | None:
    """When a ``daily`` / ``weekly`` (from Monday) / ``monthly`` limit resets: the next UTC boundary."""
    midnight = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "daily":
        return midnight + timedelta(days=1)
    if period == "weekly":
        return midnight + timedelta(days=7 - midnight.weekday())
    if period == "monthly":
        days = calendar.monthrange(midnight.year, midnight.month)[1]
        return midnight.replace(day=1) + timedelta(days=days)
    return None


def _data(body: object) -> Mapping[str, Any]:
    data = mapping((mapping(body) or {}).get("data"))
    if data is None:
        raise ShapeError("no data object in the answer")
    return data


class KeyInfo(msgspec.Struct, kw_only=True):
    window: QuotaWindow | None
    label: str | None = None
    free_tier: bool = False


def parse_key(body: object, now: datetime) -> KeyInfo:
    data = _data(body)
    limit = number(data.get("limit"))
    info = KeyInfo(window=None, label=text(data.get("label"), 80), free_tier=data.get("is_free_tier") is True)
    if limit is None or limit <= 0:
        return info  # no limit on this key
    period = text(data.get("limit_reset"), 20)
    remaining = number(data.get("limit_remaining"))
    used: float | None
    if remaining is not None:
        remaining = min(max(remaining, 0.0), limit)
        used = limit - remaining
    else:
        # Without limit_remaining, the usage of the limit's own period is what counts against it.
        used = number(data.get(f"usage_{period}")) if period else None
        if used is None:
            used = number(data.get("usage"))
        if used is None:
            return info
        remaining = max(0.0, limit - used)
    info.window = QuotaWindow(
        name=period if period in _PERIODS else "limit",
        pct_used=clamp_low(100.0 * used / limit),
        resets_at=next_period_start(period, now) if period else None,
        window_min=_PERIODS.get(period or ""),
        updated_at=now,
        source=Source.API,
        limit=limit,
        remaining=round(remaining, 6),
    )
    return info


def parse_credits(body: object, now: datetime) -> QuotaWindow | None:
    data = _data(body)
    total, usage = number(data.get("total_credits")), number(data.get("total_usage"))
    if total is None or usage is None or total <= 0:
        return None
    return QuotaWindow(
        name="credits",
        pct_used=clamp_low(100.0 * usage / total),
        updated_at=now,
        source=Source.API,
        limit=total,
        remaining=round(max(0.0, total - usage), 6),
    )


class OpenRouterDriver:
    polls = True

    def budget_s(self, cfg: ProviderConfig) -> float:
        return 2 * cfg.poll_timeout_s + 10.0

    def __init__(self) -> None:
        self._refusals = Refusals()

    async def poll(self, ctx: Context) -> PollResult:
        env_name = next((n for n in ctx.cfg.key_env if ctx.env_value(n)), None)
        if env_name is None:
            # Worded as the daemon's own key detection, so a machine without a key sees no change.
            return ctx.result(detect(ctx.cfg, ctx.env), kind=Kind.LOCAL)
        key = ctx.env_value(env_name) or ""
        avail = Availability(available=True, reason=f"API key in ${env_name}")
        base = (ctx.cfg.base_url or "https://openrouter.ai/api/v1").rstrip("/")
        headers = {"Authorization": f"Bearer {key}", "Accept": "application/json", "X-Title": "bhoga"}

        def key_refused(status: int) -> Refusal | None:
            if status not in (401, 403):
                return None
            # A key may be refused for a while (rotation, a hiccup): back off and ask again.
            return Refusal(
                message=f"OpenRouter refused the key in ${env_name} (HTTP {status}); check the key",
                remember=False,
                kind=Kind.PROTOCOL,
            )

        async def get(path: str, what: str, parse: Callable[[Any, datetime], T], refused: Refused) -> T:
            return await fetch_usage(
                ctx,
                base + path,
                token=key,
                headers=headers,
                what=what,
                parse=parse,
                refusals=self._refusals,
                refused=refused,
            )

        windows: list[QuotaWindow] = []
        try:
            info = await get("/key", "the OpenRouter key endpoint", parse_key, key_refused)
            if info.window is not None:
                windows.append(info.window)
            try:
                credits = await get(
                    "/credits", "the OpenRouter credits endpoint", parse_credits, lambda status: None
                )
            except PollFailure as exc:
                # Some keys may not read the account balance; the key limit still stands alone.
                if exc.status not in (401, 403, 404):
                    raise
                credits = None
            if credits is not None:
                windows.append(credits)
        except PollFailure as exc:
            return ctx.failed(avail, exc)
        if info.label:
            avail.reason += f" ({info.label})"
        if info.free_tier:
            avail.reason += "; free tier"
        if not windows:
            avail.reason += "; no key limit and no prepaid credits reported"
        # The label is a masked key (``sk-or-v1-a1b...f9e``): hashed, so no fragment of it travels.
        account = f"openrouter:{fingerprint(info.label)}" if info.label else None
        return ctx.result(avail, windows, account=account)
