"""Claude Code subscription: the OAuth usage endpoint, read with the token Claude Code stores.

Options (``providers.claude_code.options`` in config.yaml):

* ``config_dir`` — Claude Code's config directory (default ``$CLAUDE_CONFIG_DIR``, else ``~/.claude``).
* ``credentials_path`` — the credentials file (default ``<config_dir>/.credentials.json``).
* ``keychain`` — ``auto`` (read the macOS Keychain item when the file is absent, on macOS), ``never``
  (never touch the Keychain: it can prompt), or ``always``.
* ``user_agent`` — sent to the usage endpoint; default ``claude-code/<version of the claude CLI>``.
  The endpoint puts clients without a ``claude-code/`` agent in a tiny bucket of persistent 429s.

``base_url`` is the API host (default ``https://api.anthropic.com``). ``$BHOGA_CLAUDE_OAUTH_TOKEN``
supplies a token (with the ``user:profile`` scope) directly. The token is never refreshed here:
Claude Code owns its single-use refresh token, so an expired token is reported, not renewed.
"""

from __future__ import annotations

import hashlib
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final

import anyio
import msgspec

from bhogad.config import ProviderConfig
from bhogad.discovery.options import ClaudeCodeOptions, Keychain, expand
from bhogad.discovery.providers import proc
from bhogad.discovery.providers.base import (
    Context,
    CredentialProblem,
    Kind,
    PollFailure,
    Refusal,
    Refusals,
    tilde,
)
from bhogad.discovery.providers.claude_parse import ClaudeCredentials, parse_credentials, parse_usage
from bhogad.discovery.providers.http import fetch_usage
from bhogad.domain.state import Availability, PollResult

USAGE_PATH: Final = "/api/oauth/usage"
BETA: Final = "oauth-2025-04-20"
FALLBACK_VERSION: Final = "2.1.0"
OVERRIDE_ENV: Final = "BHOGA_CLAUDE_OAUTH_TOKEN"
KEYCHAIN_SERVICE: Final = "Claude Code-credentials"
#: Keychain reads can pop up a permission prompt; an expired item is re-read at most this often.
KEYCHAIN_REREAD: Final = timedelta(minutes=5)

EXPIRED: Final = "Claude Code token expired — run `claude` to refresh it"
WHAT: Final = "the Claude usage endpoint"


def refused(status: int) -> Refusal | None:
    if status == 401:
        # Retrying a refused token only earns 429s; wait until Claude Code stores a new one.
        return Refusal(message="Claude Code token was refused (HTTP 401) — run `claude` to sign in again")
    if status == 403:
        return Refusal(
            message=f"{WHAT} refused this token (HTTP 403) — run `claude` and sign in with /login",
            remember=False,
            kind=Kind.PROTOCOL,
        )
    return None


def config_dir(ctx: Context) -> Path:
    configured = expand(ctx.options(ClaudeCodeOptions).config_dir)
    if configured is not None:
        return configured
    env_dir = ctx.env_value("CLAUDE_CONFIG_DIR")
    return Path(env_dir).expanduser() if env_dir else ctx.home / ".claude"


def credentials_path(ctx: Context) -> Path:
    configured = expand(ctx.options(ClaudeCodeOptions).credentials_path)
    if configured is not None:
        return configured
    # CodexBar: CLAUDE_SECURESTORAGE_CONFIG_DIR moves this one file and nothing else.
    secure = ctx.env_value("CLAUDE_SECURESTORAGE_CONFIG_DIR")
    root = Path(secure).expanduser() if secure else config_dir(ctx)
    return root / ".credentials.json"


#: Claude Code's own settings file, which names the signed-in account; it can hold long project
#: histories, so it is read only up to this size.
_ACCOUNT_FILE_MAX = 32 * 1024 * 1024


