"""One GET of a JSON usage endpoint, with every way it can fail turned into a :class:`PollFailure`,
and :func:`fetch_usage`, the skeleton every driver polls through (token, refusals, shape errors).

The shared ``httpx.AsyncClient`` is the daemon's; this helper adds what each poll needs on top: a
hard deadline for the whole exchange (httpx's timeouts are per read, so a server trickling bytes could
hold us forever), a cap on the body size, and error messages that never carry a request header.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit

import anyio
import httpx

from bhoga.quota.values import bound_cooldown, plausible_end, retry_after as retry_after_at
from bhogad.discovery.providers.base import Context, Kind, PollFailure, Refusal, Refusals, ShapeError, redact

T = TypeVar("T")

#: No usage answer is anywhere near this; a bigger one is a wrong URL or a hostile server.
MAX_BODY_BYTES: Final = 2 << 20
#: After a 429 from a usage endpoint we stay away at least this long (CodexBar's gate; the Claude
#: endpoint answers ``retry-after: 0`` to clients it dislikes, and hammering it makes that stick).
RATE_LIMIT_FLOOR: Final = timedelta(minutes=5)
_EXCERPT: Final = 160


def _where(url: str) -> str:
    parts = urlsplit(url)
    # Never the query or userinfo: either may hold a key.
    return f"{parts.hostname}{':' + str(parts.port) if parts.port else ''}"


def _excerpt(body: bytes, secrets: list[str]) -> str:
    text = " ".join(body[: _EXCERPT * 2].decode("utf-8", "replace").split())
    text = "".join(c for c in text if c.isprintable())[:_EXCERPT]
    return f": {redact(text, secrets)}" if text else ""


def _connect_reason(exc: BaseException) -> str:
    """Why a connection failed, from the OS error at the bottom of the exception chain."""
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            break
        if isinstance(seen, ConnectionRefusedError):
            return "connection refused"
        if isinstance(seen, socket.gaierror):
            return "unknown host"
        seen = seen.__cause__ or seen.__context__
    return "cannot connect"


def rate_limit_until(retry_after: str | None, now: datetime) -> datetime:
    """When a 429 lets us back: its ``retry-after`` when that is longer than the five-minute floor."""
    floor = now + RATE_LIMIT_FLOOR
    # Advice beyond any real window (``2099``) is not believed; believable advice still waits at
    # most the longest window, like every cooldown.
    until = plausible_end(retry_after_at(retry_after, now), now) if retry_after else None
    return max(bound_cooldown(until, now), floor) if until is not None else floor


async def get_json(
    http: httpx.AsyncClient,
    url: str,
    *,
    headers: Mapping[str, str],
    within_s: float,
    what: str,
    now: datetime,
    secrets: list[str],
) -> Any:
    """The decoded JSON body of a successful GET of ``url``; ``what`` names the endpoint in errors."""
    status = 0
    body = bytearray()
    retry_after: str | None = None
    with anyio.move_on_after(within_s) as deadline:
        try:
            async with http.stream("GET", url, headers=dict(headers), timeout=within_s) as response:
                status = response.status_code
                retry_after = response.headers.get("retry-after")
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_BODY_BYTES:
                        raise PollFailure(Kind.PROTOCOL, f"{what} answered with more than 2 MiB")
        except httpx.TimeoutException:
            raise PollFailure(Kind.TRANSIENT, f"{what} timed out after {within_s:g} s") from None
        except httpx.ConnectError as exc:
            raise PollFailure(
                Kind.TRANSIENT, f"cannot reach {what} at {_where(url)} ({_connect_reason(exc)})"
            ) from None
        except httpx.HTTPError as exc:
            raise PollFailure(
                Kind.TRANSIENT, f"{what} at {_where(url)}: network error ({type(exc).__name__})"
            ) from None
    if deadline.cancelled_caught:
        raise PollFailure(Kind.TRANSIENT, f"{what} timed out after {within_s:g} s")

    if status == 429:
        until = rate_limit_until(retry_after, now)
        raise PollFailure(
            Kind.RATE_LIMITED,
            f"{what} is rate limiting us (HTTP 429); not asking again before {until:%H:%M} UTC",
            status=status,
            not_before=until,
        )
    if status in (401, 403):
        raise PollFailure(Kind.PROTOCOL, f"{what} refused the credentials (HTTP {status})", status=status)
    if status >= 400 or status < 200:
        kind = Kind.TRANSIENT if status >= 500 else Kind.PROTOCOL
        raise PollFailure(
            kind, f"{what} answered HTTP {status}{_excerpt(bytes(body), secrets)}", status=status
        )
    try:
        return json.loads(bytes(body))
    except ValueError:
        raise PollFailure(
            Kind.PROTOCOL, f"{what} answered with something that is not JSON", status=status
        ) from None


async def fetch_usage(
    ctx: Context,
    url: str,
    *,
    token: str,
    headers: Mapping[str, str],
    what: str,
    parse: Callable[[Any, datetime], T],
    refusals: Refusals,
    refused: Callable[[int], Refusal | None],
) -> T:
    """The skeleton every driver polls through: fetch a usage endpoint with ``token`` and parse it.

    The token joins the poll's secrets (scrubbed from every error). A token refused before is not
    sent again until it changes. ``refused(status)`` says what a 4xx means for this driver (``None``:
    an ordinary failure); a refusal it asks to remember is kept in ``refusals``. Every failure is a
    :class:`PollFailure` whose message is safe to show: the endpoint's own (timeouts, 5xx, 429 with
    its gate), the refusal's, or "answered in an unexpected shape" for a body ``parse`` rejects.
    """
    ctx.secrets.append(token)
    remembered = refusals.get(token)
    if remembered is not None:
        raise PollFailure(remembered.kind, remembered.message, refusal=remembered)
    now = ctx.now()
    try:
        body = await get_json(
            ctx.http,
            url,
            headers=headers,
            within_s=ctx.cfg.poll_timeout_s,
            what=what,
            now=now,
            secrets=ctx.secrets,
        )
        value = parse(body, now)
    except PollFailure as exc:
        refusal = refused(exc.status) if exc.status is not None and 400 <= exc.status < 500 else None
        if refusal is None:
            raise
        if refusal.remember:
            refusals.remember(token, refusal)
        raise PollFailure(refusal.kind, refusal.message, status=exc.status, refusal=refusal) from None
    except ShapeError as exc:
        raise PollFailure(Kind.PROTOCOL, f"{what} answered in an unexpected shape ({exc})") from None
    refusals.clear()
    return value
