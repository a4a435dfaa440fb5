"""A real HTTP/1.1 server on 127.0.0.1 serving provider fixture shapes, with programmable faults.

Each path has a standing reply; ``push`` queues one-shot replies (a 500, then a 429, ...) that are
served first. Every request is recorded with its headers, so tests can check what was sent. A
``guard`` sees each request before the reply and may answer instead — used to enforce the headers a
real endpoint insists on (the Claude usage endpoint's User-Agent and beta header).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    status: int = 200
    #: Bytes are sent as they are; anything else is sent as JSON.
    body: Any = b""
    headers: dict[str, str] = field(default_factory=dict)
    #: Wait this long before answering (timeouts).
    delay_s: float = 0.0
    #: Close the connection without answering.
    drop: bool = False

    def payload(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        return json.dumps(self.body).encode()


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    #: ``time.monotonic()`` when it arrived.
    at: float = field(default_factory=time.monotonic)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


Guard = Callable[[Request], Reply | None]


class FakeServer:
    def __init__(self) -> None:
        self.routes: dict[str, Reply] = {}
        self.queued: dict[str, deque[Reply]] = {}
        self.requests: list[Request] = []
        self.guard: Guard | None = None
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- programming -----------------------------------------------------------------------------

    def route(self, path: str, reply: Reply | Any) -> None:
        """The standing answer for ``path`` (a Reply, or a JSON body for a 200)."""
        with self._lock:
            self.routes[path] = reply if isinstance(reply, Reply) else Reply(body=reply)

    def push(self, path: str, *replies: Reply) -> None:
        """One-shot answers for ``path``, served in order before the standing one."""
        with self._lock:
            self.queued.setdefault(path, deque()).extend(replies)

    def to(self, path: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path.split("?")[0] == path]

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def _reply_for(self, request: Request) -> Reply:
        with self._lock:
            self.requests.append(request)
            guard = self.guard
        if guard is not None:
            forced = guard(request)
            if forced is not None:
                return forced
        with self._lock:
            path = request.path.split("?")[0]
            queue = self.queued.get(path)
            if queue:
                return queue.popleft()
            return self.routes.get(path, Reply(status=404, body={"error": "not found"}))

    # -- running ---------------------------------------------------------------------------------

    def start(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                self._answer()

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                if length:
                    self.rfile.read(length)
                self._answer()

            def _answer(self) -> None:
                request = Request(
                    method=self.command,
                    path=self.path,
                    headers={k.lower(): v for k, v in self.headers.items()},
                )
                reply = fake._reply_for(request)
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                if reply.drop:
                    self.close_connection = True
                    return
                payload = reply.payload()
                try:
                    self.send_response(reply.status)
                    headers = {"content-type": "application/json", **reply.headers}
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("content-length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        server.block_on_close = False
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None


@contextmanager
def serving() -> Iterator[FakeServer]:
    server = FakeServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def refused_url() -> str:
    """A URL on 127.0.0.1 where nothing listens: connecting is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"
