"""An optional plain-HTTP ``/metrics`` endpoint on localhost, for Prometheus scrapers.

A scraper cannot speak JSON-RPC over a Unix socket, so when ``server.metrics_port`` is set the daemon
also answers ``GET /metrics`` on 127.0.0.1 (never another interface: the figures describe one user's
accounts). It is deliberately tiny: one request per connection, a short read deadline, no keep-alive.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

log = structlog.get_logger("bhogad.observability.metrics_http")

_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_MAX_HEAD = 16 * 1024


def _response(status: str, body: bytes, content_type: str = "text/plain; charset=utf-8") -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body


async def serve(port: int, render: Callable[[], str]) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
            method, _, rest = head[:_MAX_HEAD].decode("latin-1").partition(" ")
            path = rest.split(" ", 1)[0].split("?", 1)[0]
            if method not in ("GET", "HEAD"):
                reply = _response("405 Method Not Allowed", b"only GET\n")
            elif path != "/metrics":
                reply = _response("404 Not Found", b"try /metrics\n")
            else:
                body = render().encode()
                reply = _response("200 OK", b"" if method == "HEAD" else body, _CONTENT_TYPE)
            writer.write(reply)
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port, limit=_MAX_HEAD)
    log.info("metrics over HTTP", url=f"http://127.0.0.1:{port}/metrics")
    return server
