"""Pure readers for Claude Code's credential payload and its OAuth usage answer (wire spec §1).

``utilization`` on ``/api/oauth/usage`` is already a percent (``37.0`` = 37 %); the old library
multiplied it by 100 and declared every real account exhausted. Null windows are "not reported".
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

import msgspec

from bhoga.protocol import QuotaWindow, Source
from bhoga.quota.values import (
    BURST_MIN,
    MONTHLY_MIN,
    WEEKLY_MIN,
    clamp_low,
    iso_datetime,
    mapping,
    number,
    text,
    unix_time,
)
from bhogad.discovery.providers.base import CredentialProblem, ShapeError, login_document

#: The scope the usage endpoint needs; ``claude setup-token`` tokens carry only ``user:inference``.
USAGE_SCOPE: Final = "user:profile"


class ClaudeCredentials(msgspec.Struct, kw_only=True):
    access_token: str
    #: ``None`` when the payload does not say (then the server decides).
    expires_at: datetime | None = None
    #: ``None`` when the payload does not list scopes.
    scopes: list[str] | None = None
    plan: str | None = None
    tier: str | None = None

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def can_read_usage(self) -> bool:
        return self.scopes is None or USAGE_SCOPE in self.scopes


def parse_credentials(raw: bytes | str, where: str) -> ClaudeCredentials:
    """The Claude login in a ``.credentials.json`` / Keychain payload; ``where`` names it in errors."""
    data = login_document(raw, where, login="a Claude login", command="`claude`")
    oauth = mapping(data.get("claudeAiOauth"))
    if oauth is None:
        if "mcpOAuth" in data:
            # Claude Code 2.1.x can leave an item with only MCP server logins (CodexBar #1844).
            raise CredentialProblem(
                f"{where} holds only MCP server logins, not a Claude login; "
                "run `claude` and sign in with /login",
                signed_out=True,
            )
        raise CredentialProblem(f"{where} holds no Claude login; run `claude` to sign in", signed_out=True)
    token = oauth.get("accessToken")
    if not isinstance(token, str) or not token.strip():
        raise CredentialProblem(
            f"{where} has no access token; run `claude` to sign in again", signed_out=True
        )
    expires_at = unix_time(oauth.get("expiresAt"), millis=True)
    scopes_raw = oauth.get("scopes")
    scopes = [s for s in scopes_raw if isinstance(s, str)] if isinstance(scopes_raw, list) else None
    return ClaudeCredentials(
        access_token=token.strip(),
        expires_at=expires_at,
        scopes=scopes,
        plan=text(oauth.get("subscriptionType"), 40),
        tier=text(oauth.get("rateLimitTier"), 60),
    )


# --------------------------------------------------------------------------------------------------
# /api/oauth/usage

#: Flat keys → (window name, scope). Per-model weekly windows limit only their model family;
#: windows for other surfaces (OAuth apps, routines) are shown but limit no model we route.
_FLAT: Final[dict[str, tuple[str, str, int]]] = {
    "five_hour": ("burst", "*", BURST_MIN),
    "seven_day": ("weekly", "*", WEEKLY_MIN),
    "seven_day_opus": ("weekly", "opus", WEEKLY_MIN),
    "seven_day_sonnet": ("weekly", "sonnet", WEEKLY_MIN),
    "seven_day_oauth_apps": ("weekly", "limit:oauth_apps", WEEKLY_MIN),
    "seven_day_routines": ("weekly", "limit:routines", WEEKLY_MIN),
    "seven_day_cowork": ("weekly", "limit:routines", WEEKLY_MIN),
    "claude_routines": ("weekly", "limit:routines", WEEKLY_MIN),
    "routines": ("weekly", "limit:routines", WEEKLY_MIN),
    "cowork": ("weekly", "limit:routines", WEEKLY_MIN),
}


def _window(
    name: str, scope: str, length: int, pct: object, resets: object, now: datetime
) -> QuotaWindow | None:
    used = number(pct)
    if used is None:
        return None  # a null utilization is a window the account does not have
    return QuotaWindow(
        name=name,
        pct_used=clamp_low(used),
        resets_at=iso_datetime(resets),
        window_min=length,
        updated_at=now,
        scope=scope,
        source=Source.OAUTH,
    )


def _limits_entry(entry: Mapping[str, Any], now: datetime) -> QuotaWindow | None:
    """One element of the newer generic ``limits`` array. ``is_active`` is not a filter: enforceable
    scoped limits report ``false`` (CodexBar)."""
    kind = entry.get("kind")
    if kind == "session":
        name, scope, length = "burst", "*", BURST_MIN
    elif kind == "weekly_all":
        name, scope, length = "weekly", "*", WEEKLY_MIN
    elif kind == "weekly_scoped":
        scope_obj = mapping(entry.get("scope")) or {}
        model = mapping(scope_obj.get("model")) or {}
        label = text(model.get("display_name"), 60)
        if label is not None:
            # "Opus" or "Opus 4.1": the family word, which limits every model of that family.
            scope = label.split()[0].lower()
        else:
            model_id = text(model.get("id"), 80)
            if model_id is None:
                return None
            scope = model_id.lower()
        name, length = "weekly", WEEKLY_MIN
    else:
        return None
    return _window(name, scope, length, entry.get("percent"), entry.get("resets_at"), now)


def _extra_usage(obj: Mapping[str, Any], now: datetime, *, binding: bool) -> QuotaWindow | None:
    """Pay-as-you-go "extra usage": amounts are in cents. It only limits the account when it is all
    there is (an Enterprise spend cap); otherwise it is what pays after the plan's windows run out,
    so it is shown without limiting routing."""
    if obj.get("is_enabled") is not True:
        return None
    limit_cents = number(obj.get("monthly_limit"))
    used_cents = number(obj.get("used_credits"))
    pct = number(obj.get("utilization"))
    if pct is None and limit_cents and used_cents is not None:
        pct = 100.0 * used_cents / limit_cents
    if pct is None:
        return None
    limit = round(limit_cents / 100.0, 2) if limit_cents is not None else None
    remaining = (
        round(max(0.0, limit_cents - used_cents) / 100.0, 2)
        if limit_cents is not None and used_cents is not None
        else None
    )
    return QuotaWindow(
        name="spend" if binding else "extra_usage",
        pct_used=clamp_low(pct),
        resets_at=None,
        window_min=MONTHLY_MIN,
        updated_at=now,
        scope="*" if binding else "limit:extra_usage",
        source=Source.OAUTH,
        limit=limit,
        remaining=remaining,
    )


class ClaudeUsage(msgspec.Struct, kw_only=True):
    windows: list[QuotaWindow]
    #: ``EUR`` etc. for the spend/extra-usage amounts.
    currency: str | None = None


def parse_usage(body: object, now: datetime) -> ClaudeUsage:
    """Every window the usage endpoint reports, keyed so that the newer ``limits`` array wins over
    the flat keys it supersedes. Raises :class:`ShapeError` when the body is not an object."""
    data = mapping(body)
    if data is None:
        raise ShapeError(f"expected a JSON object, got {type(body).__name__}")
    found: dict[str, QuotaWindow] = {}
    for key, (name, scope, length) in _FLAT.items():
        obj = mapping(data.get(key))
        if obj is None:
            continue
        window = _window(name, scope, length, obj.get("utilization"), obj.get("resets_at"), now)
        if window is not None:
            found.setdefault(window.key, window)
    limits = data.get("limits")
    if isinstance(limits, list):
        for entry in limits:
            # One malformed element must not discard its siblings.
            if isinstance(entry, Mapping) and (window := _limits_entry(entry, now)) is not None:
                found[window.key] = window
    extra = mapping(data.get("extra_usage"))
    currency = None
    if extra is not None:
        binding = not any(w.scope == "*" for w in found.values())
        window = _extra_usage(extra, now, binding=binding)
        if window is not None:
            found[window.key] = window
            currency = text(extra.get("currency"), 8) or "USD"
    return ClaudeUsage(windows=list(found.values()), currency=currency)
