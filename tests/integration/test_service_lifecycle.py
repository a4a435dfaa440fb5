"""bhogad under a service manager, played by the test: a real notify socket receiving bhogad's
datagrams, a listening socket passed at fd 3 as systemd does, and real signals."""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import stat
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DaemonProcess


class NotifyReceiver:
    """The manager's end of ``$NOTIFY_SOCKET``: collects every datagram with its arrival time."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address.replace("@", "\0", 1) if address.startswith("@") else address)
        self.messages: list[tuple[float, dict[str, str]]] = []

    def _receive(self, timeout: float) -> bool:
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return False
        fields = dict(line.split("=", 1) for line in data.decode().splitlines())
        self.messages.append((time.monotonic(), fields))
        return True

    def wait_for(self, key: str, timeout: float = 15.0, after: int = 0) -> dict[str, str]:
        """The first message at index ``after`` or later that sets ``key``."""
        deadline = time.monotonic() + timeout
        while True:
            for _, fields in self.messages[after:]:
                if key in fields:
                    return fields
            left = deadline - time.monotonic()
            if left <= 0 or not self._receive(left):
                raise AssertionError(f"no {key} from bhogad; got {[m for _, m in self.messages]}")

    def drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self._receive(left)

    def close(self) -> None:
        self.sock.close()


def test_ready_watchdog_and_stopping(make_daemon: Any, tmp_root: Path) -> None:
    rx = NotifyReceiver(str(tmp_root / "notify"))
    # 0.6 s watchdog: bhogad must ping every 0.3 s.
    d: DaemonProcess = make_daemon(env={"NOTIFY_SOCKET": rx.address, "WATCHDOG_USEC": "600000"}, start=False)
    d.start(wait=False)
    ready = rx.wait_for("READY")
    assert ready["READY"] == "1" and str(d.socket) in ready["STATUS"]
    with d.router(timeout=2.0) as router:  # READY means served now, not soon
        router.hello()
    rx.drain(2.0)
    pings = [at for at, fields in rx.messages if fields.get("WATCHDOG") == "1"]
    assert len(pings) >= 5, rx.messages
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    assert 0.2 <= statistics.median(gaps) <= 0.45, gaps
    assert d.stop() == 0
    stopping = rx.wait_for("STOPPING", timeout=5.0)
    assert stopping["STOPPING"] == "1"
    order = [next(iter(f)) for _, f in rx.messages if "READY" in f or "STOPPING" in f]
    assert order == ["READY", "STOPPING"]
    rx.close()


def test_watchdog_for_another_pid_is_not_pinged(make_daemon: Any, tmp_root: Path) -> None:
    rx = NotifyReceiver(str(tmp_root / "notify"))
    env = {"NOTIFY_SOCKET": rx.address, "WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1"}
    d: DaemonProcess = make_daemon(env=env, start=False)
    d.start(wait=False)
    rx.wait_for("READY")
    rx.drain(0.8)
    assert not [f for _, f in rx.messages if "WATCHDOG" in f]
    assert d.stop() == 0
    rx.close()


@pytest.mark.skipif(sys.platform != "linux", reason="the abstract namespace is Linux-only")
def test_abstract_notify_socket(make_daemon: Any) -> None:
    rx = NotifyReceiver(f"@bhoga-test-{uuid.uuid4().hex}")
    d: DaemonProcess = make_daemon(env={"NOTIFY_SOCKET": rx.address}, start=False)
    d.start(wait=False)
    assert rx.wait_for("READY")["READY"] == "1"
    assert d.stop() == 0
    rx.close()


# -- reload ------------------------------------------------------------------------------------------


def _priority(d: DaemonProcess, provider: str = "openrouter") -> int:
    with d.router() as router:
        return router.quotas()[f"{provider}:*"].priority


def test_sighup_applies_a_good_config_and_keeps_the_old_one_when_the_new_is_bad(
    make_daemon: Any, tmp_root: Path
) -> None:
    rx = NotifyReceiver(str(tmp_root / "notify"))
    d: DaemonProcess = make_daemon(
        "providers:\n  openrouter:\n    priority: 7\n", env={"NOTIFY_SOCKET": rx.address}, start=False
    )
    d.start(wait=False)
    rx.wait_for("READY")
    assert _priority(d) == 7
    assert d.proc is not None

    d.config.write_text("providers:\n  openrouter:\n    priority: 9\n")
    mark = len(rx.messages)
    before = time.monotonic_ns() // 1000
    d.proc.send_signal(signal.SIGHUP)
    reloading = rx.wait_for("RELOADING", after=mark)
    assert before <= int(reloading["MONOTONIC_USEC"]) <= time.monotonic_ns() // 1000
    assert "reloaded" in rx.wait_for("READY", after=mark)["STATUS"]
    assert _priority(d) == 9

    d.config.write_text("# a typo on line 3\nproviders:\n  openrouter: {priority: [9\n")
    mark = len(rx.messages)
    d.proc.send_signal(signal.SIGHUP)
    rx.wait_for("RELOADING", after=mark)
    assert "reload failed" in rx.wait_for("READY", after=mark)["STATUS"]
    assert _priority(d) == 9  # still the last good config
    failed = [json.loads(x) for x in d.log_text().splitlines() if "reload failed" in x]
    assert failed and f"{d.config}:" in failed[-1]["error"]

    d.config.write_text("providers:\n  openrouter:\n    priority: high\n")
    d.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while d.log_text().count("reload failed") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert f"{d.config}:3" in d.log_text()
    assert _priority(d) == 9
    assert d.stop() == 0
    rx.close()


def test_config_error_at_start_exits_non_zero_naming_file_and_line(make_daemon: Any, tmp_root: Path) -> None:
    rx = NotifyReceiver(str(tmp_root / "notify"))
    d: DaemonProcess = make_daemon(
        "routing:\n  strategy: headroom\nserver:\n  max_connections: [\n",
        env={"NOTIFY_SOCKET": rx.address},
        start=False,
    )
    d.start(wait=False)
    assert d.proc is not None and d.proc.wait(30) != 0
    text = d.log_text()
    assert f"{d.config}:" in text and "YAML" in text, text
    line = int(text.split(f"{d.config}:", 1)[1].split(":", 1)[0])
    assert line in (4, 5)  # where the unclosed list is, as the YAML parser reports it
    rx.drain(0.2)
    assert not [f for _, f in rx.messages if "READY" in f]  # a manager must not think it started
    rx.close()


# -- socket activation -------------------------------------------------------------------------------

# What systemd does between fork and exec: put the socket at fd 3 and name this very process in
# LISTEN_PID, then exec bhogad so it keeps the pid.
EXEC_WRAPPER = """\
import os, sys
fd = int(sys.argv[1])
if fd != 3:
    os.dup2(fd, 3)
    os.close(fd)
