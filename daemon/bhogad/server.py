"""The socket side: binding, accepting, per-connection limits, and orderly stopping.

Each connection is read line by line and answered in order. A slow or hostile client can only hurt
itself: lines have a size cap, a started line must finish in ``line_timeout_s``, an idle connection is
closed after ``idle_timeout_s``, every send has a deadline, and the number of connections is capped.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import structlog
from bhoga.codec import LineReader, LineTooLong, notification_line
from bhoga.protocol import ErrorCode

from bhogad.config import ServerConfig
from bhogad.core import Daemon, Subscriber
from bhogad.platform.peercred import peer_ids
from bhogad.rpc import Dispatcher, error

log = structlog.get_logger("bhogad.server")

# accept() fails with these when the process or system is out of descriptors or memory. Trio's
# serve_listeners retries them after a pause instead of crashing the server; so do we.
_ACCEPT_CAPACITY_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}


def bind_unix(path: Path) -> tuple[socket.socket, tuple[int, int]]:
    """Bind a listening socket at ``path``, born 0600. Call only while holding the instance lock.

    Holding the lock makes any file already at ``path`` stale by definition; it is removed only if it
    is a socket. Returns the socket and its ``(st_dev, st_ino)``, so we later delete only our own file.
    """
    try:
        st = path.lstat()
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(st.st_mode):
            raise FileExistsError(f"{path} exists and is not a socket; refusing to replace it")
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # umask is process-wide: this runs during single-threaded startup, before any worker thread.
    old = os.umask(0o177)
    try:
        sock.bind(os.fspath(path))
    finally:
        os.umask(old)
    sock.listen(1024)
    st = path.lstat()
    return sock, (st.st_dev, st.st_ino)


class Connection:
    __slots__ = ("_send_lock", "peer_pid", "receive_scope", "send_timeout", "stream", "subscriber", "tasks")

    def __init__(self, stream: anyio.abc.SocketStream, peer_pid: int | None, send_timeout: float) -> None:
        self.stream = stream
        self.peer_pid = peer_pid
        self.send_timeout = send_timeout
        self._send_lock = anyio.Lock()
        self.subscriber: Subscriber | None = None
        self.receive_scope: anyio.CancelScope | None = None
        #: The connection's own task group (event forwarding); it ends with the connection.
        self.tasks: anyio.abc.TaskGroup | None = None

    async def send(self, data: bytes) -> None:
        # Replies and pushed events share the stream; the lock keeps their lines whole.
        async with self._send_lock:
            with anyio.fail_after(self.send_timeout):
                await self.stream.send(data)


class Server:
    def __init__(
        self,
        daemon: Daemon,
        dispatcher: Dispatcher,
        limits: ServerConfig,
        socket_path: Path,
        config_path: Path | None,
    ) -> None:
        self.daemon = daemon
        self.dispatcher = dispatcher
        self.limits = limits
        self.socket_path = socket_path
        self.config_path = config_path
        self.connections: set[Connection] = set()
        self.stopping = False
        self._accept_scope = anyio.CancelScope()
        self._uid = os.getuid()

    @property
    def connection_count(self) -> int:
        return len(self.connections)

    # -- accepting -------------------------------------------------------------------------------

    async def serve(self, listener: anyio.abc.SocketListener, conn_group: anyio.abc.TaskGroup) -> None:
        """Accept until ``stop()``; connections run in ``conn_group`` so they can outlive accepting."""
        with self._accept_scope:
            while True:
                try:
                    stream = await listener.accept()
                except OSError as exc:
                    if exc.errno in _ACCEPT_CAPACITY_ERRNOS:
                        log.warning("accept failed, out of resources; pausing", errno=exc.errno)
                        await anyio.sleep(0.1)
                        continue
                    raise
                conn_group.start_soon(self._guarded, stream)

    def stop(self) -> None:
        """Stop accepting and stop reading; lines already read are still answered."""
        self.stopping = True
        self._accept_scope.cancel()
        for conn in self.connections:
            if conn.receive_scope is not None:
                conn.receive_scope.cancel()

    async def _guarded(self, stream: anyio.abc.SocketStream) -> None:
        # One connection's failure must never reach the task group and take the server down.
        try:
            async with stream:
                await self._admit(stream)
        except Exception as exc:
            log.warning("connection ended with an error", error=repr(exc))

    async def _admit(self, stream: anyio.abc.SocketStream) -> None:
        sock = stream.extra(anyio.abc.SocketAttribute.raw_socket)
        pid, uid = peer_ids(sock)
        conn = Connection(stream, pid, self.limits.send_timeout_s)
        if uid != self._uid:
            log.warning("refused a peer of another user", peer_uid=uid, peer_pid=pid)
            await conn.send(
                error(None, ErrorCode.NOT_AUTHORISED, "not authorised: wrong user", "not_authorised")
            )
            return
        if self.stopping:
            await conn.send(error(None, ErrorCode.SHUTTING_DOWN, "bhogad is shutting down", "shutting_down"))
            return
        if len(self.connections) >= self.limits.max_connections:
            log.warning("connection refused: at the cap", cap=self.limits.max_connections)
            await conn.send(
                error(None, ErrorCode.OVERLOADED, "too many connections; try again shortly", "overloaded")
            )
            return
        self.connections.add(conn)
        try:
            with structlog.contextvars.bound_contextvars(peer_pid=pid):
                await self._converse(conn)
        finally:
            self.connections.discard(conn)
            if conn.subscriber is not None:
                self.daemon.subscribers.discard(conn.subscriber)
                conn.subscriber.send.close()

    # -- one connection --------------------------------------------------------------------------

    async def _converse(self, conn: Connection) -> None:
        limits = self.limits
        reader = LineReader(limits.max_line_bytes)
        async with anyio.create_task_group() as tg:
            conn.tasks = tg
            while not self.stopping:
                timeout = limits.line_timeout_s if reader.partial else limits.idle_timeout_s
                data: bytes | None = None
                with anyio.CancelScope() as scope:
                    conn.receive_scope = scope
                    scope.deadline = anyio.current_time() + timeout
                    try:
                        data = await conn.stream.receive()
                    except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionError):
                        data = b""
                conn.receive_scope = None
                if data is None:  # timed out, or stop() cancelled the read
                    if reader.partial and not self.stopping:
                        await conn.send(
                            error(
                                None, ErrorCode.INVALID_REQUEST, "line not completed in time", "line_timeout"
                            )
                        )
                    break
                if not data:
                    if reader.partial:
                        # A half-closed peer can still read: say what happened to its last bytes.
                        await conn.send(
                            error(
                                None,
                                ErrorCode.PARSE_ERROR,
                                "stream ended in the middle of a line",
                                "partial_line",
                            )
                        )
                    break
                try:
                    lines = reader.feed(data)
                except LineTooLong:
                    await conn.send(
                        error(
                            None,
                            ErrorCode.REQUEST_TOO_LARGE,
                            f"request line longer than {limits.max_line_bytes} bytes; closing",
                            "too_large",
                        )
                    )
                    break
                if lines:
                    await self._answer(conn, lines)
            tg.cancel_scope.cancel()

    async def _answer(self, conn: Connection, lines: list[bytes]) -> None:
        out = bytearray()
        for line in lines:
            if not line.strip():
                continue  # blank lines (socat, hand typing) are not requests
            reply = await self.dispatcher.handle_line(line, conn)
            if reply is not None:
                out += reply
        if out:
            await conn.send(bytes(out))

    # -- events ----------------------------------------------------------------------------------

    def subscribe(self, conn: Any) -> None:
        assert isinstance(conn, Connection) and conn.tasks is not None
        if conn.subscriber is not None:
            return
        subscriber = Subscriber()
        conn.subscriber = subscriber
        self.daemon.subscribers.add(subscriber)
        conn.tasks.start_soon(self._forward_events, conn, subscriber)

    async def _forward_events(self, conn: Connection, subscriber: Subscriber) -> None:
        try:
            async with subscriber.receive:
                async for line in subscriber.receive:
                    await conn.send(line)
                    if subscriber.lagged:
                        # Events were dropped for this slow reader; tell it to re-read the full state.
                        subscriber.lagged = False
                        await conn.send(notification_line("events.lagged", {"hint": "call quota.list"}))
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, TimeoutError, OSError):
            pass