def account_of(ctx: Context) -> str | None:
    """The organisation the login belongs to, from Claude Code's ``.claude.json`` (``oauthAccount``).

    The quota is the organisation's (a Max plan is a one-person organisation), so two logins of one
    organisation, on one machine or several, are one quota. No request is made: Claude Code wrote it.
    """
    # With a config directory of its own (a second login), the file lives inside it; the default
    # login keeps it in the home directory, beside ~/.claude rather than in it.
    configured = expand(ctx.options(ClaudeCodeOptions).config_dir) or (
        Path(env_dir).expanduser() if (env_dir := ctx.env_value("CLAUDE_CONFIG_DIR")) else None
    )
    path = configured / ".claude.json" if configured is not None else ctx.home / ".claude.json"
    try:
        with path.open("rb") as f:
            data = msgspec.json.decode(f.read(_ACCOUNT_FILE_MAX + 1))
    except (OSError, msgspec.DecodeError):
        return None
    account = data.get("oauthAccount") if isinstance(data, dict) else None
    if not isinstance(account, dict):
        return None
    org = account.get("organizationUuid") or account.get("accountUuid")
    return f"claude:{org[:64]}" if isinstance(org, str) and org.strip() else None


def keychain_service(env_config_dir: str | None, secure_override: str | None) -> str:
    """The Keychain item name: setting ``CLAUDE_CONFIG_DIR`` at all adds a suffix of the first 8 hex
    of SHA-256 of its raw value; an empty ``CLAUDE_SECURESTORAGE_CONFIG_DIR`` suppresses it."""
    if env_config_dir is None or secure_override == "":
        return KEYCHAIN_SERVICE
    return f"{KEYCHAIN_SERVICE}-{hashlib.sha256(env_config_dir.encode()).hexdigest()[:8]}"


class _Login:
    """Where the token came from, for messages, and the token itself."""

    def __init__(self, creds: ClaudeCredentials, origin: str) -> None:
        self.creds = creds
        self.origin = origin


