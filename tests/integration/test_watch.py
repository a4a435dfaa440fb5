"""``bhoga watch`` as a person runs it: a real process against a real daemon, reading its output."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import threading
import time
from queue import Empty, Queue
from typing import IO

from tests.conftest import DaemonProcess


class Output:
    """Lines of a child's stdout, read on a thread so a test can wait for one with a deadline."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: Queue[str] = Queue()
        self.seen: list[str] = []
        self.thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self.thread.start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, predicate: object, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except Empty:
                break
            self.seen.append(line)
            if predicate(line):  # type: ignore[operator]
                return line
        raise AssertionError("expected output did not come; got:\n" + "\n".join(self.seen))


def finish(proc: subprocess.Popen[str], out: Output | None) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)
    if out is not None:
        out.thread.join(10)  # the pump ends at EOF; only then may its pipe be closed
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def watch(daemon: DaemonProcess, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bhoga", "watch", *args],
        env=daemon.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_watch_prints_a_new_snapshot_after_a_change_and_stops_cleanly_on_ctrl_c(
    daemon: DaemonProcess,
) -> None:
    proc = watch(daemon)
    out = Output(proc.stdout)  # type: ignore[arg-type]
    try:
        out.wait_for(lambda line: line.startswith("--- bhoga watch") and "connected" in line)
        out.wait_for(lambda line: line.startswith("openrouter"))
        with daemon.router() as router:
            router.set_quota("claude_code", 35)
        out.wait_for(lambda line: line.startswith("--- ") and "manual on claude_code" in line)
        row = out.wait_for(lambda line: line.startswith("claude_code"))
        assert "35% left" in row
        with daemon.router() as router:
            router.record_turn(
                "anthropic_api", "claude-opus-4-5", status_code=429, headers={"retry-after": "90"}
            )
        out.wait_for(lambda line: "turn on anthropic_api" in line)
        out.wait_for(lambda line: line.startswith("anthropic_api") and "throttled" in line)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
        assert "Traceback" not in proc.stderr.read()  # type: ignore[union-attr]
    finally:
        finish(proc, out)


def test_watch_follows_the_daemon_across_a_restart(daemon: DaemonProcess) -> None:
    proc = watch(daemon, "--json")
    out = Output(proc.stdout)  # type: ignore[arg-type]
    try:
        first = json.loads(out.wait_for(lambda line: line.startswith("{")))
        assert first["cause"] == "connected" and {q["provider_id"] for q in first["quotas"]} >= {
            "claude_code"
        }
        daemon.restart()
        with daemon.router() as router:
            router.set_quota("openai-codex", 12)

        def codex_at_12(line: str) -> bool:
            quotas = json.loads(line)["quotas"] if line.startswith("{") else []
            return any(q["provider_id"] == "openai-codex" and q["quota_pct"] == 0.12 for q in quotas)

        # Seen as an event if watch resubscribed first, else in the snapshot it takes on reconnecting.
        out.wait_for(codex_at_12, timeout=20)
        proc.terminate()
        assert proc.wait(10) == 0
    finally:
        finish(proc, out)


def test_watch_redraws_in_place_on_a_terminal(daemon: DaemonProcess) -> None:
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bhoga", "watch"],
        env=daemon.env,
        stdin=follower,
        stdout=follower,
        stderr=follower,
    )
    os.close(follower)
    try:
        seen = b""
        deadline = time.monotonic() + 10
        while b"openrouter" not in seen and time.monotonic() < deadline:
            if select.select([leader], [], [], 0.2)[0]:
                seen += os.read(leader, 65536)
        assert b"\x1b[?25l" in seen and b"\x1b[H" in seen and b"openrouter" in seen  # hidden cursor, home
        assert b"--- " not in seen  # no appended snapshots on a terminal
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
        tail = b""
        while select.select([leader], [], [], 0.2)[0]:
            try:
                tail += os.read(leader, 65536)
            except OSError:
                break
        assert tail.endswith(b"\x1b[?25h")  # the cursor is given back
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(leader)


def test_watch_without_a_daemon_says_so(tmp_root: object) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BHOGA_")}
    env["BHOGA_SOCKET"] = "/tmp/bhoga-watch-test-none.sock"
    done = subprocess.run(
        [sys.executable, "-m", "bhoga", "watch"], env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 4 and "not running" in done.stderr
