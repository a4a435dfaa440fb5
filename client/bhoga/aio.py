"""``AsyncRouter``: ``bhoga.Router``'s API for asyncio (and anyio-on-asyncio) harnesses.

Same methods, same signatures (``tests/unit/test_operations.py`` holds them together), as coroutines:
each is one line over ``bhoga.operations``. It uses only asyncio's own streams, so the client still
needs no extra dependency. One connection per router; calls are serialised with a lock, so concurrent
tasks may share a router.

``subscribe()`` is the one way to follow the daemon's events: an async context manager that returns
once the daemon has acknowledged the subscription, then yields ``QuotaChanged`` and ``Lagged`` events
and the replies to requests sent on the same connection, in the order the daemon produced them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
from typing import TYPE_CHECKING, Any, TypeVar, overload

import msgspec

from bhoga import codec, operations as ops, paths
from bhoga.client import decode_result, log_dropped_turn, result_of
from bhoga.errors import ClientTimeout, DaemonNotRunning, ProtocolError, RemoteError, remote_error
from bhoga.operations import Call, Operation
from bhoga.protocol import MAX_REPLY_BYTES, Event, Lagged, QuotaChanged

if TYPE_CHECKING:
    from datetime import datetime
    from pathlib import Path

    from bhoga.protocol import (
        DaemonStatus,
        Hello,
        ProviderQuota,
        Ranking,
        RouterRecommendation,
        StoredTurn,
        UsageSummary,
    )

P = TypeVar("P")
R = TypeVar("R")


async def _open(
    path: Path, connect_s: float, autostart: bool
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to the daemon's socket; with ``autostart``, start the daemon once if none answers."""
    where = os.fspath(path)
    try:
        paths.check_socket_path_length(path)
    except ValueError as exc:
        raise DaemonNotRunning(where, str(exc)) from None
    for attempt in itertools.count():
        try:
            return await asyncio.wait_for(
                asyncio.open_unix_connection(where, limit=MAX_REPLY_BYTES + 1), connect_s
            )
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            if not autostart or attempt >= 50:
                raise DaemonNotRunning(where, exc.strerror or "") from None
            if attempt == 0:
                from bhoga import autostart as starter

                await asyncio.to_thread(starter.start, path)
            await asyncio.sleep(min(0.02 * 1.5**attempt, 0.25))
        except PermissionError as exc:
            raise DaemonNotRunning(where, f"permission denied: {exc.strerror}") from None
        except TimeoutError:
            raise ClientTimeout(f"connecting to {where} timed out") from None
    raise AssertionError("unreachable")


