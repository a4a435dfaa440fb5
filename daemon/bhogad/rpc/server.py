"""The socket side: binding, accepting, per-connection limits, and orderly stopping.

Connections are asyncio Protocols rather than stream tasks. Most methods answer from memory, so a
line is decoded, answered and written inside ``data_received`` with no task switch at all; only a
method that must wait (for the store, for a poll) hands its reply to a task, and the connection holds
later lines until it is done, so replies always come back in request order.

A slow or hostile client can only hurt itself: lines have a size cap, a started line must finish in
``line_timeout_s`` counted from its first byte (trickling more bytes never extends it), an idle
connection is closed after ``idle_timeout_s``, a peer that stops reading is dropped after
``send_timeout_s``, and the number of connections is capped. At the cap a newcomer is not turned away
while some connection is merely waiting: the one that has been quiet longest (idle, or dripping one
unfinished line) is closed to make room, so a client that means business is always served.
"""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import sys
from collections import deque
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import structlog

from bhoga.codec import LineReader, LineTooLong, notification_line
from bhoga.protocol import ErrorCode, Event, Lagged
from bhogad.config import ServerConfig
from bhogad.rpc.clients import Clients
from bhogad.rpc.dispatch import Dispatcher, error
from bhogad.rpc.peercred import peer_ids

log = structlog.get_logger("bhogad.rpc.server")

#: Lines a pipelining client may have queued before we stop reading from it.
MAX_QUEUED_LINES = 256
#: Unsent bytes to a subscriber beyond which events are dropped for it (it is told it lagged).
MAX_EVENT_BACKLOG = 1 << 20


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


