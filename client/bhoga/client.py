"""The blocking client: ``bhoga.Router``, the library's API over the daemon's socket.

One connection per Router, reused for every call and guarded by a lock (thread-safe). After ``fork``
the child opens its own connection. When the daemon restarts, the next call reconnects; calls that are
safe to repeat are retried once on the new connection.
"""

from __future__ import annotations

# The stdlib's socket module (with selectors) is imported on the first connection and threading's
# lock comes from _thread directly: a process that imports bhoga but never calls pays for neither.
import _thread
import contextlib
import itertools
import os
import time
import weakref
from typing import TYPE_CHECKING, Any, TypeVar, overload

import msgspec

from bhoga import codec, operations as ops, paths
from bhoga.errors import ClientTimeout, DaemonNotRunning, ProtocolError, RemoteError, remote_error
from bhoga.operations import Call, Operation
from bhoga.protocol import MAX_REPLY_BYTES

if TYPE_CHECKING:
    import socket
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


def log_dropped_turn(pid: str, exc: BaseException) -> None:
    """A fire-and-forget turn that could not be sent: a warning, never an exception in the hot path.

    ``logging`` is imported here, on this rare path, so that ``import bhoga`` need not load it.
    """
    import logging

    logging.getLogger("bhoga").warning("bhoga: turn for %s not recorded: %s", pid, exc)


_decoders: dict[Any, msgspec.json.Decoder[Any]] = {}


def decode_result(raw: msgspec.Raw | bytes, result_type: Any) -> Any:
    decoder = _decoders.get(result_type)
    if decoder is None:
        decoder = _decoders[result_type] = msgspec.json.Decoder(result_type)
    return decoder.decode(raw)


def result_of(line: bytes, request_id: int, result_type: Any) -> Any:
    """Interpret one reply line, sans I/O: the decoded result, or an exception.

    ``ProtocolError`` means the stream can no longer be trusted and the caller must drop the
    connection; a ``RemoteError`` marked ``unsolicited`` also ends it (the daemon closes after it).
    """
    try:
        reply = codec.decode_response(line)
    except msgspec.DecodeError as exc:
        raise ProtocolError(f"not a JSON-RPC reply: {exc}") from None
    if reply.error is not msgspec.UNSET:
        err = reply.error
        error = remote_error(err.code, err.message, err.data if err.data is not msgspec.UNSET else None)
        error.unsolicited = reply.id is None
        raise error
    if reply.id != request_id:
        raise ProtocolError(f"reply id {reply.id!r} does not match request id {request_id}")
    if reply.result is msgspec.UNSET:
        raise ProtocolError("reply has neither result nor error")
    return decode_result(reply.result, result_type)


_live: weakref.WeakSet[Router] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # A lock held by another thread at fork time would stay held forever in the child.
    for router in list(_live):
        router._reset_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


