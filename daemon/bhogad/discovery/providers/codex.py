"""Codex (ChatGPT subscription): the ``wham/usage`` endpoint, then ``codex app-server``, then the
session rollout files — the first that answers wins.

Options (``providers.openai-codex.options`` in config.yaml):

* ``codex_home`` — Codex's home (default ``$CODEX_HOME``, else ``~/.codex``).
* ``app_server`` — ``auto`` (use ``codex app-server`` when the endpoint fails) or ``never``.
* ``app_server_timeout_s`` — how long the app-server may take (default 30; it calls the endpoint
  upstream and field reports show 5–7 s).
* ``app_server_retry_s`` — after the app-server fails, leave it alone this long (default 1800).
* ``rollout`` — ``auto`` (read the session logs as the last resort) or ``never``.
* ``user_agent`` — sent to the usage endpoint.

``base_url`` is the ChatGPT backend (default ``https://chatgpt.com/backend-api``); while it is the
default, Codex's own ``chatgpt_base_url`` from ``config.toml`` wins, so bhoga reads usage wherever
the user's Codex is pointed. ``cli`` is the ``codex`` executable. The token in ``auth.json`` is
never refreshed here: a second client redeeming Codex's single-use refresh token logs Codex out
(``refresh_token_reused``). The app-server, being Codex itself, may refresh it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Final

import anyio

from bhogad import __version__
from bhogad.config import DEFAULT_PROVIDERS, ProviderConfig
from bhogad.discovery.options import CodexOptions, Toggle, expand, typed
from bhogad.discovery.providers.base import (
    Context,
    CredentialProblem,
    Kind,
    PollFailure,
    Refusal,
    Refusals,
    ShapeError,
    tilde,
)
from bhogad.discovery.providers.codex_appserver import read_rate_limits
from bhogad.discovery.providers.codex_auth import (
    DEFAULT_USAGE_BASE,
    CodexAuth,
    CodexConfig,
    parse_auth,
    parse_config,
    usage_url,
)
from bhogad.discovery.providers.codex_parse import CodexReading, parse_app_server, parse_usage
from bhogad.discovery.providers.codex_rollout import read_rollouts
from bhogad.discovery.providers.http import fetch_usage
from bhogad.domain.state import Availability, PollResult

EXPIRED: Final = "Codex token expired — run `codex` to refresh it"
REFUSED: Final = "Codex token was refused (HTTP {status}) — run `codex login` to sign in again"
_DEFAULT_BASE: Final = str(DEFAULT_PROVIDERS["openai-codex"].get("base_url") or DEFAULT_USAGE_BASE)


def refused(status: int) -> Refusal | None:
    return Refusal(message=REFUSED.format(status=status)) if status in (401, 403) else None


def codex_home(ctx: Context) -> Path:
    configured = expand(ctx.options(CodexOptions).codex_home)
    if configured is not None:
        return configured
    env_home = ctx.env_value("CODEX_HOME")
    return Path(env_home).expanduser() if env_home else ctx.home / ".codex"


async def _read(path: Path) -> bytes | None:
    try:
        return await anyio.Path(path).read_bytes()
    except FileNotFoundError:
        return None


class _Attempts:
    """What each source said, so the status can say why the numbers come from where they do."""

    def __init__(self) -> None:
        self.failures: list[str] = []
        self.primary_kind: Kind | None = None
        self.not_before: datetime | None = None

    def failed(self, message: str, kind: Kind, not_before: datetime | None = None) -> None:
        self.failures.append(message)
        if self.primary_kind is None:
            self.primary_kind = kind
        if not_before is not None:
            self.not_before = not_before

    def summary(self) -> str:
        first, rest = self.failures[0], self.failures[1:]
        return first + (f" (fallbacks: {'; '.join(rest)})" if rest else "")


class CodexDriver:
    polls = True

    def __init__(self) -> None:
        self._refusals = Refusals()
        self._app_server_resting_until: datetime | None = None

    def budget_s(self, cfg: ProviderConfig) -> float:
        app_server = typed(CodexOptions, cfg.options).app_server_timeout_s
        return cfg.poll_timeout_s + app_server + 30.0

    async def poll(self, ctx: Context) -> PollResult:
        options = ctx.options(CodexOptions)
        home = codex_home(ctx)
        now = ctx.now()
        auth_path = home / "auth.json"
        config_raw = await _read(home / "config.toml")
        config = parse_config(config_raw) if config_raw is not None else CodexConfig()
        cli = ctx.which(ctx.cfg.cli or "codex")

        auth: CodexAuth | None = None
        problem: str | None = None
        try:
            raw = await _read(auth_path)
            if raw is not None:
                auth = parse_auth(raw, tilde(auth_path, ctx.home))
        except CredentialProblem as exc:
            if exc.signed_out:
                return ctx.unavailable(str(exc))
            problem = str(exc)
        except OSError as exc:
            problem = f"cannot read {tilde(auth_path, ctx.home)}: {exc.strerror}; check its permissions"

        if auth is not None and auth.api_key_mode:
            return ctx.unavailable(
                f"Codex is signed in with an API key ({tilde(auth_path, ctx.home)}): there is no "
                "ChatGPT subscription quota to read"
            )
        keyring = config.credentials_store in ("keyring", "auto") and cli is not None
        if auth is None and problem is None and not keyring:
            where = tilde(auth_path, ctx.home)
            return ctx.unavailable(f"not signed in to Codex (no {where}); run `codex login`")

        if auth is not None:
            plan = f"{auth.plan} plan, " if auth.plan else ""
            reason = f"signed in to Codex ({plan}{tilde(auth_path, ctx.home)})"
        elif problem is not None:
            reason = "Codex is set up, but its login file is unusable"
        else:
            reason = "signed in to Codex (credentials in the OS keyring, read through `codex app-server`)"
        avail = Availability(available=True, reason=reason)

        attempts = _Attempts()
        reading: CodexReading | None = None
        if auth is not None and auth.access_token is not None:
            ctx.secrets.append(auth.access_token)
            reading = await self._from_endpoint(ctx, auth, config, now, attempts)
        elif problem is not None:
            attempts.failed(problem, Kind.LOCAL)
        source = "the usage endpoint"

        # The app-server reads the same endpoint upstream: after a 429 it would only add to it.
        if reading is None and attempts.primary_kind is not Kind.RATE_LIMITED:
            reading = await self._from_app_server(ctx, cli, now, attempts)
            source = "codex app-server"
        if reading is None and options.rollout is not Toggle.NEVER:
            reading = await anyio.to_thread.run_sync(read_rollouts, home, options.rollout_files)
            if reading is None:
                attempts.failed("no rate limits in the Codex session logs", Kind.PROTOCOL)
            else:
                as_of = reading.as_of or now
                source = f"the Codex session logs (as of {as_of:%Y-%m-%d %H:%M} UTC)"

        if reading is None or not reading.windows:
            if not attempts.failures:
                attempts.failed("Codex reported no rate-limit windows", Kind.PROTOCOL)
            return ctx.result(
                avail,
                error=attempts.summary(),
                kind=attempts.primary_kind or Kind.PROTOCOL,
                not_before=attempts.not_before,
            )
        if reading.plan and auth is None:
            avail.reason += f"; {reading.plan} plan"
        if "balance" in reading.credits:
            avail.reason += f"; credits balance {reading.credits['balance']}"
        error = f"{attempts.summary()}; showing numbers from {source}" if attempts.failures else None
        account = f"chatgpt:{auth.account_id}" if auth is not None and auth.account_id else None
        return ctx.result(
            avail, reading.windows, error=error, not_before=attempts.not_before, account=account
        )

    async def _from_endpoint(
        self, ctx: Context, auth: CodexAuth, config: CodexConfig, now: datetime, attempts: _Attempts
    ) -> CodexReading | None:
        assert auth.access_token is not None
        if auth.expired(now):
            attempts.failed(EXPIRED, Kind.LOCAL)
            return None
        base = ctx.cfg.base_url or _DEFAULT_BASE
        if base.rstrip("/") == _DEFAULT_BASE.rstrip("/") and config.chatgpt_base_url:
            base = config.chatgpt_base_url
        headers = {
            "Authorization": f"Bearer {auth.access_token}",
            "Accept": "application/json",
            "User-Agent": ctx.options(CodexOptions).user_agent or f"bhoga/{__version__}",
        }
        if auth.account_id:
            # It selects the workspace; without it a multi-workspace user may get another's numbers.
            headers["ChatGPT-Account-Id"] = auth.account_id
        try:
            return await fetch_usage(
                ctx,
                usage_url(base),
                token=auth.access_token,
                headers=headers,
                what="the Codex usage endpoint",
                parse=parse_usage,
                refusals=self._refusals,
                refused=refused,
            )
        except PollFailure as exc:
            attempts.failed(str(exc), exc.kind, exc.not_before)
            return None

    async def _from_app_server(
        self, ctx: Context, cli: str | None, now: datetime, attempts: _Attempts
    ) -> CodexReading | None:
        options = ctx.options(CodexOptions)
        if cli is None or options.app_server is Toggle.NEVER:
            return None
        resting = self._app_server_resting_until
        if resting is not None and now < resting:
            attempts.failed(f"codex app-server failed earlier; next try at {resting:%H:%M} UTC", Kind.LOCAL)
            return None
        within_s = options.app_server_timeout_s
        env = dict(ctx.env)
        env["CODEX_HOME"] = str(codex_home(ctx))
        try:
            result = await read_rate_limits(cli, env, within_s)
            reading = parse_app_server(result, now)
        except PollFailure as exc:
            attempts.failed(str(exc), exc.kind)
        except ShapeError as exc:
            attempts.failed(f"codex app-server answered in an unexpected shape ({exc})", Kind.PROTOCOL)
        else:
            self._app_server_resting_until = None
            return reading
        # A broken or logged-out CLI fails the same way next time; starting it is not free.
        rest = options.app_server_retry_s
        self._app_server_resting_until = now + timedelta(seconds=rest) if rest > 0 else None
        return None