class Connection(asyncio.Protocol):
    def __init__(self, server: Server) -> None:
        self.server = server
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.reader = LineReader(server.limits.max_line_bytes)
        self.queued: deque[bytes] = deque()
        self.busy = False  # a reply is being awaited; later lines wait behind it
        self.eof = False
        self.peer_pid: int | None = None
        self.subscribed = False
        self.lagged = False
        self._deadline = 0.0
        #: When the unfinished line (if any) must be complete; fixed when its first byte arrives.
        self._line_deadline = 0.0
        #: When this connection last finished a line (or connected): who is evicted first at the cap.
        self.last_active = self.loop.time()
        self._timer: asyncio.TimerHandle | None = None
        self._write_stall: asyncio.TimerHandle | None = None
        self._tail_error: bytes | None = None  # said after the queued replies, then we close

    # -- asyncio callbacks -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        server = self.server
        refusal = None
        try:
            self.peer_pid, uid = peer_ids(transport.get_extra_info("socket"))
        except OSError:
            uid = -1
        if uid != server.uid:
            log.warning("refused a peer of another user", peer_uid=uid, peer_pid=self.peer_pid)
            refusal = error(None, ErrorCode.NOT_AUTHORISED, "not authorised: wrong user", "not_authorised")
        elif server.stopping:
            refusal = error(None, ErrorCode.SHUTTING_DOWN, "bhogad is shutting down", "shutting_down")
        elif len(server.connections) >= server.limits.max_connections and not server.make_room():
            log.warning("connection refused: at the cap, all busy", cap=server.limits.max_connections)
            refusal = error(
                None, ErrorCode.OVERLOADED, "too many connections; try again shortly", "overloaded"
            )
        if refusal is not None:
            transport.write(refusal)
            transport.close()
            return
        server.connections.add(self)
        self._arm(self.loop.time() + server.limits.idle_timeout_s)

    def data_received(self, data: bytes) -> None:
        was_partial = self.reader.partial
        try:
            lines = self.reader.feed(data)
        except LineTooLong:
            limit = self.server.limits.max_line_bytes
            self._finish_with(
                error(
                    None,
                    ErrorCode.REQUEST_TOO_LARGE,
                    f"request line longer than {limit} bytes; closing",
                    "too_large",
                )
            )
            return
        limits = self.server.limits
        now = self.loop.time()
        if lines:
            self.last_active = now
        if not self.reader.partial:
            self._arm(now + limits.idle_timeout_s)
        else:
            if lines or not was_partial:
                # A new line began in this chunk: its deadline runs from now, whatever comes later.
                self._line_deadline = now + limits.line_timeout_s
            self._arm(self._line_deadline)
        if lines:
            self.queued.extend(lines)
            if len(self.queued) > MAX_QUEUED_LINES and self.transport is not None:
                self.transport.pause_reading()  # a pipelining client waits for us, not the reverse
            self._pump()

    def eof_received(self) -> bool:
        # A half-closed peer (socat after its input ends) still reads: answer everything first.
        self.eof = True
        if self.reader.partial:
            self._tail_error = error(
                None, ErrorCode.PARSE_ERROR, "stream ended in the middle of a line", "partial_line"
            )
        self._pump()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        if self.subscribed:
            self.server.clients.unsubscribe(self)
        for handle in (self._timer, self._write_stall):
            if handle is not None:
                handle.cancel()
        self.queued.clear()
        self.server.connection_closed()

    def pause_writing(self) -> None:
        # The peer is not reading. Stop taking its requests, and drop it if it stays stuck.
        if self.transport is not None:
            self.transport.pause_reading()
        self._write_stall = self.loop.call_later(
            self.server.limits.send_timeout_s, self._abort, "peer stopped reading"
        )

    def resume_writing(self) -> None:
        if self._write_stall is not None:
            self._write_stall.cancel()
            self._write_stall = None
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    # -- answering -------------------------------------------------------------------------------

    def _pump(self) -> None:
        out: list[bytes] = []
        dispatcher = self.server.dispatcher
        while self.queued and not self.busy:
            line = self.queued.popleft()
            if not line.strip():
                continue  # blank lines (socat, hand typing) are not requests
            outcome = dispatcher.handle_line(line, self)
            if outcome is None:
                continue
            if type(outcome) is bytes:
                out.append(outcome)
                continue
            self.busy = True
            self.server.spawn(self._complete(outcome))  # type: ignore[arg-type]
            break
        if out:
            self._write(b"".join(out))
        if self.busy or self.queued or self.transport is None:
            return
        if self.eof or self.server.stopping:
            if self._tail_error is not None:
                self._write(self._tail_error)
            self.transport.close()
        elif len(self.queued) <= MAX_QUEUED_LINES and not self.transport.is_closing():
            self.transport.resume_reading()

    async def _complete(self, outcome: Awaitable[bytes | None]) -> None:
        try:
            reply = await outcome
        finally:
            self.busy = False
        if reply is not None:
            self._write(reply)
        self._pump()

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _finish_with(self, message: bytes) -> None:
        """Say one last thing and close; queued lines are dropped (the stream is out of sync)."""
        self.queued.clear()
        self._write(message)
        if self.transport is not None:
            self.transport.close()

    def _abort(self, why: str) -> None:
        log.warning("dropping connection", reason=why, peer_pid=self.peer_pid)
        if self.transport is not None:
            self.transport.abort()

    def evictable(self) -> bool:
        """Nothing of ours is in flight: closing it loses no answer (an unfinished line is told)."""
        return (
            not self.busy
            and not self.queued
            and self.transport is not None
            and not self.transport.is_closing()
        )

    def evict(self) -> None:
        """Close to make room for a new connection. A client between requests just reconnects on its
        next call (as after the idle timeout); one part-way through a line is told why."""
        log.warning(
            "closed a waiting connection to make room at the cap",
            peer_pid=self.peer_pid,
            partial_line=self.reader.partial,
            quiet_s=round(self.loop.time() - self.last_active, 3),
        )
        self.server.connections.discard(self)
        if self.reader.partial:
            self._finish_with(
                error(
                    None,
                    ErrorCode.INVALID_REQUEST,
                    "closed to make room for another client: this line was not completed",
                    "evicted",
                )
            )
        elif self.transport is not None:
            self.transport.close()

    def stop_reading(self) -> None:
        """Shutdown: take no new lines, answer the ones already read, then close."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()
            self._pump()

    # -- timeouts: one timer per connection, re-armed lazily --------------------------------------

    def _arm(self, deadline: float) -> None:
        """Expire at ``deadline`` (loop time); a later one just moves the mark the timer checks."""
        self._deadline = deadline
        if self._timer is None or self._timer.when() > self._deadline:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self.loop.call_at(self._deadline, self._expire)

    def _expire(self) -> None:
        self._timer = None
        if self.transport is None or self.transport.is_closing():
            return
        if self.loop.time() < self._deadline or self.busy or self.queued:
            # Data arrived since (or we are still answering): wait for the new deadline.
            self._timer = self.loop.call_at(max(self._deadline, self.loop.time() + 0.05), self._expire)
            return
        if self.reader.partial:
            self._finish_with(
                error(None, ErrorCode.INVALID_REQUEST, "line not completed in time", "line_timeout")
            )
        else:
            self.transport.close()  # idle: harnesses reconnect on their next call

    # -- events ----------------------------------------------------------------------------------

    def offer(self, line: bytes) -> None:
        """A ``quota.changed`` event for this subscriber; dropped (and flagged) if it is far behind."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if transport.get_write_buffer_size() > MAX_EVENT_BACKLOG:
            self.lagged = True
            return
        if self.lagged:
            # Events were dropped for this slow reader; tell it to re-read the full state.
            self.lagged = False
            transport.write(notification_line(Event.LAGGED, Lagged(hint="call quota.list")))
        transport.write(line)


