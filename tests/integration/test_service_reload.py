"""Reloads that can fail and a broken config.yaml under socket activation, with a real bhogad, a
real notify socket and a listening socket passed at fd 3 as a service manager does.

The same behaviour under a real systemd user manager is in test_real_systemd.py.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from bhoga.errors import RemoteError
from bhoga.protocol import Method
from tests.conftest import DaemonProcess
from tests.integration.test_service_lifecycle import NotifyReceiver, _activate, _manager_socket

GOOD = "providers:\n  openrouter:\n    priority: 7\n"
BROKEN = "# a typo on line 3\nproviders:\n  openrouter: {priority: [9\n"


def reload_command(d: DaemonProcess) -> subprocess.CompletedProcess[str]:
    """What systemd's ExecReload= runs."""
    return subprocess.run(
        [sys.executable, "-m", "bhogad", "--reload"], env=d.env, capture_output=True, text=True, timeout=60
    )


def priority(d: DaemonProcess) -> int:
    with d.router() as router:
        return router.quotas()["openrouter:*"].priority


def test_reload_command_waits_for_the_new_config_and_fails_on_a_bad_one(
    make_daemon: Any, tmp_root: Path
) -> None:
    rx = NotifyReceiver(str(tmp_root / "notify"))
    d: DaemonProcess = make_daemon(GOOD, env={"NOTIFY_SOCKET": rx.address}, start=False)
    d.start()
    rx.wait_for("READY")
    assert priority(d) == 7

    d.config.write_text(GOOD.replace("7", "9"))
    mark = len(rx.messages)
    done = reload_command(d)
    assert done.returncode == 0, done.stderr
    # Applied before the command returned: no polling, no sleep.
    assert priority(d) == 9
    rx.wait_for("RELOADING", after=mark)
    assert "reloaded" in rx.wait_for("READY", after=mark)["STATUS"]

    d.config.write_text(BROKEN)
    done = reload_command(d)
    assert done.returncode == 1
    assert f"{d.config}:" in done.stderr and "reload failed" in done.stderr, done.stderr
    assert priority(d) == 9  # the running config is kept

    # The same through the protocol: an error reply with a stable kind.
    with d.router() as router, pytest.raises(RemoteError) as caught:
        router.reload()
    assert caught.value.kind == "config_error" and str(d.config) in caught.value.message
    with d.router() as router:
        assert Method.RELOAD in router.hello().capabilities
    assert d.stop() == 0
    rx.close()


def test_reload_command_without_a_daemon_fails_naming_the_socket(make_daemon: Any) -> None:
    d: DaemonProcess = make_daemon(start=False)
    done = reload_command(d)
    assert done.returncode == 1 and str(d.socket) in done.stderr


def test_broken_config_under_socket_activation_answers_the_error_until_fixed(
    make_daemon: Any, tmp_root: Path
) -> None:
    rx = NotifyReceiver(str(tmp_root / "notify"))
    d: DaemonProcess = make_daemon(BROKEN, env={"NOTIFY_SOCKET": rx.address}, start=False)
    listener = _manager_socket(d.socket)
    try:
        # A client already queued on the manager's socket when the daemon starts ...
        waiting = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        waiting.settimeout(30)
        waiting.connect(str(d.socket))
        waiting.sendall(b'{"jsonrpc":"2.0","method":"quota.list","params":{},"id":1}\n')
        proc = _activate(d, listener)
        # ... is answered at once with the error, file and line, instead of waiting for its timeout.
        reply = json.loads(waiting.makefile("rb").readline())
        waiting.close()
        assert reply["error"]["data"]["kind"] == "config_error"
        assert f"{d.config}:" in reply["error"]["message"] and "reload" in reply["error"]["message"]
        ready = rx.wait_for("READY")
        assert "config error" in ready["STATUS"] and str(d.config) in ready["STATUS"]
        assert proc.poll() is None  # running, not exiting into a restart loop

        with d.router() as router:
            router.hello()  # answered: clients can tell "broken config" from "not running"
            status = router.status()
            assert status.config_error is not None and str(d.config) in status.config_error
        listed = d.cli("status")
        assert listed.returncode != 0 and "config error" in listed.stderr + listed.stdout

        # A fixed file and a reload bring it into full service, without a restart: requests are
        # served, and the metrics endpoint it skipped at start is opened.
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        d.config.write_text(GOOD + f"server:\n  metrics_port: {port}\n")
        assert reload_command(d).returncode == 0
        assert priority(d) == 7
        deadline = time.monotonic() + 10
        while True:
            try:
                scraped = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline, "metrics endpoint never opened"
                time.sleep(0.05)
        assert scraped.status_code == 200
        with d.router() as router:
            assert router.status().config_error is None
            assert router.hello().pid == proc.pid
        assert d.stop() == 0
    finally:
        listener.close()
        rx.close()


def test_broken_config_without_socket_activation_still_exits_2(make_daemon: Any) -> None:
    """At a terminal the error is printed and the exit code says it; nobody is queued to be told."""
    d: DaemonProcess = make_daemon(BROKEN, start=False)
    d.start(wait=False)
    assert d.proc is not None and d.proc.wait(30) == 2
    assert f"{d.config}:" in d.log_text()


def test_a_sighup_during_a_reload_call_waits_its_turn(make_daemon: Any) -> None:
    d: DaemonProcess = make_daemon(GOOD)
    assert d.proc is not None
    d.config.write_text(GOOD.replace("7", "8"))
    for _ in range(3):
        d.proc.send_signal(1)  # SIGHUP
        assert reload_command(d).returncode == 0
    deadline = time.monotonic() + 10
    while d.log_text().count("config reloaded") < 6 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert d.log_text().count("config reloaded") == 6
    assert priority(d) == 8
    assert d.stop() == 0
