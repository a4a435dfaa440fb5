"""Bad input of every kind gets a clear JSON-RPC answer, and everyone else keeps being served."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DaemonProcess

SHORT_LIMITS = """
server:
  line_timeout_s: 0.5
  idle_timeout_s: 3
  max_connections: 6
  max_line_bytes: 65536
"""


_open: list[Raw] = []


@pytest.fixture(autouse=True)
def _close_raw_sockets() -> Any:
    yield
    while _open:
        _open.pop().close()


class Raw:
    """A bare socket talking lines, as socat would. Closed at the end of each test."""

    def __init__(self, path: Path) -> None:
        _open.append(self)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(str(path))
        self.file = self.sock.makefile("rb")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self) -> Any:
        line = self.file.readline()
        assert line.endswith(b"\n"), f"no complete reply line: {line!r}"
        return json.loads(line)

    def ask(self, data: bytes) -> Any:
        self.send(data)
        return self.reply()

    def closed_by_peer(self) -> bool:
        return self.file.readline() == b""

    def close(self) -> None:
        self.file.close()
        self.sock.close()


@pytest.fixture
def d(make_daemon: Any) -> DaemonProcess:
    daemon: DaemonProcess = make_daemon(SHORT_LIMITS)
    return daemon


def hello(i: int = 1) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "method": "daemon.hello", "id": i}).encode() + b"\n"


def test_invalid_json_is_a_parse_error_and_the_connection_stays_usable(d: DaemonProcess) -> None:
    c = Raw(d.socket)
    err = c.ask(b'{"jsonrpc": "2.0", "method": \n')
    assert err == {
        "jsonrpc": "2.0",
        "id": None,
        "error": {"code": -32700, "message": err["error"]["message"]},
    }
    assert c.ask(b"\xff\xfe\x00garbage\x01\n")["error"]["code"] == -32700
    assert c.ask(hello(7))["result"]["protocol"] == 1


def test_wrong_shapes_are_invalid_requests_with_their_id_when_readable(d: DaemonProcess) -> None:
    c = Raw(d.socket)
    assert c.ask(b'{"jsonrpc": "1.0", "method": "daemon.hello", "id": 3}\n')["error"]["code"] == -32600
    missing_method = c.ask(b'{"jsonrpc": "2.0", "id": 4}\n')
    assert missing_method["error"]["code"] == -32600 and missing_method["id"] == 4
    assert c.ask(b"42\n")["error"]["code"] == -32600
    assert c.ask(b'"a string"\n')["error"]["code"] == -32600


def test_unknown_method_and_wrong_param_types(d: DaemonProcess) -> None:
    c = Raw(d.socket)
    unknown = c.ask(b'{"jsonrpc":"2.0","method":"quota.explode","id":"x"}\n')
    assert unknown["id"] == "x" and unknown["error"]["code"] == -32601
    bad = c.ask(
        b'{"jsonrpc":"2.0","method":"quota.set","params":{"provider":"claude_code","pct_remaining":"lots"},"id":2}\n'
    )
    assert bad["error"]["code"] == -32602 and "pct_remaining" in bad["error"]["message"]
    out_of_range = c.ask(
        b'{"jsonrpc":"2.0","method":"quota.set","params":{"provider":"claude_code","pct_remaining":150},"id":3}\n'
    )
    assert out_of_range["error"]["code"] == -32602 and out_of_range["error"]["data"]["kind"] == "out_of_range"
    unknown_pid = c.ask(
        b'{"jsonrpc":"2.0","method":"quota.set","params":{"provider":"claude-code","pct_remaining":50},"id":4}\n'
    )
    assert unknown_pid["error"]["data"]["kind"] == "unknown_provider"
    missing = c.ask(b'{"jsonrpc":"2.0","method":"router.best_for","params":{},"id":5}\n')
    assert missing["error"]["code"] == -32602 and "model" in missing["error"]["message"]
    positional = c.ask(b'{"jsonrpc":"2.0","method":"router.rank","params":["claude-opus-4"],"id":6}\n')
    assert positional["result"]["model"] == "claude-opus-4"
    # Nothing of the bad calls was stored.
    assert d.router().quotas()["claude_code:*"].windows == {}


def test_batches_follow_the_spec(d: DaemonProcess) -> None:
    c = Raw(d.socket)
    assert c.ask(b"[]\n")["error"]["code"] == -32600
    replies = c.ask(
        b'[{"jsonrpc":"2.0","method":"daemon.hello","id":1},'
        b'{"jsonrpc":"2.0","method":"turns.record","params":{"provider":"anthropic_api","model":"m"}},'
        b'1,{"jsonrpc":"2.0","method":"nope","id":2}]\n'
    )
    by_id = {r["id"]: r for r in replies}
    assert len(replies) == 3  # the notification gets no entry
    assert by_id[1]["result"]["protocol"] == 1 and by_id[2]["error"]["code"] == -32601
    assert by_id[None]["error"]["code"] == -32600
    # An all-notification batch gets no reply at all: the next reply is for the next request.
    c.send(b'[{"jsonrpc":"2.0","method":"turns.record","params":{"provider":"anthropic_api","model":"m"}}]\n')
    assert c.ask(hello(9))["id"] == 9
    assert len(d.router().turns()) == 2


def test_notifications_are_never_answered_even_when_wrong(d: DaemonProcess) -> None:
    c = Raw(d.socket)
    c.send(
        b'{"jsonrpc":"2.0","method":"nope"}\n{"jsonrpc":"2.0","method":"quota.set","params":{"provider":1}}\n'
    )
    assert c.ask(hello(11))["id"] == 11
    assert "notification failed" in d.log_text()


def test_oversized_line_gets_an_error_then_the_connection_closes(d: DaemonProcess) -> None:
    c = Raw(d.socket)
    big = b'{"jsonrpc":"2.0","method":"daemon.hello","id":1,"pad":"' + b"x" * 70000 + b'"}\n'
    # The daemon may close before we finish sending; its reply is still in our receive buffer.
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        c.send(big)
    err = c.reply()
    assert err["error"]["code"] == -32004 and err["id"] is None
    assert c.closed_by_peer()
    assert Raw(d.socket).ask(hello())["result"]["protocol"] == 1


def test_half_written_line_times_out_with_an_error(d: DaemonProcess) -> None:
    c = Raw(d.socket)
    c.send(b'{"jsonrpc":"2.0","meth')
    err = c.reply()
    assert err["error"]["code"] == -32600 and err["error"]["data"]["kind"] == "line_timeout"
    assert c.closed_by_peer()


def test_half_close_after_a_partial_line_says_so(d: DaemonProcess) -> None:
    c = Raw(d.socket)
    c.send(hello(1) + b'{"jsonrpc":"2.0"')
    c.sock.shutdown(socket.SHUT_WR)  # socat's behaviour after stdin ends
    assert c.reply()["id"] == 1
    assert c.reply()["error"]["data"]["kind"] == "partial_line"


def test_socat_style_half_close_still_gets_every_answer(d: DaemonProcess) -> None:
    c = Raw(d.socket)
    c.send(b"".join(hello(i) for i in range(1, 51)) + b"\n\n")
    c.sock.shutdown(socket.SHUT_WR)
    assert [c.reply()["id"] for _ in range(50)] == list(range(1, 51))
    assert c.closed_by_peer()


def test_idle_connection_is_closed_after_the_idle_timeout(d: DaemonProcess) -> None:
    c = Raw(d.socket)
    started = time.monotonic()
    assert c.closed_by_peer()
    assert 2.0 < time.monotonic() - started < 8.0


def test_abusers_do_not_stop_other_clients(d: DaemonProcess) -> None:
    """While silent, slow, garbage-spewing and oversized clients hammer it, a normal client is served."""
    stop = threading.Event()

    def garbage() -> None:
        while not stop.is_set():
            try:
                c = Raw(d.socket)
                c.send(bytes(range(256)) * 4 + b"\n")
                c.reply()
                c.close()
            except OSError:
                pass

    silent = Raw(d.socket)  # connects and never writes
    slow = Raw(d.socket)
    slow.send(b'{"jsonrpc":')  # half a line, then nothing
    threads = [threading.Thread(target=garbage) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        with d.router() as router:
            for i in range(200):
                router.set_quota("anthropic_api", i % 100)
                assert router.quotas()["anthropic_api:*"].windows["quota"].pct_used == 100 - i % 100
    finally:
        stop.set()
        for t in threads:
            t.join()
    silent.close()
    slow.close()