class Server:
    def __init__(self, clients: Clients, dispatcher: Dispatcher, limits: ServerConfig) -> None:
        self.clients = clients
        self.dispatcher = dispatcher
        self.limits = limits
        #: The same set as ``clients.connections``: the method table counts what the server holds.
        self.connections: set[Connection] = clients.connections
        self.stopping = False
        self.uid = os.getuid()
        self._listener: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._drained = asyncio.Event()

    @property
    def connection_count(self) -> int:
        return len(self.connections)

    async def start(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        # Python 3.13 would otherwise unlink the path on close; that file may be systemd's, not ours.
        extra: dict[str, Any] = {"cleanup_socket": False} if sys.version_info >= (3, 13) else {}
        self._listener = await loop.create_unix_server(lambda: Connection(self), sock=sock, **extra)

    def spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)  # keep a reference: the loop holds tasks only weakly
        task.add_done_callback(self._tasks.discard)

    def make_room(self) -> bool:
        """Close the connection that has been quiet longest, so a new one fits under the cap.

        Subscribers go last (they wait by design); connections with a request in flight never go.
        Returns False when every connection is busy.
        """
        candidates = [c for c in self.connections if c.evictable()]
        if not candidates:
            return False
        min(candidates, key=lambda c: (c.subscribed, c.last_active)).evict()
        return True

    # -- stopping --------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop accepting and reading; every line already read is still answered."""
        self.stopping = True
        if self._listener is not None:
            self._listener.close()
        for conn in list(self.connections):
            conn.stop_reading()
        self.connection_closed()

    def connection_closed(self) -> None:
        if self.stopping and not self.connections:
            self._drained.set()

    async def closed(self) -> None:
        """Return once the server stopped and its last connection closed."""
        await self._drained.wait()

    async def drained(self, grace: float) -> None:
        """Wait until every connection has closed, forcing the rest closed after ``grace`` seconds."""
        try:
            await asyncio.wait_for(self._drained.wait(), grace)
        except TimeoutError:
            self.abort_all()

    def abort_all(self) -> None:
        log.warning("closing remaining connections", count=len(self.connections))
        for conn in list(self.connections):
            conn._abort("daemon stopping")
        self.connections.clear()
        self._drained.set()
