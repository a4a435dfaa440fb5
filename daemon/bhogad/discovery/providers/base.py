"""What every provider driver shares: the context a poll runs in, what a poll returns, and the
failure kinds the poller schedules by.

A driver turns one provider's credentials and endpoints into quota windows. It never refreshes an
OAuth token (the official CLIs own their single-use refresh tokens), and nothing it returns — errors
included — may contain a token: errors pass through :func:`redact` before they leave a driver.
"""

from __future__ import annotations

import enum
import hashlib
import os
import re
import shutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Final, Protocol

import httpx
import msgspec

from bhoga.protocol import QuotaWindow
from bhogad.config import ProviderConfig
from bhogad.domain.state import Availability


class Kind(enum.Enum):
    """How a poll ended, which decides when the poller tries again."""

    #: Numbers were read: poll again after the normal interval.
    OK = "ok"
    #: Nothing was sent (not signed in, token expired or refused before): re-read local state soon,
    #: since that is cheap and a login must take effect quickly.
    LOCAL = "local"
    #: The provider answered 429: wait at least five minutes, longer when it says so.
    RATE_LIMITED = "rate_limited"
    #: Timeouts, refused connections, 5xx: back off exponentially.
    TRANSIENT = "transient"
    #: An answer we cannot use (not JSON, wrong shape, unexpected 4xx): back off exponentially.
    PROTOCOL = "protocol"


class Outcome(msgspec.Struct, kw_only=True):
    """What one poll of one provider found."""

    availability: Availability
    windows: list[QuotaWindow] = msgspec.field(default_factory=list)
    #: Why the numbers could not be read, in words a person can act on; ``None`` when all went well.
    error: str | None = None
    kind: Kind = Kind.OK
    #: The provider asked us not to come back before this (a 429 with or without ``retry-after``).
    not_before: datetime | None = None
    #: Whose quota this is (``chatgpt:<account id>``), from what the provider or its CLI says, never
    #: from a secret: providers with one account share one quota, across machines too.
    account: str | None = None


class PollFailure(Exception):
    """One step of a poll failed; ``str(self)`` is already safe to show and to log."""

    def __init__(
        self, kind: Kind, message: str, *, status: int | None = None, not_before: datetime | None = None
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.not_before = not_before


class CredentialProblem(Exception):
    """Credentials exist but cannot be used; the message names the file and what to do.

    ``signed_out`` says the file is readable and simply holds no login (the provider is not usable
    here); otherwise it could not be read (perhaps mid-rewrite by its CLI) and the login may be fine.
    """

    def __init__(self, message: str, *, signed_out: bool = False) -> None:
        super().__init__(message)
        self.signed_out = signed_out


class ShapeError(ValueError):
    """A well-formed JSON answer that is not the shape the endpoint documents."""


@dataclass(frozen=True)
class Context:
    """Everything a driver may touch during one poll."""

    pid: str
    cfg: ProviderConfig
    http: httpx.AsyncClient
    env: Mapping[str, str]
    now: Callable[[], datetime]
    #: Token values the driver handled during this poll, scrubbed from every error it returns.
    secrets: list[str] = field(default_factory=list)

    @property
    def home(self) -> Path:
        home = self.env.get("HOME")
        return Path(home) if home else Path.home()

    @property
    def config_home(self) -> Path:
        xdg = self.env.get("XDG_CONFIG_HOME")
        return Path(xdg) if xdg else self.home / ".config"

    def option(self, name: str, default: str = "") -> str:
        return self.cfg.options.get(name, default)

    def option_float(self, name: str, default: float) -> float:
        try:
            return float(self.cfg.options.get(name, default))
        except ValueError:
            return default

    def path_option(self, name: str) -> Path | None:
        value = self.cfg.options.get(name)
        return Path(value).expanduser() if value else None

    def which(self, cli: str | None) -> str | None:
        """The CLI's full path when it is executable here; config may give a bare name or a path."""
        if not cli:
            return None
        return shutil.which(cli, path=self.env.get("PATH", os.defpath))

    def env_value(self, name: str) -> str | None:
        value = self.env.get(name, "").strip()
        return value or None


class Driver(Protocol):
    """One provider's discovery. Instances live as long as the daemon and may keep small caches."""

    #: ``False`` for providers whose windows come only from turn headers (API keys): never polled.
    polls: bool

    def budget_s(self, cfg: ProviderConfig) -> float:
        """The longest one poll may take, fallbacks included, before the poller gives up on it."""
        ...

    async def poll(self, ctx: Context) -> Outcome: ...


# --------------------------------------------------------------------------------------------------
# Secrets


_TOKEN_PATTERNS: Final = re.compile(
    r"(?i)\b(?:bearer|token)\s+[A-Za-z0-9._~+/=\-]{16,}"
    r"|sk-[A-Za-z0-9_\-]{6,}"
    r"|gh[pousr]_[A-Za-z0-9]{6,}"
    r"|github_pat_[A-Za-z0-9_]{6,}"
    r"|eyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.?[A-Za-z0-9_\-]*"
    r"|rt_[A-Za-z0-9_\-]{6,}"
)


def redact(message: str, secrets: Iterable[str] = ()) -> str:
    """``message`` with every known secret and anything shaped like a token replaced by ``[redacted]``.

    Errors can quote server bodies and subprocess output, which may echo what we sent; this is the
    last line of defence between a credential and a log file.
    """
    for secret in secrets:
        if secret and len(secret) >= 6:
            message = message.replace(secret, "[redacted]")
    return _TOKEN_PATTERNS.sub("[redacted]", message)


def fingerprint(token: str) -> str:
    """A short stable id for a token, so we can remember "this one was refused" without keeping it."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def unavailable(reason: str) -> Outcome:
    return Outcome(availability=Availability(available=False, reason=reason), kind=Kind.LOCAL)


def tilde(path: Path, home: Path) -> str:
    """``~/.claude/.credentials.json`` rather than the absolute path, for messages."""
    try:
        return "~/" + str(path.relative_to(home))
    except ValueError:
        return str(path)
