"""What every provider driver shares: the context a poll runs in, what a poll returns
(:class:`PollResult`, made through :meth:`Context.result`), the failure kinds the poller schedules
by, and the one refused-token cache (:class:`Refusals`).

A driver turns one provider's credentials and endpoints into quota windows. It never refreshes an
OAuth token (the official CLIs own their single-use refresh tokens), and nothing it returns — errors
included — may contain a token: errors pass through :func:`redact` before they leave a driver.
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Protocol, TypeVar

import httpx
import msgspec

from bhoga.protocol import QuotaWindow
from bhogad.config import ProviderConfig
from bhogad.discovery.options import OptionsT, typed
from bhogad.domain.state import Availability, PollKind, PollResult

#: How a poll ended (``PollKind``), which decides when the poller tries again.
Kind = PollKind


class Refusal(msgspec.Struct, frozen=True, kw_only=True):
    """What an endpoint refusing the credentials (HTTP 401, 403, …) means, as one driver reads it."""

    #: What the person should do, shown as the poll error.
    message: str
    #: Not sent again until the token changes: retrying a refused token only earns 429s.
    remember: bool = True
    #: ``LOCAL``: nothing to do until the token changes; ``PROTOCOL``: back off and try again.
    kind: PollKind = PollKind.LOCAL
    #: ``False`` when the refusal shows this account cannot use the provider at all.
    available: bool = True


class Refusals:
    """The one refused-token cache every driver keeps: the last token refused, by fingerprint only."""

    def __init__(self) -> None:
        self._refused: tuple[str, Refusal] | None = None

    def get(self, token: str) -> Refusal | None:
        if self._refused is not None and self._refused[0] == fingerprint(token):
            return self._refused[1]
        return None

    def remember(self, token: str, refusal: Refusal) -> None:
        self._refused = (fingerprint(token), refusal)

    def clear(self) -> None:
        self._refused = None


class PollFailure(Exception):
    """One step of a poll failed; ``str(self)`` is already safe to show and to log."""

    def __init__(
        self,
        kind: Kind,
        message: str,
        *,
        status: int | None = None,
        not_before: datetime | None = None,
        refusal: Refusal | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.not_before = not_before
        #: Set when the credentials were refused (now, or earlier and remembered).
        self.refusal = refusal


class CredentialProblem(Exception):
    """Credentials exist but cannot be used; the message names the file and what to do.

    ``signed_out`` says the file is readable and simply holds no login (the provider is not usable
    here); otherwise it could not be read (perhaps mid-rewrite by its CLI) and the login may be fine.
    """

    def __init__(self, message: str, *, signed_out: bool = False) -> None:
        super().__init__(message)
        self.signed_out = signed_out


def login_document(raw: bytes | str, where: str, *, login: str, command: str) -> Mapping[str, Any]:
    """The JSON object in a CLI's credentials file (``where`` names it), or a ``CredentialProblem``
    that says to run ``command``: unreadable JSON may be a file mid-rewrite, any other value holds
    no ``login`` at all (signed out)."""
    try:
        data = json.loads(raw)
    except ValueError:
        raise CredentialProblem(f"{where} is not valid JSON; run {command} to sign in again") from None
    if not isinstance(data, Mapping):
        raise CredentialProblem(f"{where} does not hold {login}; run {command} to sign in", signed_out=True)
    return data


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

    def options(self, cls: type[OptionsT]) -> OptionsT:
        """This provider's options as its driver's Struct (checked when the config loaded)."""
        return typed(cls, self.cfg.options)

    # -- results: every poll result is stamped with the daemon's clock when it is made --------------

    def result(
        self,
        availability: Availability,
        windows: list[QuotaWindow] | None = None,
        *,
        error: str | None = None,
        kind: PollKind = PollKind.OK,
        not_before: datetime | None = None,
        account: str | None = None,
    ) -> PollResult:
        """``account`` is whose quota this is (``chatgpt:<account id>``), from what the provider or
        its CLI says, never from a secret: providers with one account share one quota."""
        return PollResult(
            at=self.now(),
            availability=availability,
            windows=windows or [],
            error=error,
            kind=kind,
            not_before=not_before,
            account=account,
        )

    def unavailable(self, reason: str) -> PollResult:
        """Not usable here (not signed in, no token): nothing was sent, so look again soon."""
        return self.result(Availability(available=False, reason=reason), kind=PollKind.LOCAL)

    def failed(self, availability: Availability, exc: PollFailure) -> PollResult:
        """The result of a poll that ended in ``exc``; a refusal may make the provider unavailable."""
        if exc.refusal is not None and not exc.refusal.available:
            return self.unavailable(exc.refusal.message)
        return self.result(availability, error=str(exc), kind=exc.kind, not_before=exc.not_before)

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

    async def poll(self, ctx: Context) -> PollResult: ...


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


#: This many characters of a credential in a row count as the credential. Servers echo tokens cut
#: short (labels and plan names are truncated to 30–80 characters on the way in), so only the whole
#: token is not enough; no real label shares twelve characters in a row with a token.
SECRET_FRAGMENT: Final = 12

_T = TypeVar("_T")


def scrub_text(text: str, secrets: Iterable[str]) -> str:
    """``text`` with each secret, and every run of ``SECRET_FRAGMENT`` or more of its characters (in
    any case), replaced by ``[redacted]``; the same object when there was nothing to replace."""
    for secret in secrets:
        if len(secret) < 6:
            continue
        if secret in text:
            text = text.replace(secret, "[redacted]")
        n = SECRET_FRAGMENT
        if len(secret) <= n or len(text) < n:
            continue
        # Case-blind: a parser may lower-case what it keeps (a model scope from a display name).
        folded = secret.lower()
        pieces = {folded[i : i + n] for i in range(len(folded) - n + 1)}
        low = text.lower()
        if len(low) != len(text):  # a few non-ASCII letters change length when lowered
            low = "".join(c.lower() if len(c.lower()) == 1 else c for c in text)
        covered = bytearray(len(text))
        for i in range(len(text) - n + 1):
            if low[i : i + n] in pieces:
                covered[i : i + n] = b"\x01" * n
        if any(covered):
            out: list[str] = []
            for i, ch in enumerate(text):
                if not covered[i]:
                    out.append(ch)
                elif i == 0 or not covered[i - 1]:
                    out.append("[redacted]")
            text = "".join(out)
    return text


def scrub(value: _T, secrets: Iterable[str]) -> _T:
    """``value`` (an Outcome, a window, any Struct, list or dict of them) with every string in it
    passed through :func:`scrub_text`: what a provider sends back may echo the credential of the
    request it answers, into a label, a plan name or a window's name, and from there it would be
    stored, logged and shown. Values without a secret in them come back as the same objects."""
    live = [s for s in secrets if len(s) >= 6]
    return _scrub(value, live) if live else value


def _scrub(value: _T, secrets: list[str]) -> _T:
    if isinstance(value, enum.Enum):
        return value  # closed sets (StrEnum members are strings too): nothing a server wrote
    if isinstance(value, str):
        return scrub_text(value, secrets)  # type: ignore[return-value]
    if isinstance(value, msgspec.Struct):
        changes = {}
        for f in msgspec.structs.fields(value):
            held = getattr(value, f.name)
            clean = _scrub(held, secrets)
            if clean is not held:
                changes[f.name] = clean
        return msgspec.structs.replace(value, **changes) if changes else value
    if isinstance(value, list):
        items = [_scrub(v, secrets) for v in value]
        return items if any(a is not b for a, b in zip(items, value, strict=True)) else value  # type: ignore[return-value]
    if isinstance(value, dict):
        pairs = [(_scrub(k, secrets), _scrub(v, secrets)) for k, v in value.items()]
        if all(k2 is k and v2 is v for (k2, v2), (k, v) in zip(pairs, value.items(), strict=True)):
            return value
        return dict(pairs)  # type: ignore[return-value]
    return value


def fingerprint(token: str) -> str:
    """A short stable id for a token, so we can remember "this one was refused" without keeping it."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def tilde(path: Path, home: Path) -> str:
    """``~/.claude/.credentials.json`` rather than the absolute path, for messages."""
    try:
        return "~/" + str(path.relative_to(home))
    except ValueError:
        return str(path)
