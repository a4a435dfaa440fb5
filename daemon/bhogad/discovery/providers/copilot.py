"""GitHub Copilot: the monthly premium-interaction quota from ``copilot_internal/user``.

The token is a GitHub OAuth token, looked for in order: the ``key_env`` variables
(``COPILOT_GITHUB_TOKEN``, ``GH_TOKEN``, ``GITHUB_TOKEN``), ``gh auth token`` (``cli``), then the
editor plugin's ``apps.json`` / ``hosts.json`` under ``$XDG_CONFIG_HOME/github-copilot``. Classic
personal access tokens (``ghp_``) are not accepted by Copilot, so they are skipped, and said so.

Options: ``apps_json`` (the plugin's token file), ``user_agent``. ``base_url`` is the GitHub API
(default ``https://api.github.com``).

``percent_remaining`` is a *remaining* percent and goes negative in overage (−1.33 → 101.33 % used,
kept visible). Unlimited quotas, and the all-zero placeholders of business seats, are "no quota",
never "0 % used".
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any, Final

import anyio
import msgspec

from bhoga.protocol import QuotaWindow, Source
from bhoga.quota.values import (
    MONTHLY_MIN,
    calendar_date,
    clamp_low,
    iso_datetime,
    mapping,
    number,
    text,
)
from bhogad.config import ProviderConfig
from bhogad.discovery.options import CopilotOptions, expand
from bhogad.discovery.providers import proc
from bhogad.discovery.providers.base import Context, PollFailure, Refusal, Refusals, ShapeError, tilde
from bhogad.discovery.providers.http import fetch_usage
from bhogad.domain.state import Availability, PollResult

USER_PATH: Final = "/copilot_internal/user"
#: What Copilot Chat sends; GitHub requires a User-Agent and the endpoint expects an editor.
HEADERS: Final = {
    "Accept": "application/json",
    "Editor-Version": "vscode/1.96.2",
    "Editor-Plugin-Version": "copilot-chat/0.26.7",
    "User-Agent": "GitHubCopilotChat/0.26.7",
    "X-Github-Api-Version": "2025-04-01",
}

#: Snapshot key → (window name, scope). Premium interactions are what a chat harness spends;
#: completions are editor autocomplete and limit no model we route.
_SNAPSHOTS: Final = {
    "premium_interactions": ("monthly", "*"),
    "chat": ("chat", "*"),
    "completions": ("completions", "limit:completions"),
}


class CopilotUsage(msgspec.Struct, kw_only=True):
    windows: list[QuotaWindow]
    plan: str | None = None
    #: The GitHub account the token belongs to: Copilot's allowance is per account.
    login: str | None = None


def _reset(data: Mapping[str, Any]) -> datetime | None:
    return (
        iso_datetime(data.get("quota_reset_date_utc"))
        or calendar_date(data.get("quota_reset_date"))
        or calendar_date(data.get("limited_user_reset_date"))
    )


def _snapshot(
    key: str, snap: Mapping[str, Any], resets_at: datetime | None, now: datetime
) -> QuotaWindow | None:
    if snap.get("unlimited") is True:
        return None
    entitlement = number(snap.get("entitlement"))
    remaining = number(snap.get("remaining"))
    if remaining is None:
        remaining = number(snap.get("quota_remaining"))
    if entitlement == 0 and not remaining:
        return None  # a placeholder (business / token-billed seats), not an empty quota
    pct_remaining = number(snap.get("percent_remaining"))
    if pct_remaining is None and entitlement and remaining is not None:
        pct_remaining = 100.0 * remaining / entitlement
    if pct_remaining is None:
        return None
    name, scope = _SNAPSHOTS.get(key, (key, f"limit:{key}"))
    return QuotaWindow(
        name=name,
        pct_used=clamp_low(100.0 - pct_remaining),
        resets_at=resets_at,
        window_min=MONTHLY_MIN,
        updated_at=now,
        scope=scope,
        source=Source.API,
        limit=entitlement,
        remaining=remaining,
    )


def _free_plan(data: Mapping[str, Any], resets_at: datetime | None, now: datetime) -> list[QuotaWindow]:
    """Free plans: ``monthly_quotas`` holds entitlements, ``limited_user_quotas`` what is left.
    Without the remaining side nothing is known — never assume a full quota."""
    totals = mapping(data.get("monthly_quotas")) or {}
    left = mapping(data.get("limited_user_quotas")) or {}
    windows: list[QuotaWindow] = []
    for key in ("chat", "completions"):
        total, remaining = number(totals.get(key)), number(left.get(key))
        if not total or total <= 0 or remaining is None:
            continue
        name, scope = _SNAPSHOTS[key]
        windows.append(
            QuotaWindow(
                name=name,
                pct_used=clamp_low(100.0 * (1.0 - remaining / total)),
                resets_at=resets_at,
                window_min=MONTHLY_MIN,
                updated_at=now,
                scope=scope,
                source=Source.API,
                limit=total,
                remaining=remaining,
            )
        )
    return windows


def parse_user(body: object, now: datetime) -> CopilotUsage:
    data = mapping(body)
    if data is None:
        raise ShapeError(f"expected a JSON object, got {type(body).__name__}")
    resets_at = _reset(data)
    windows: list[QuotaWindow] = []
    snapshots = mapping(data.get("quota_snapshots"))
    if snapshots is not None:
        for key, snap in snapshots.items():
            item = mapping(snap)
            if isinstance(key, str) and item is not None and (w := _snapshot(key, item, resets_at, now)):
                windows.append(w)
    elif "monthly_quotas" in data or "limited_user_quotas" in data:
        windows = _free_plan(data, resets_at, now)
    elif "copilot_plan" not in data and "login" not in data:
        raise ShapeError("no quota_snapshots and no copilot_plan in the answer")
    return CopilotUsage(
        windows=windows, plan=text(data.get("copilot_plan"), 40), login=text(data.get("login"), 100)
    )


# --------------------------------------------------------------------------------------------------
# Tokens


def plugin_tokens(data: object) -> Iterator[str]:
    """``oauth_token`` values for github.com in an ``apps.json`` / ``hosts.json`` document."""
    doc = mapping(data) or {}
    for key, entry in doc.items():
        item = mapping(entry)
        if isinstance(key, str) and key.split(":")[0] == "github.com" and item is not None:
            token = item.get("oauth_token")
            if isinstance(token, str) and token.strip():
                yield token.strip()


def is_classic_pat(token: str) -> bool:
    return token.startswith("ghp_")


class _Found(msgspec.Struct):
    token: str
    origin: str


class CopilotDriver:
    polls = True

    def __init__(self) -> None:
        #: A refused token is not sent again until a different token turns up.
        self._refusals = Refusals()

    def budget_s(self, cfg: ProviderConfig) -> float:
        return cfg.poll_timeout_s + 20.0

    async def _gh_token(self, ctx: Context) -> str | None:
        gh = ctx.which(ctx.cfg.cli or "gh")
        if gh is None:
            return None
        try:
            code, out = await proc.run([gh, "auth", "token"], ctx.env, within_s=10.0)
        except PollFailure:
            return None
        token = out.decode("utf-8", "replace").strip()
        return token if code == 0 and token and len(token.split()) == 1 else None

    async def _tokens(self, ctx: Context) -> list[_Found]:
        """Tokens in the order they are tried, up to the first Copilot can accept (so ``gh`` is
        not run when a variable already holds a usable token)."""
        found = [_Found(v, f"${n}") for n in ctx.cfg.key_env if (v := ctx.env_value(n)) is not None]
        if any(not is_classic_pat(f.token) for f in found):
            return found
        gh = await self._gh_token(ctx)
        if gh is not None:
            found.append(_Found(gh, "`gh auth token`"))
            if not is_classic_pat(gh):
                return found
        configured = expand(ctx.options(CopilotOptions).apps_json)
        plugin_dir = ctx.config_home / "github-copilot"
        for path in (configured,) if configured else (plugin_dir / "apps.json", plugin_dir / "hosts.json"):
            try:
                raw = await anyio.Path(path).read_bytes()
                tokens = list(plugin_tokens(json.loads(raw)))
            except (OSError, ValueError):
                continue
            found.extend(_Found(t, tilde(path, ctx.home)) for t in tokens)
        return found

    async def poll(self, ctx: Context) -> PollResult:
        candidates = await self._tokens(ctx)
        ctx.secrets.extend(f.token for f in candidates)
        usable = [f for f in candidates if not is_classic_pat(f.token)]
        if not usable:
            if candidates:
                return ctx.unavailable(
                    f"the GitHub token in {candidates[0].origin} is a classic personal access token "
                    "(ghp_…), which Copilot does not accept; run `gh auth login` or use a fine-grained token"
                )
            return ctx.unavailable("no GitHub token for Copilot (set $GH_TOKEN or run `gh auth login`)")
        chosen = usable[0]
        avail = Availability(available=True, reason=f"GitHub token from {chosen.origin}")

        def refused(status: int) -> Refusal | None:
            if status == 401:
                return Refusal(
                    message=f"GitHub refused the token from {chosen.origin} (HTTP 401) — "
                    "run `gh auth login` again"
                )
            if status in (403, 404):
                return Refusal(
                    message=f"the GitHub account of the token from {chosen.origin} has no Copilot access "
                    f"(HTTP {status})",
                    available=False,
                )
            return None

        url = (ctx.cfg.base_url or "https://api.github.com").rstrip("/") + USER_PATH
        headers = {**HEADERS, "Authorization": f"token {chosen.token}"}
        user_agent = ctx.options(CopilotOptions).user_agent
        if user_agent:
            headers["User-Agent"] = user_agent
        try:
            usage = await fetch_usage(
                ctx,
                url,
                token=chosen.token,
                headers=headers,
                what="the Copilot quota endpoint",
                parse=parse_user,
                refusals=self._refusals,
                refused=refused,
            )
        except PollFailure as exc:
            return ctx.failed(avail, exc)
        if usage.plan:
            avail.reason = f"Copilot {usage.plan} plan; {avail.reason}"
        if not usage.windows:
            avail.reason += "; no limited quota reported (unlimited plan)"
        return ctx.result(avail, usage.windows, account=f"github:{usage.login}" if usage.login else None)