class AsyncRouter:
    """``Router`` for asyncio: the same constructor and methods, as coroutines.

    :param socket_path: the daemon's socket; default ``$BHOGA_SOCKET`` or the platform runtime dir.
    :param timeout: seconds to wait for any one reply.
    :param autostart: start ``bhogad`` in the background when it is not running.
    :param state_path: accepted for compatibility with the library; the daemon owns state now.
    :param eager: accepted for compatibility with the library; discovery runs in the daemon.
    """

    def __init__(
        self,
        *,
        socket_path: str | os.PathLike[str] | None = None,
        timeout: float = 10.0,
        autostart: bool = False,
        state_path: Path | None = None,
        eager: bool = True,
    ) -> None:
        self.socket_path = paths.socket_path(socket_path)
        self.timeout = timeout
        self.autostart = autostart
        #: Fire-and-forget turns that could not be sent (the daemon was not running).
        self.dropped_turns = 0
        self._ids = itertools.count(1)
        self._lock = asyncio.Lock()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    # -- connection ------------------------------------------------------------------------------

    async def _connect(self) -> None:
        self._reader, self._writer = await _open(self.socket_path, self.timeout, self.autostart)

    async def close(self) -> None:
        """Close the connection. The router reconnects if it is used again."""
        async with self._lock:
            await self._disconnect()

    #: The name asyncio code often expects; the same as ``close``.
    aclose = close

    async def _disconnect(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def __aenter__(self) -> AsyncRouter:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- calls -----------------------------------------------------------------------------------

    @overload
    async def call(self, method: Operation[P, R], params: P) -> R: ...
    @overload
    async def call(self, method: str, params: Any = None, result_type: Any = Any) -> Any: ...
    async def call(
        self, method: Operation[Any, Any] | str, params: Any = None, result_type: Any = Any
    ) -> Any:
        """Send one request and return its decoded result; raise ``RemoteError`` for an error reply.

        Typed: ``await call(operations.RANK, ModelParams(model=m))`` is a ``Ranking``. By name, any
        method is allowed and the result is decoded as ``result_type``.
        """
        if isinstance(method, Operation):
            return await self._run(Call(method, msgspec.UNSET if params is None else params))
        return await self._run(ops.raw(method, params, result_type))

    async def _run(self, call: Call[R]) -> R:
        op = call.op
        async with self._lock:
            for attempt in (0, 1):
                sent = False
                try:
                    if self._writer is None:
                        await self._connect()
                    assert self._reader is not None and self._writer is not None
                    request_id = next(self._ids)
                    self._writer.write(codec.request_line(op.method, call.params, request_id))
                    await self._writer.drain()
                    sent = True
                    line = await asyncio.wait_for(self._reader.readline(), self.timeout)
                    if not line:
                        raise EOFError
                except (BrokenPipeError, ConnectionResetError, EOFError) as exc:
                    await self._disconnect()
                    if attempt == 0 and (op.idempotent or not sent):
                        continue
                    raise ProtocolError(f"connection to bhogad lost during {op.method}: {exc!r}") from None
                except TimeoutError:
                    await self._disconnect()
                    raise ClientTimeout(f"bhogad did not answer {op.method} within {self.timeout}s") from None
                except ValueError as exc:  # StreamReader: line over the limit
                    await self._disconnect()
                    raise ProtocolError(f"reply too long: {exc}") from None
                else:
                    # Outside the try: an InvalidParams reply is a ValueError too, not a long line.
                    return call.finish(await self._result(line, request_id, op.result_type))
        raise AssertionError("unreachable")

    async def _result(self, line: bytes, request_id: int, result_type: Any) -> Any:
        try:
            return result_of(line, request_id, result_type)
        except ProtocolError:
            await self._disconnect()  # the stream is out of step: never reuse it
            raise
        except RemoteError as exc:
            if exc.unsolicited:
                await self._disconnect()
            raise

    async def notify(self, method: str, params: Any) -> None:
        """Send a notification: no reply, no waiting for one."""
        line = codec.request_line(method, params, msgspec.UNSET)
        async with self._lock:
            for attempt in (0, 1):
                try:
                    if self._writer is None:
                        await self._connect()
                    assert self._writer is not None
                    self._writer.write(line)
                    await self._writer.drain()
                    return
                except (BrokenPipeError, ConnectionResetError):
                    await self._disconnect()
                    if attempt:
                        raise

    # -- the library's API: one line each over bhoga.operations, which documents them ---------------

    async def best_for(
        self, model: str, *, agent: str | None = None, session: str | None = None
    ) -> RouterRecommendation | None:
        """The provider with the most usable quota for ``model`` now, or ``None`` if none can serve it."""
        return await self._run(ops.best_for(model, agent=agent, session=session))

    async def rank(self, model: str, *, agent: str | None = None, session: str | None = None) -> Ranking:
        """Every candidate for ``model``, best first, each with the reason it was chosen or rejected."""
        return await self._run(ops.rank(model, agent=agent, session=session))

    async def record_turn(
        self,
        pid: str,
        model: str,
        input_tokens: int = 0,
        output_tokens: int = 0,
        headers: dict[str, str] | None = None,
        status_code: int = 200,
        *,
        cache_read_tokens: int = 0,
        cache_write_tokens: int = 0,
        session: str | None = None,
        agent: str | None = None,
        latency_ms: float | None = None,
        error_body: dict[str, Any] | None = None,
        at: datetime | None = None,
        cost_usd: float | None = None,
        idempotency_key: str | None = None,
        wait: bool = False,
    ) -> int | None:
        """Report one model call. Returns once sent; with ``wait=True`` returns the stored turn's id.

        Without ``wait`` a daemon that is not running does not raise into the harness's hot path:
        the turn is counted in ``dropped_turns`` and logged.
        """
        call = ops.record_turn(
            pid,
            model,
            input_tokens,
            output_tokens,
            headers,
            status_code,
            cache_read_tokens=cache_read_tokens,
            cache_write_tokens=cache_write_tokens,
            session=session,
            agent=agent,
            latency_ms=latency_ms,
            error_body=error_body,
            at=at,
            cost_usd=cost_usd,
            idempotency_key=idempotency_key,
        )
        if wait:
            return await self._run(call)
        try:
            await self.notify(call.op.method, call.params)
        except (DaemonNotRunning, ClientTimeout, OSError) as exc:
            self.dropped_turns += 1
            log_dropped_turn(pid, exc)
        return None

    async def set_quota(
        self,
        pid: str,
        pct_remaining: float,
        weekly_pct: float | None = None,
        model: str = "*",
        *,
        resets_at: datetime | None = None,
    ) -> ProviderQuota:
        """Tell the daemon a quota by hand (``InvalidParams``, a ``ValueError``, when out of range)."""
        return await self._run(ops.set_quota(pid, pct_remaining, weekly_pct, model, resets_at=resets_at))

    async def quotas(self) -> dict[str, ProviderQuota]:
        """Every provider's quota, keyed ``"<pid>:*"`` as the library keyed them."""
        return await self._run(ops.quotas())

    async def refresh(self, provider: str | None = None) -> list[ProviderQuota]:
        """Run discovery now (joining a poll already in flight) and return the fresh quotas."""
        return await self._run(ops.refresh(provider))

    async def hello(self) -> Hello:
        """The daemon's version, protocol and capabilities; refused if the protocols differ."""
        return await self._run(ops.hello())

    async def status(self) -> DaemonStatus:
        """The daemon's own status: version, pid, uptime, socket, state, connections, turns stored."""
        return await self._run(ops.status())

    async def metrics(self) -> str:
        """The daemon's metrics in Prometheus text format."""
        return await self._run(ops.metrics())

    async def reload(self) -> DaemonStatus:
        """Have the daemon re-read config.yaml; its status once the new config is in use, or the error
        (``config_error``) that kept the running one."""
        return await self._run(ops.reload())

    async def turns(
        self, after_id: int = 0, limit: int = 1000, session: str | None = None, agent: str | None = None
    ) -> list[StoredTurn]:
        """Stored turns from the ledger, oldest first, after ``after_id``."""
        return await self._run(ops.turns(after_id, limit, session, agent))

    async def usage(
        self,
        period: str | None = "today",
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        group_by: str | list[str] = "provider",
    ) -> UsageSummary:
        """Spend and tokens from the ledger (see ``Router.usage``)."""
        return await self._run(ops.usage(period, since=since, until=until, group_by=group_by))


# --------------------------------------------------------------------------------------------------
# Events


class Reply(msgspec.Struct, frozen=True):
    """The answer to a request sent with ``Subscription.send``, in stream order with the events."""

    id: int
    result: Any


Message = QuotaChanged | Lagged | Reply

_changed_decoder = msgspec.json.Decoder(QuotaChanged)
_lagged_decoder = msgspec.json.Decoder(Lagged)


class Subscription:
    """A connection subscribed to the daemon's events.

    ``async with subscribe() as events`` returns once the daemon has acknowledged the subscription,
    so nothing that happens after it is missed. Iterating yields, in the daemon's order:

    * ``QuotaChanged`` for each change of a provider's quota view;
    * ``Lagged`` when this reader fell behind and the daemon dropped events for it: whatever state
      was built from events is incomplete; ask for a fresh snapshot (``send(operations.quotas())``);
    * ``Reply`` for each request sent with ``send`` (its ``result`` decoded and finished like the
      routers'), so a snapshot can be ordered exactly against the events around it.

    Iteration ends when the daemon closes the connection.
    """

    def __init__(self, socket_path: str | os.PathLike[str] | None = None, *, timeout: float = 10.0) -> None:
        self.socket_path = paths.socket_path(socket_path)
        self.timeout = timeout
        self._ids = itertools.count(1)
        self._pending: dict[int, Call[Any]] = {}
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> Subscription:
        self._reader, self._writer = await _open(self.socket_path, self.timeout, autostart=False)
        try:
            request_id = next(self._ids)
            self._writer.write(codec.request_line(ops.SUBSCRIBE.method, msgspec.UNSET, request_id))
            await self._writer.drain()
            line = await asyncio.wait_for(self._readline(), self.timeout)
            if not line:
                raise DaemonNotRunning(os.fspath(self.socket_path), "it closed the connection")
            # Nothing is pushed before the acknowledgement: the subscription starts with it.
            result_of(line, request_id, ops.SUBSCRIBE.result_type)
        except TimeoutError:
            await self.aclose()
            raise ClientTimeout(f"bhogad did not acknowledge the subscription in {self.timeout}s") from None
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _readline(self) -> bytes:
        assert self._reader is not None
        try:
            return await self._reader.readline()
        except ValueError as exc:  # StreamReader: line over the limit
            raise ProtocolError(f"message too long: {exc}") from None

    async def send(self, call: Call[Any]) -> int:
        """Send a request on this connection; its ``Reply`` arrives among the events. Returns its id."""
        assert self._writer is not None, "use `async with subscribe(...)`"
        request_id = next(self._ids)
        self._pending[request_id] = call
        self._writer.write(codec.request_line(call.op.method, call.params, request_id))
        await self._writer.drain()
        return request_id

    async def next(self, idle_s: float | None = None) -> Message | None:
        """The next message, ``None`` when the daemon closed the connection.

        :raises TimeoutError: when nothing arrived within ``idle_s`` seconds (the connection stays).
        """
        while True:
            line = await asyncio.wait_for(self._readline(), idle_s)
            if not line:
                return None
            message = self._interpret(line)
            if message is not None:
                return message

    def _interpret(self, line: bytes) -> Message | None:
        try:
            reply = codec.decode_response(line)
        except msgspec.DecodeError as exc:
            raise ProtocolError(f"not a JSON-RPC message: {exc}") from None
        if reply.method is not msgspec.UNSET:
            if reply.params is msgspec.UNSET:
                return None
            if reply.method == Event.QUOTA_CHANGED:
                return _changed_decoder.decode(reply.params)
            if reply.method == Event.LAGGED:
                return _lagged_decoder.decode(reply.params)
            return None  # an event this client does not know yet
        if reply.error is not msgspec.UNSET:
            err = reply.error
            error = remote_error(err.code, err.message, err.data if err.data is not msgspec.UNSET else None)
            error.unsolicited = reply.id is None
            if isinstance(reply.id, int):
                self._pending.pop(reply.id, None)
            raise error
        call = self._pending.pop(reply.id, None) if isinstance(reply.id, int) else None
        if call is None or not isinstance(reply.id, int) or reply.result is msgspec.UNSET:
            raise ProtocolError(f"reply to a request never sent: id {reply.id!r}")
        return Reply(reply.id, call.finish(decode_result(reply.result, call.op.result_type)))

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Message:
        message = await self.next()
        if message is None:
            raise StopAsyncIteration
        return message


def subscribe(socket_path: str | os.PathLike[str] | None = None, *, timeout: float = 10.0) -> Subscription:
    """Follow the daemon's events: ``async with subscribe() as events: async for event in events``."""
    return Subscription(socket_path, timeout=timeout)
