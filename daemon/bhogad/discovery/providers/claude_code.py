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
from bhogad.discovery.providers import proc
from bhogad.discovery.providers.base import (
    Context,
    CredentialProblem,
    Kind,
    Outcome,
    PollFailure,
    ShapeError,
    fingerprint,
    redact,
    tilde,
    unavailable,
)
from bhogad.discovery.providers.claude_parse import ClaudeCredentials, parse_credentials, parse_usage
from bhogad.discovery.providers.http import get_json
from bhogad.domain.state import Availability

USAGE_PATH: Final = "/api/oauth/usage"
BETA: Final = "oauth-2025-04-20"
FALLBACK_VERSION: Final = "2.1.0"
OVERRIDE_ENV: Final = "BHOGA_CLAUDE_OAUTH_TOKEN"
KEYCHAIN_SERVICE: Final = "Claude Code-credentials"
#: Keychain reads can pop up a permission prompt; an expired item is re-read at most this often.
KEYCHAIN_REREAD: Final = timedelta(minutes=5)

EXPIRED: Final = "Claude Code token expired — run `claude` to refresh it"


def config_dir(ctx: Context) -> Path:
    configured = ctx.path_option("config_dir")
    if configured is not None:
        return configured
    env_dir = ctx.env_value("CLAUDE_CONFIG_DIR")
    return Path(env_dir).expanduser() if env_dir else ctx.home / ".claude"


def credentials_path(ctx: Context) -> Path:
    configured = ctx.path_option("credentials_path")
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
    configured = ctx.path_option("config_dir") or (
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
        self._refused: tuple[str, str] | None = None
        self._keychain: ClaudeCredentials | None = None
        self._keychain_read_at: datetime | None = None

    def budget_s(self, cfg: ProviderConfig) -> float:
        # The HTTP call, plus a first Keychain read (15 s) and `claude --version` (10 s).
        return cfg.poll_timeout_s + 30.0

    # -- credentials -----------------------------------------------------------------------------

    def _use_keychain(self, ctx: Context) -> bool:
        mode = ctx.option("keychain", "auto")
        return mode == "always" or (mode == "auto" and sys.platform == "darwin")

    async def _read_keychain(self, ctx: Context) -> ClaudeCredentials | None:
        now = ctx.now()
        cached = self._keychain
        if cached is not None and not cached.expired(now):
            return cached
        if self._keychain_read_at is not None and now - self._keychain_read_at < KEYCHAIN_REREAD:
            return cached
        self._keychain_read_at = now
        security = ctx.which(ctx.option("security_cli", "security"))
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
        configured = ctx.option("user_agent")
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

    async def poll(self, ctx: Context) -> Outcome:
        try:
            login = await self._login(ctx)
        except CredentialProblem as exc:
            if exc.signed_out:
                return unavailable(str(exc))
            # The file is there, so Claude Code is set up here; what it holds cannot be read now.
            avail = Availability(available=True, reason="Claude Code is set up, but its login is unusable")
            return Outcome(availability=avail, error=str(exc), kind=Kind.LOCAL)
        if login is None:
            inference_only = next((n for n in ctx.cfg.key_env if ctx.env_value(n)), None)
            if inference_only is not None:
                # setup-token tokens carry user:inference only: usable by a harness, not for usage.
                return Outcome(
                    availability=Availability(
                        available=True,
                        reason=f"${inference_only} is set (an inference-only token: quota comes from "
                        "turn headers, the usage endpoint cannot be read with it)",
                    ),
                    kind=Kind.LOCAL,
                )
            return unavailable(
                f"not signed in to Claude Code (no {tilde(credentials_path(ctx), ctx.home)}); run `claude`"
            )

        creds = login.creds
        ctx.secrets.append(creds.access_token)
        plan = f"{creds.plan} plan, " if creds.plan else ""
        avail = Availability(
            available=True, reason=f"signed in to Claude Code ({plan}token from {login.origin})"
        )
        now = ctx.now()
        if creds.expired(now):
            return Outcome(availability=avail, error=EXPIRED, kind=Kind.LOCAL)
        if not creds.can_read_usage():
            return Outcome(
                availability=avail,
                error="Claude Code token cannot read usage (no user:profile scope, as with "
                "`claude setup-token` tokens) — run `claude` and sign in with /login",
                kind=Kind.LOCAL,
            )
        token_id = fingerprint(creds.access_token)
        if self._refused is not None and self._refused[0] == token_id:
            return Outcome(availability=avail, error=self._refused[1], kind=Kind.LOCAL)

        url = (ctx.cfg.base_url or "https://api.anthropic.com").rstrip("/") + USAGE_PATH
        headers = {
            "Authorization": f"Bearer {creds.access_token}",
            "anthropic-beta": BETA,
            "Accept": "application/json",
            "User-Agent": await self._agent(ctx),
        }
        try:
            body = await get_json(
                ctx.http,
                url,
                headers=headers,
                within_s=ctx.cfg.poll_timeout_s,
                what="the Claude usage endpoint",
                now=now,
                secrets=ctx.secrets,
            )
            usage = parse_usage(body, now)
        except PollFailure as exc:
            return self._failed(exc, avail, token_id)
        except ShapeError as exc:
            return Outcome(
                availability=avail,
                error=f"the Claude usage endpoint answered in an unexpected shape ({exc})",
                kind=Kind.PROTOCOL,
            )
        self._refused = None
        if not usage.windows:
            return Outcome(
                availability=avail,
                error="the Claude usage endpoint reported no usage windows for this account",
                kind=Kind.PROTOCOL,
            )
        if usage.currency and usage.currency != "USD":
            avail.reason += f"; amounts in {usage.currency}"
        account = await anyio.to_thread.run_sync(account_of, ctx)
        return Outcome(availability=avail, windows=usage.windows, account=account)

    def _failed(self, exc: PollFailure, avail: Availability, token_id: str) -> Outcome:
        message = str(exc)
        if exc.status == 401:
            message = "Claude Code token was refused (HTTP 401) — run `claude` to sign in again"
            # Retrying a refused token only earns 429s; wait until Claude Code stores a new one.
            self._refused = (token_id, message)
            return Outcome(availability=avail, error=message, kind=Kind.LOCAL)
        if exc.status == 403:
            message = (
                "the Claude usage endpoint refused this token (HTTP 403) — run `claude` and sign in "
                "with /login"
            )
        return Outcome(availability=avail, error=redact(message), kind=exc.kind, not_before=exc.not_before)