class ClaudeCodeDriver:
    polls = True

    def __init__(self) -> None:
        self._user_agent: str | None = None
        #: A token the endpoint refused: not sent again until the stored token changes.
        self._refusals = Refusals()
        self._keychain: ClaudeCredentials | None = None
        self._keychain_read_at: datetime | None = None

    def budget_s(self, cfg: ProviderConfig) -> float:
        # The HTTP call, plus a first Keychain read (15 s) and `claude --version` (10 s).
        return cfg.poll_timeout_s + 30.0

    # -- credentials -----------------------------------------------------------------------------

    def _use_keychain(self, ctx: Context) -> bool:
        mode = ctx.options(ClaudeCodeOptions).keychain
        return mode is Keychain.ALWAYS or (mode is Keychain.AUTO and sys.platform == "darwin")

    async def _read_keychain(self, ctx: Context) -> ClaudeCredentials | None:
        now = ctx.now()
        cached = self._keychain
        if cached is not None and not cached.expired(now):
            return cached
        if self._keychain_read_at is not None and now - self._keychain_read_at < KEYCHAIN_REREAD:
            return cached
        self._keychain_read_at = now
        security = ctx.which(ctx.options(ClaudeCodeOptions).security_cli)
        if security is None:
            return None
        service = keychain_service(
            ctx.env.get("CLAUDE_CONFIG_DIR"), ctx.env.get("CLAUDE_SECURESTORAGE_CONFIG_DIR")
        )
        try:
            code, out = await proc.run(
                [security, "find-generic-password", "-s", service, "-w"], ctx.env, within_s=15.0
            )
        except PollFailure:
            return cached
        if code != 0:
            # 44 is "item not found"; anything else (a denied prompt) also means no login for us.
            self._keychain = None
            return None
        self._keychain = parse_credentials(out, f"the Keychain item {service!r}")
        return self._keychain

    async def _login(self, ctx: Context) -> _Login | None:
        override = ctx.env_value(OVERRIDE_ENV)
        if override is not None:
            return _Login(ClaudeCredentials(access_token=override), f"${OVERRIDE_ENV}")
        path = credentials_path(ctx)
        try:
            raw = await anyio.Path(path).read_bytes()
        except FileNotFoundError:
            raw = None
        except OSError as exc:
            raise CredentialProblem(
                f"cannot read {tilde(path, ctx.home)}: {exc.strerror}; check its permissions"
            ) from None
        if raw is not None:
            return _Login(parse_credentials(raw, tilde(path, ctx.home)), tilde(path, ctx.home))
        if self._use_keychain(ctx):
            creds = await self._read_keychain(ctx)
            if creds is not None:
                return _Login(creds, "the macOS Keychain")
        return None

    async def _agent(self, ctx: Context) -> str:
        configured = ctx.options(ClaudeCodeOptions).user_agent
        if configured:
            return configured
        if self._user_agent is None:
            version = FALLBACK_VERSION
            claude = ctx.which(ctx.cfg.cli or "claude")
            if claude is not None:
                try:
                    code, out = await proc.run([claude, "--version"], ctx.env, within_s=10.0)
                    first = out.decode("utf-8", "replace").split()
                    if code == 0 and first and first[0][:1].isdigit():
                        version = first[0]
                except PollFailure:
                    pass
            self._user_agent = f"claude-code/{version}"
        return self._user_agent

    # -- poll ------------------------------------------------------------------------------------

    async def poll(self, ctx: Context) -> PollResult:
        try:
            login = await self._login(ctx)
        except CredentialProblem as exc:
            if exc.signed_out:
                return ctx.unavailable(str(exc))
            # The file is there, so Claude Code is set up here; what it holds cannot be read now.
            avail = Availability(available=True, reason="Claude Code is set up, but its login is unusable")
            return ctx.result(avail, error=str(exc), kind=Kind.LOCAL)
        if login is None:
            inference_only = next((n for n in ctx.cfg.key_env if ctx.env_value(n)), None)
            if inference_only is not None:
                # setup-token tokens carry user:inference only: usable by a harness, not for usage.
                return ctx.result(
                    Availability(
                        available=True,
                        reason=f"${inference_only} is set (an inference-only token: quota comes from "
                        "turn headers, the usage endpoint cannot be read with it)",
                    ),
                    kind=Kind.LOCAL,
                )
            return ctx.unavailable(
                f"not signed in to Claude Code (no {tilde(credentials_path(ctx), ctx.home)}); run `claude`"
            )

        creds = login.creds
        ctx.secrets.append(creds.access_token)
        plan = f"{creds.plan} plan, " if creds.plan else ""
        avail = Availability(
            available=True, reason=f"signed in to Claude Code ({plan}token from {login.origin})"
        )
        if creds.expired(ctx.now()):
            return ctx.result(avail, error=EXPIRED, kind=Kind.LOCAL)
        if not creds.can_read_usage():
            return ctx.result(
                avail,
                error="Claude Code token cannot read usage (no user:profile scope, as with "
                "`claude setup-token` tokens) — run `claude` and sign in with /login",
                kind=Kind.LOCAL,
            )
        url = (ctx.cfg.base_url or "https://api.anthropic.com").rstrip("/") + USAGE_PATH
        try:
            headers = {
                "Authorization": f"Bearer {creds.access_token}",
                "anthropic-beta": BETA,
                "Accept": "application/json",
                "User-Agent": await self._agent(ctx),
            }
            usage = await fetch_usage(
                ctx,
                url,
                token=creds.access_token,
                headers=headers,
                what=WHAT,
                parse=parse_usage,
                refusals=self._refusals,
                refused=refused,
            )
        except PollFailure as exc:
            return ctx.failed(avail, exc)
        if not usage.windows:
            return ctx.result(
                avail, error=f"{WHAT} reported no usage windows for this account", kind=Kind.PROTOCOL
            )
        if usage.currency and usage.currency != "USD":
            avail.reason += f"; amounts in {usage.currency}"
        account = await anyio.to_thread.run_sync(account_of, ctx)
        return ctx.result(avail, usage.windows, account=account)
