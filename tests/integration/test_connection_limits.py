"""Connections at and past the cap, and lines that trickle in: a client that means business is served.

Nothing here measures time: each test waits for an event (a reply, a close) and checks the order
things happened in. Timeouts are set long wherever the behaviour under test must not depend on them.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from typing import Any

from tests.conftest import DaemonProcess
from tests.fakes.http_server import Reply, serving
from tests.integration.test_discovery import CLAUDE_USAGE, write_logins
from tests.integration.test_protocol_robustness import (  # noqa: F401  (the fixture closes Raw sockets)
    Raw,
    _close_raw_sockets,
    hello,
)

#: Only eviction can free a place here: nothing times out during a test.
PATIENT = """
server:
  line_timeout_s: 120
  idle_timeout_s: 300
  max_connections: 4
"""


def test_at_the_cap_the_quietest_connection_makes_room(make_daemon: Any) -> None:
    d: DaemonProcess = make_daemon(PATIENT)
    idle = Raw(d.socket)
    assert idle.ask(hello(1))["id"] == 1
    drips = []
    for _ in range(3):
        c = Raw(d.socket)
        c.send(b'{"jsonrpc":"2.0",')  # a line begun and never finished
        drips.append(c)
    subscriber = Raw(d.socket)
    # Wait until the daemon has seen every byte sent so far (a reply on the newest connection).
    assert subscriber.ask(b'{"jsonrpc":"2.0","method":"events.subscribe","id":2}\n')["result"]["subscribed"]
    # Four held now (the cap). The idle one was quiet longest and goes first, silently, as after
    # the idle timeout: a client between requests just reconnects on its next call.
    newcomer = Raw(d.socket)
    assert newcomer.ask(hello(3))["id"] == 3
    assert idle.closed_by_peer()
    # Next the dripping lines, oldest first, each told why its line will never be answered.
    for i, drip in enumerate(drips):
        fresh = Raw(d.socket)
        assert fresh.ask(hello(10 + i))["id"] == 10 + i
        err = drip.reply()
        assert err["error"]["code"] == -32600 and err["error"]["data"]["kind"] == "evicted"
        assert drip.closed_by_peer()
    # The subscriber outlived every quieter connection; the newcomers are quieter now, so it stays.
    fresh = Raw(d.socket)
    assert fresh.ask(hello(20))["id"] == 20
    with d.router() as router:
        router.set_quota("anthropic_api", 40)
    event = subscriber.reply()
    assert event["method"] == "quota.changed" and event["params"]["provider"] == "anthropic_api"
    assert "closed a waiting connection to make room" in d.log_text()


def test_a_trickled_line_keeps_the_deadline_of_its_first_byte(make_daemon: Any) -> None:
    d: DaemonProcess = make_daemon("server:\n  line_timeout_s: 1\n  idle_timeout_s: 300\n")
    c = Raw(d.socket)
    line = hello(1)[:-1] + b" " * 2000 + b"\n"  # would take 200 s at this pace
    sent = 0
    stop = threading.Event()

    def drip() -> None:
        nonlocal sent
        with contextlib.suppress(OSError):
            for byte in line:
                if stop.is_set():
                    return
                c.sock.sendall(bytes([byte]))
                sent += 1
                time.sleep(0.1)

    t = threading.Thread(target=drip)
    t.start()
    try:
        err = c.reply()  # a byte every 0.1 s never moves the 1 s deadline
    finally:
        stop.set()
        t.join()
    assert err["error"]["data"]["kind"] == "line_timeout"
    assert sent < len(line)
    assert c.closed_by_peer()


def test_many_more_drips_than_the_cap_while_a_router_works(make_daemon: Any) -> None:
    d: DaemonProcess = make_daemon(PATIENT)
    stop = threading.Event()
    opened = 0

    def attacker() -> None:
        # Opens connection after connection, each dripping a line it never finishes.
        nonlocal opened
        held: list[Raw] = []
        while not stop.is_set():
            with contextlib.suppress(OSError):
                c = Raw(d.socket)
                c.send(b'{"jsonrpc"')
                held.append(c)
                opened += 1
            for c in held[-8:]:
                with contextlib.suppress(OSError):
                    c.send(b" ")
            time.sleep(0.01)

    t = threading.Thread(target=attacker)
    t.start()
    try:
        with d.router() as router:
            for i in range(60):
                router.set_quota("anthropic_api", 1 + i % 99)
                assert router.quotas()["anthropic_api:*"].windows["quota"].pct_used == 99 - i % 99
                assert d.router().best_for("claude-opus-4") is not None
    finally:
        stop.set()
        t.join()
    assert opened > 4  # the attacker really was past the cap
    status = d.cli("status")
    assert status.returncode == 0, status.stderr


def test_when_every_connection_is_busy_a_newcomer_is_told_overloaded(make_daemon: Any) -> None:
    with serving() as claude:
        release = threading.Event()

        def hang(_: Any) -> Reply | None:
            release.wait(30)
            return Reply(500, b"late")

        claude.guard = hang
        config = PATIENT + f"providers:\n  claude_code:\n    base_url: {claude.url}\n    poll_timeout_s: 60\n"
        d: DaemonProcess = make_daemon(config, start=False)
        write_logins(d.home)
        d.start()
        busy = [Raw(d.socket) for _ in range(4)]
        try:
            for i, c in enumerate(busy):
                c.send(
                    json.dumps(
                        {
                            "jsonrpc": "2.0",
                            "method": "quota.refresh",
                            "params": {"provider": "claude_code"},
                            "id": i,
                        }
                    ).encode()
                    + b"\n"
                )
            # Each refresh waits on the one poll the hanging endpoint holds; wait until it is asked.
            deadline = time.monotonic() + 20
            while not claude.to(CLAUDE_USAGE) and time.monotonic() < deadline:
                time.sleep(0.05)
            extra = Raw(d.socket)
            err = extra.reply()
            assert err["error"]["code"] == -32002 and err["error"]["data"]["kind"] == "overloaded"
        finally:
            release.set()
        # Every waiting refresh is still answered once the endpoint gives up.
        for i, c in enumerate(busy):
            assert c.reply()["id"] == i
        assert Raw(d.socket).ask(hello(9))["id"] == 9
