"""One daemon per socket, safe socket files, a store that survives restarts and bad files."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from typing import Any

import pytest

from tests.conftest import DaemonProcess


def test_socket_is_private_and_removed_on_clean_stop(daemon: DaemonProcess) -> None:
    assert stat.S_IMODE(daemon.socket.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(daemon.socket.stat().st_mode) == 0o600
    assert daemon.stop() == 0
    assert not daemon.socket.exists()
    assert '"event":"stopped"' in daemon.log_text()


def test_second_daemon_on_the_same_socket_leaves_the_first_alone(daemon: DaemonProcess) -> None:
    with daemon.router() as router:
        router.set_quota("claude_code", 42)
    second = subprocess.run(
        [sys.executable, "-m", "bhogad"], env=daemon.env, capture_output=True, text=True, timeout=30
    )
    assert second.returncode == 0 and "already running" in second.stderr
    with daemon.router() as router:  # the first still owns and serves the socket
        assert router.quotas()["claude_code:*"].quota_pct == pytest.approx(0.42)


def test_stale_socket_file_from_a_crash_is_replaced(daemon: DaemonProcess) -> None:
    daemon.kill()
    assert daemon.socket.exists()  # kill -9 leaves the file behind
    daemon.start()
    with daemon.router() as router:
        assert router.hello().protocol == 1


def test_refuses_a_socket_directory_others_can_reach(make_daemon: Any) -> None:
    d: DaemonProcess = make_daemon(start=False)
    (d.root / "run").mkdir(mode=0o755)
    os.chmod(d.root / "run", 0o755)
    d.start(wait=False)
    assert d.proc is not None and d.proc.wait(30) == 1
    assert "chmod 700" in d.log_text()


def test_refuses_to_replace_a_file_that_is_not_a_socket(make_daemon: Any) -> None:
    d: DaemonProcess = make_daemon(start=False)
    (d.root / "run").mkdir(mode=0o700)
    d.socket.write_text("precious")
    d.start(wait=False)
    assert d.proc is not None and d.proc.wait(30) == 1
    assert d.socket.read_text() == "precious"


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to act as another user")
def test_peers_of_another_user_are_refused(daemon: DaemonProcess) -> None:
    # Open the directory and socket up, so only the daemon's own peer check stands in the way: it
    # answers the connection itself with an error, before any request.
    for directory in (daemon.root.parent, daemon.root, daemon.socket.parent):
        os.chmod(directory, 0o711)
    os.chmod(daemon.socket, 0o666)
    code = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])\n"
        "print(s.makefile().readline())\n"
    )
    # The venv's interpreter may live where another user cannot read; the system one is enough here.
    python = shutil.which("python3", path="/usr/bin:/bin")
    if python is None:
        pytest.skip("no system python3 for the other user")
    out = subprocess.run(
        [python, "-c", code, str(daemon.socket)],
        capture_output=True,
        text=True,
        timeout=30,
        user=65534,
    )
    assert out.returncode == 0, out.stderr
    reply = json.loads(out.stdout)
    assert reply["error"]["code"] == -32001 and reply["error"]["data"]["kind"] == "not_authorised"


def test_state_survives_a_restart(daemon: DaemonProcess) -> None:
    with daemon.router() as router:
        router.set_quota("openai-codex", 64, weekly_pct=12)
        router.record_turn("openai_api", "gpt-5.4", 10, 20, {"retry-after": "3600"}, 429, wait=True)
    daemon.restart()
    with daemon.router() as router:
        quotas = router.quotas()
        assert quotas["openai-codex:*"].windows["weekly"].pct_used == pytest.approx(88)
        assert quotas["openai_api:*"].cooldown_until is not None
        assert [t.status_code for t in router.turns()] == [429]
        assert router.record_turn("openai_api", "gpt-5.4", wait=True) == 2  # ids continue


def test_corrupt_store_is_moved_aside_and_reported(daemon: DaemonProcess) -> None:
    daemon.stop()
    db = daemon.state / "state.db"
    for extra in ("-wal", "-shm"):
        if os.path.exists(f"{db}{extra}"):
            os.remove(f"{db}{extra}")
    db.write_bytes(b"this is not a database" * 100)
    daemon.start()
    moved = [p for p in daemon.state.iterdir() if p.name.startswith("state.db.unusable-")]
    assert len(moved) == 1 and moved[0].read_bytes().startswith(b"this is not a database")
    assert "could not be used and was moved aside" in daemon.log_text()
    with daemon.router() as router:
        assert router.record_turn("anthropic_api", "m", wait=True) == 1


def test_store_from_a_newer_bhogad_is_moved_aside_not_overwritten(daemon: DaemonProcess) -> None:
    daemon.stop()
    conn = sqlite3.connect(daemon.state / "state.db")
    conn.execute("PRAGMA user_version = 99")
    conn.commit()
    conn.close()
    daemon.start()
    moved = [
        p
        for p in daemon.state.iterdir()
        if p.name.startswith("state.db.unusable-") and "-" not in p.name[-4:]
    ]
    assert moved, list(daemon.state.iterdir())
    assert "newer bhogad" in daemon.log_text()


def test_socket_path_too_long_is_a_clear_error(make_daemon: Any) -> None:
    d: DaemonProcess = make_daemon(start=False, env={"BHOGA_SOCKET": "/tmp/" + "x" * 120 + "/s.sock"})
    d.start(wait=False)
    assert d.proc is not None and d.proc.wait(30) == 1
    assert "longer than this platform allows" in d.log_text()


def test_bad_config_at_start_names_file_and_line(make_daemon: Any) -> None:
    d: DaemonProcess = make_daemon(
        "routing:\n  strategy: headroom\nproviders:\n  claude_code:\n    priority: high\n", start=False
    )
    d.start(wait=False)
    assert d.proc is not None and d.proc.wait(30) == 2
    assert f"{d.config}:5" in d.log_text() and "priority" in d.log_text()


def test_sighup_from_the_moment_the_socket_exists_reloads_and_never_kills(make_daemon: Any) -> None:
    """A reload asked for as soon as the daemon is reachable (a service manager's ExecReload, or a
    person) must find the handlers in place: the socket is bound only after they are installed."""
    d: DaemonProcess = make_daemon("routing:\n  strategy: headroom\n", start=False)
    d.start(wait=False)
    assert d.proc is not None
    sent = 0
    deadline = time.monotonic() + 30
    while not d.socket.exists():
        assert d.proc.poll() is None, d.log_text()
        assert time.monotonic() < deadline, d.log_text()
        time.sleep(0.0005)
    # As early as possible and repeatedly: through start-up, the first accept, and after.
    while time.monotonic() < deadline:
        d.proc.send_signal(signal.SIGHUP)
        sent += 1
        assert d.proc.poll() is None, f"killed by SIGHUP number {sent}:\n{d.log_text()}"
        if sent >= 200:
            break
        time.sleep(0.001)
    d.wait_ready()
    with d.router(timeout=10) as router:
        assert router.hello().pid == d.proc.pid
    assert d.proc.poll() is None
    assert "config reloaded" in d.log_text()
    assert d.stop() == 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (b"providers:\n  claud_code:\n    priority: 2\n", ":2: providers.claud_code: unknown provider"),
        (b"a: " + b"[" * 5000 + b"]" * 5000 + b"\n", ":1: nested more than 32 levels deep"),
        (b"routing:\n  strategy: pace # \xff\n", ":2: not UTF-8"),
        (b"server:\n  metrics_port: 99999\n", ":2: server.metrics_port"),
        (
            b"routing:\n  families:\n    google: [gemini_api]\n",
            ":3: routing.families.google.0: unknown provider",
        ),
    ],
)
def test_check_config_exits_2_with_the_key_and_line_and_no_traceback(
    make_daemon: Any, text: bytes, expected: str
) -> None:
    d: DaemonProcess = make_daemon(start=False)
    d.config.write_bytes(text)
    done = subprocess.run(
        [sys.executable, "-m", "bhogad", "--check-config"],
        env=d.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert f"bhogad: config error: {d.config}{expected}" in done.stderr
    assert "Traceback" not in done.stderr