class Router:
    """Ask the daemon which provider to use, and tell it what each call spent.

    Each public method is one line over ``bhoga.operations``, which defines what it sends and
    returns; ``AsyncRouter`` is the same API over asyncio.

    :param socket_path: the daemon's socket; default ``$BHOGA_SOCKET`` or the platform runtime dir.
    :param timeout: seconds to wait for any one reply.
    :param autostart: start ``bhogad`` in the background when it is not running. If it cannot start,
        the error is the daemon's own (its output is kept in ``<state dir>/bhogad.log``).
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
        self._lock = _thread.allocate_lock()
        self._ids = itertools.count(1)
        self._sock: socket.socket | None = None
        self._file: Any = None
        self._pid = os.getpid()
        _live.add(self)

    # -- connection ------------------------------------------------------------------------------

    def _reset_after_fork(self) -> None:
        self._lock = _thread.allocate_lock()
        if self._sock is not None:
            # Closing our copy of the descriptor leaves the parent's connection untouched.
            self._disconnect()
        self._pid = os.getpid()

    def _connect(self) -> None:
        if os.getpid() != self._pid:
            self._reset_after_fork()
        path = os.fspath(self.socket_path)
        try:
            paths.check_socket_path_length(self.socket_path)
        except ValueError as exc:
            raise DaemonNotRunning(path, str(exc)) from None
        import socket

        for attempt in itertools.count():
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            try:
                sock.connect(path)
            except (FileNotFoundError, ConnectionRefusedError) as exc:
                sock.close()
                if not self.autostart or attempt >= 50:
                    raise DaemonNotRunning(path, exc.strerror or "") from None
                if attempt == 0:
                    from bhoga import autostart

                    autostart.start(self.socket_path)
                time.sleep(min(0.02 * 1.5**attempt, 0.25))
                continue
            except PermissionError as exc:
                sock.close()
                raise DaemonNotRunning(path, f"permission denied: {exc.strerror}") from None
            self._sock = sock
            self._file = sock.makefile("rb")
            return

    def _disconnect(self) -> None:
        for closable in (self._file, self._sock):
            if closable is not None:
                with contextlib.suppress(OSError):
                    closable.close()
        self._sock = self._file = None

    def close(self) -> None:
        """Close the connection. The Router reconnects if it is used again."""
        with self._lock:
            self._disconnect()

    def __del__(self) -> None:
        # Without this a forgotten Router leaks its socket until the process ends.
        self._disconnect()

    def __enter__(self) -> Router:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- calls -----------------------------------------------------------------------------------

    @overload
    def call(self, method: Operation[P, R], params: P) -> R: ...
    @overload
    def call(self, method: str, params: Any = None, result_type: Any = Any) -> Any: ...
    def call(self, method: Operation[Any, Any] | str, params: Any = None, result_type: Any = Any) -> Any:
        """Send one request and return its decoded result; raise ``RemoteError`` for an error reply.

        Typed: ``call(operations.RANK, ModelParams(model=m))`` is a ``Ranking``. By name, any method
        is allowed (tools ahead of this client) and the result is decoded as ``result_type``.
        """
        if isinstance(method, Operation):
            return self._run(Call(method, msgspec.UNSET if params is None else params))
        return self._run(ops.raw(method, params, result_type))

    def _run(self, call: Call[R]) -> R:
        op = call.op
        with self._lock:
            for attempt in (0, 1):
                sent = False
                try:
                    if self._sock is None or os.getpid() != self._pid:
                        self._connect()
                    request_id = next(self._ids)
                    line = codec.request_line(op.method, call.params, request_id)
                    assert self._sock is not None
                    self._sock.sendall(line)
                    sent = True
                    return call.finish(self._read_reply(request_id, op.result_type))
                except (BrokenPipeError, ConnectionResetError, EOFError) as exc:
                    self._disconnect()
                    # Repeat only what is safe to repeat, or what never reached the daemon.
                    if attempt == 0 and (op.idempotent or not sent):
                        continue
                    raise ProtocolError(f"connection to bhogad lost during {op.method}: {exc!r}") from None
                except TimeoutError:
                    self._disconnect()
                    raise ClientTimeout(f"bhogad did not answer {op.method} within {self.timeout}s") from None
        raise AssertionError("unreachable")

    def _read_reply(self, request_id: int, result_type: Any) -> Any:
        line = self._file.readline(MAX_REPLY_BYTES + 1)
        if not line:
            raise EOFError("daemon closed the connection")
        if not line.endswith(b"\n"):
            self._disconnect()
            raise ProtocolError("reply was cut off or longer than the line limit")
        try:
            return result_of(line, request_id, result_type)
        except ProtocolError:
            self._disconnect()
            raise
        except RemoteError as exc:
            if exc.unsolicited:
                self._disconnect()
            raise

    def notify(self, method: str, params: Any) -> None:
        """Send a notification: no reply, no waiting."""
        line = codec.request_line(method, params, msgspec.UNSET)
        with self._lock:
            for attempt in (0, 1):
                try:
                    if self._sock is None or os.getpid() != self._pid:
                        self._connect()
                    assert self._sock is not None
                    self._sock.sendall(line)
                    return
                except (BrokenPipeError, ConnectionResetError):
                    self._disconnect()
                    if attempt:
                        raise

    # -- the library's API: one line each over bhoga.operations, which documents them ---------------

    def best_for(
        self, model: str, *, agent: str | None = None, session: str | None = None
    ) -> RouterRecommendation | None:
        """The provider with the most usable quota for ``model`` now, or ``None`` if none can serve it.

        With ``agent``, an agent over its monthly budget is not sent to paid (API-key) providers.
        With ``session``, the session keeps its provider unless a clear margin or eligibility moves it.
        """
        return self._run(ops.best_for(model, agent=agent, session=session))

    def rank(self, model: str, *, agent: str | None = None, session: str | None = None) -> Ranking:
        """Every candidate for ``model``, best first, each with the reason it was chosen or rejected."""
        return self._run(ops.rank(model, agent=agent, session=session))

    def record_turn(
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
        """Report one model call. Returns at once; with ``wait=True`` returns the stored turn's id.

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
            return self._run(call)
        try:
            self.notify(call.op.method, call.params)
        except (DaemonNotRunning, OSError) as exc:
            self.dropped_turns += 1
            log_dropped_turn(pid, exc)
        return None

    def set_quota(
        self,
        pid: str,
        pct_remaining: float,
        weekly_pct: float | None = None,
        model: str = "*",
        *,
        resets_at: datetime | None = None,
    ) -> ProviderQuota:
        """Tell the daemon a quota by hand; it holds until a newer reading of the same window arrives.

        :raises InvalidParams: (a ``ValueError``) for a percentage outside 0–100 or an unknown provider.
        """
        return self._run(ops.set_quota(pid, pct_remaining, weekly_pct, model, resets_at=resets_at))

    def quotas(self) -> dict[str, ProviderQuota]:
        """Every provider's quota, keyed ``"<pid>:*"`` as the library keyed them."""
        return self._run(ops.quotas())

    def refresh(self, provider: str | None = None) -> list[ProviderQuota]:
        """Run discovery now (joining a poll already in flight) and return the fresh quotas."""
        return self._run(ops.refresh(provider))

    def hello(self) -> Hello:
        """The daemon's version, protocol and capabilities; refused if the protocols differ."""
        return self._run(ops.hello())

    def status(self) -> DaemonStatus:
        """The daemon's own status: version, pid, uptime, socket, state, connections, turns stored."""
        return self._run(ops.status())

    def metrics(self) -> str:
        """The daemon's metrics in Prometheus text format."""
        return self._run(ops.metrics())

    def reload(self) -> DaemonStatus:
        """Have the daemon re-read config.yaml; its status once the new config is in use, or the error
        (``config_error``) that kept the running one."""
        return self._run(ops.reload())

    def turns(
        self, after_id: int = 0, limit: int = 1000, session: str | None = None, agent: str | None = None
    ) -> list[StoredTurn]:
        """Stored turns from the ledger, oldest first, after ``after_id``."""
        return self._run(ops.turns(after_id, limit, session, agent))

    def usage(
        self,
        period: str | None = "today",
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        group_by: str | list[str] = "provider",
    ) -> UsageSummary:
        """Spend and tokens from the ledger: ``period`` is ``today``, ``week``, ``month`` (calendar,
        UTC), ``all`` or rolling ``24h``/``7d``; ``since``/``until`` override it. ``group_by`` is any of
        ``provider``, ``model``, ``agent``, ``session``, ``day``."""
        return self._run(ops.usage(period, since=since, until=until, group_by=group_by))


def check_quota(pid: str, *, socket_path: str | os.PathLike[str] | None = None) -> ProviderQuota | None:
    """Run one provider's discovery now and return its quota (``None`` if it has none to run)."""
    with Router(socket_path=socket_path) as router:
        found = router.refresh(pid)
    return found[0] if found else None
