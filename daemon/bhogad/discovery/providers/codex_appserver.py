"""A minimal client for ``codex app-server``: JSON-RPC 2.0 over stdio, one JSON object per line,
without the ``"jsonrpc"`` member (wire spec §3.4).

We send ``initialize``, the ``initialized`` notification and ``account/rateLimits/read``, nothing
else: in particular not ``account/read``, which fails offline while the rate limits still answer
(codex-cli 0.169). The server interleaves notifications with replies, so replies are matched by id.
``account/rateLimits/read`` calls the usage endpoint upstream and can take several seconds, hence
the generous timeout; a timeout is reported as a timeout, and the child never outlives the call.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteReceiveStream

from bhogad import __version__
from bhogad.discovery.providers import proc
from bhogad.discovery.providers.base import Kind, PollFailure

#: The read-only sandbox and no approvals: the server must never be able to act for us. (``-a
#: untrusted`` was removed in 0.149; a bad flag makes the server exit at once.)
LAUNCH_ARGS: Final = ("-s", "read-only", "-a", "never", "app-server")
MAX_LINE: Final = 4 << 20
#: Lines that are not JSON (a banner, a warning on stdout) are skipped, but not forever.
MAX_JUNK_LINES: Final = 200
_OVERLOADED: Final = -32001


class _Session:
    def __init__(self, process: anyio.abc.Process) -> None:
        assert process.stdin is not None and process.stdout is not None
        self.process = process
        self.stdin = process.stdin
        self.stdout = BufferedByteReceiveStream(process.stdout)
        self.next_id = 1

    async def send(self, message: Mapping[str, Any]) -> None:
        try:
            await self.stdin.send(json.dumps(message, separators=(",", ":")).encode() + b"\n")
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            raise self._closed() from None

    def _closed(self) -> PollFailure:
        code = self.process.returncode
        how = f" (exit code {code})" if code is not None else ""
        return PollFailure(Kind.TRANSIENT, f"codex app-server closed its output before answering{how}")

    async def request(self, method: str, params: Mapping[str, Any]) -> Any:
        request_id = self.next_id
        self.next_id += 1
        await self.send({"method": method, "id": request_id, "params": dict(params)})
        junk = 0
        while True:
            try:
                line = await self.stdout.receive_until(b"\n", MAX_LINE)
            except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError):
                with anyio.move_on_after(1.0):
                    await self.process.wait()
                raise self._closed() from None
            except anyio.DelimiterNotFound:
                raise PollFailure(Kind.PROTOCOL, "codex app-server sent a line longer than 4 MiB") from None
            try:
                message = json.loads(line)
            except ValueError:
                junk += 1
                if junk > MAX_JUNK_LINES:
                    raise PollFailure(Kind.PROTOCOL, "codex app-server is not speaking JSON-RPC") from None
                continue
            if not isinstance(message, Mapping) or message.get("id") != request_id:
                continue  # a notification, or a reply to someone else
            error = message.get("error")
            if isinstance(error, Mapping):
                code = error.get("code")
                text = str(error.get("message", ""))[:200]
                kind = Kind.TRANSIENT if code == _OVERLOADED else Kind.PROTOCOL
                raise PollFailure(kind, f"codex app-server: {method} failed ({code}: {text})")
            if "result" not in message:
                raise PollFailure(Kind.PROTOCOL, f"codex app-server: {method} reply has no result")
            return message["result"]


async def read_rate_limits(codex: str, env: Mapping[str, str], within_s: float) -> Any:
    """The result of ``account/rateLimits/read``, from a fresh ``codex app-server``."""
    process = await proc.open_process([codex, *LAUNCH_ARGS], env)
    result: Any = None
    try:
        with anyio.move_on_after(within_s) as deadline:
            session = _Session(process)
            await session.request(
                "initialize",
                {"clientInfo": {"name": "bhoga", "title": "bhoga quota daemon", "version": __version__}},
            )
            await session.send({"method": "initialized", "params": {}})
            result = await session.request("account/rateLimits/read", {})
    finally:
        await proc.stop(process)
    if deadline.cancelled_caught:
        raise PollFailure(Kind.TRANSIENT, f"codex app-server did not answer within {within_s:g} s (timeout)")
    return result