os.environ["LISTEN_PID"] = str(os.getpid())
os.execv(sys.executable, [sys.executable, "-m", "bhogad", *sys.argv[2:]])
"""


def _manager_socket(path: Path) -> socket.socket:
    path.parent.mkdir(mode=0o700, exist_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    os.chmod(path, 0o600)
    listener.listen(64)
    return listener


def _activate(d: DaemonProcess, listener: socket.socket) -> subprocess.Popen[bytes]:
    env = {**d.env, "LISTEN_FDS": "1", "LISTEN_FDNAMES": "rpc"}
    with d.log.open("ab") as log:  # the child keeps its own copy of the descriptor
        d.proc = subprocess.Popen(  # set on d, so the fixture stops it if the test fails
            [sys.executable, "-c", EXEC_WRAPPER, str(listener.fileno()), "--log-json"],
            env=env,
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            pass_fds=(listener.fileno(),),
        )
    return d.proc


def test_inherited_socket_is_served_and_survives_shutdown(make_daemon: Any) -> None:
    d: DaemonProcess = make_daemon(start=False)
    listener = _manager_socket(d.socket)
    inode = d.socket.stat().st_ino
    try:
        proc = _activate(d, listener)
        d.wait_ready()
        with d.router() as router:
            assert router.hello().pid == proc.pid  # LISTEN_PID named the daemon itself
            router.set_quota("claude_code", 40)
        assert "serving an inherited socket" in d.log_text()
        assert d.stop() == 0
        # The manager's file is untouched: same inode, same mode.
        assert d.socket.stat().st_ino == inode and stat.S_IMODE(d.socket.stat().st_mode) == 0o600

        # A client that connects while no daemon runs waits in the manager's backlog ...
        waiting = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        waiting.settimeout(30)
        waiting.connect(str(d.socket))
        waiting.sendall(
            b'{"jsonrpc":"2.0","method":"quota.list","params":{"provider":"claude_code"},"id":7}\n'
        )
        # ... and is answered by the next instance, with the state the first one stored.
        second = _activate(d, listener)
        reply = json.loads(waiting.makefile("rb").readline())
        waiting.close()
        assert reply["id"] == 7 and reply["result"][0]["quota_pct"] == pytest.approx(0.40)
        with d.router() as router:
            assert router.hello().pid == second.pid
        assert d.stop() == 0
        assert d.socket.stat().st_ino == inode
    finally:
        listener.close()


def test_listen_pid_of_another_process_is_ignored(make_daemon: Any) -> None:
    """Variables inherited by mistake must not make bhogad serve a descriptor meant for someone else."""
    d: DaemonProcess = make_daemon(env={"LISTEN_FDS": "1", "LISTEN_PID": "1"})
    with d.router() as router:
        router.hello()
    assert "serving an inherited socket" not in d.log_text()
    assert d.stop() == 0
    assert not d.socket.exists()  # its own socket, so its own to remove


# -- stopping with work in flight --------------------------------------------------------------------


class Pipeliner:
    """One client writing turns.record requests as fast as it can until the daemon closes on it."""

    def __init__(self, path: Path, tag: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(20)
        self.sock.connect(str(path))
        self.tag = tag
        self.sent = 0
        self.replies: list[dict[str, Any]] = []
        self.writer = threading.Thread(target=self._write, daemon=True)
        self.reader = threading.Thread(target=self._read, daemon=True)

    def start(self) -> None:
        self.writer.start()
        self.reader.start()

    def _write(self) -> None:
        try:
            while True:
                chunk = b"".join(
                    json.dumps(
                        {
                            "jsonrpc": "2.0",
                            "method": "turns.record",
                            "params": {"provider": "anthropic_api", "model": "claude-x", "session": self.tag},
                            "id": self.sent + i + 1,
                        }
                    ).encode()
                    + b"\n"
                    for i in range(10)
                )
                self.sock.sendall(chunk)
                self.sent += 10
        except OSError:
            return  # the daemon stopped reading and closed: expected

    def _read(self) -> None:
        buf = self.sock.makefile("rb")
        try:
            for line in buf:
                self.replies.append(json.loads(line))
        except OSError:
            # Closing with our unread requests queued makes the last read ECONNRESET, after every
            # reply already sent has been read.
            return

    def join(self) -> None:
        self.reader.join(30)
        self.writer.join(30)
        self.sock.close()


def _stored_ids(router: Any, session: str) -> set[int]:
    ids: set[int] = set()
    after = 0
    while page := router.turns(after_id=after, limit=10_000, session=session):
        ids.update(t.id for t in page)
        after = page[-1].id
    return ids


def test_sigterm_mid_request_answers_everything_read_and_stores_everything_acknowledged(
    daemon: DaemonProcess,
) -> None:
    clients = [Pipeliner(daemon.socket, f"client-{i}") for i in range(6)]
    for c in clients:
        c.start()
    deadline = time.monotonic() + 20
    while min(len(c.replies) for c in clients) < 50 and time.monotonic() < deadline:
        time.sleep(0.01)
    stop_started = time.monotonic()
    assert daemon.stop() == 0
    stopped_in = time.monotonic() - stop_started
    for c in clients:
        c.join()
    assert stopped_in < 10, f"SIGTERM took {stopped_in:.1f}s"

    acked: dict[str, set[int]] = {}
    for c in clients:
        answered = [r for r in c.replies if r.get("id") is not None]
        assert all("result" in r for r in answered), [r for r in answered if "error" in r][:3]
        # Answered in order, with no gaps: every request read up to the stop got its reply.
        assert [r["id"] for r in answered] == list(range(1, len(answered) + 1))
        assert len(answered) < c.sent  # the stop really came while requests were in flight
        acked[c.tag] = {r["result"]["id"] for r in answered}

    daemon.start()
    with daemon.router() as router:
        for tag, ids in acked.items():
            stored = _stored_ids(router, tag)
            assert ids <= stored, f"{tag}: acknowledged but lost: {sorted(ids - stored)[:5]}"
            # Nothing stored that was not answered: a line read is a line answered.
            assert stored == ids, f"{tag}: stored without a reply: {sorted(stored - ids)[:5]}"
