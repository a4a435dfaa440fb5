"""Alerts against a real daemon: each threshold fires once per period through a real hook script
and to subscribers, survives a restart without repeating, and a hung hook never blocks the daemon."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgspec

from bhoga.protocol import Alert
from tests.conftest import DaemonProcess

SL = Path(__file__).resolve().parents[1] / "data" / "harness" / "statusline"


def statusline(daemon: DaemonProcess, five_hour: float) -> None:
    data = json.loads((SL / "subscriber.json").read_text())
    now = int(time.time())
    for key, bucket in data["rate_limits"].items():
        bucket["resets_at"] = now + (2 * 3600 if key == "five_hour" else 3 * 86400)
        bucket["used_percentage"] = five_hour if key == "five_hour" else 10.0
    out = daemon.cli("statusline", input=json.dumps(data))
    assert out.returncode == 0


def hook(root: Path, name: str, body: str) -> Path:
    path = root / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def wait_for(check: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def config(*hooks: str) -> str:
    return "alerts:\n  projected: false\n  hooks:\n" + "".join(hooks)


def test_thresholds_fire_once_through_a_hook_and_across_a_restart(make_daemon: Any, tmp_root: Path) -> None:
    got, env_out = tmp_root / "alerts.jsonl", tmp_root / "env.txt"
    script = hook(
        tmp_root,
        "on-alert.sh",
        f'cat >> {got}\necho "$BHOGA_ALERT_KIND $BHOGA_PROVIDER $BHOGA_WINDOW $BHOGA_PERCENT '
        f'${{ANTHROPIC_API_KEY:-no-key}}" >> {env_out}\n',
    )
    daemon: DaemonProcess = make_daemon(
        config(f"    - command: [{script}]\n      kinds: [threshold]\n"),
        env={"ANTHROPIC_API_KEY": "sk-ant-test-not-real"},
    )
    statusline(daemon, 50)
    statusline(daemon, 85)
    wait_for(lambda: len(lines(got)) == 1)
    statusline(daemon, 86)
    statusline(daemon, 96)
    wait_for(lambda: len(lines(got)) == 2)
    daemon.restart()
    statusline(daemon, 97)  # same period, after a restart: nothing new
    statusline(daemon, 100)
    wait_for(lambda: len(lines(got)) == 3)
    time.sleep(0.5)
    alerts = [json.loads(line) for line in lines(got)]
    assert [(a["kind"], a["window"], a["threshold"]) for a in alerts] == [
        ("threshold", "burst", 80.0),
        ("threshold", "burst", 95.0),
        ("threshold", "burst", 100.0),
    ]
    # The hook gets the alert in its environment too, and never the daemon's credentials.
    assert lines(env_out) == [
        "threshold claude_code burst 85 no-key",
        "threshold claude_code burst 96 no-key",
        "threshold claude_code burst 100 no-key",
    ]
    history = daemon.cli("alerts", "--history", "--json")
    assert history.returncode == 0
    listed = msgspec.json.decode(history.stdout, type=list[Alert])
    assert [(a.kind, a.threshold) for a in listed if a.kind == "threshold"] == [
        ("threshold", 80.0),
        ("threshold", 95.0),
        ("threshold", 100.0),
    ]
    text = daemon.cli("alerts", "--history")
    assert "claude_code 'burst' is used up" in text.stdout


def test_subscribers_get_quota_alert_and_a_hung_hook_blocks_nothing(make_daemon: Any, tmp_root: Path) -> None:
    started = tmp_root / "started"
    slow = hook(tmp_root, "slow.sh", f"touch {started}\nexec sleep 60\n")
    daemon: DaemonProcess = make_daemon(config(f"    - command: [{slow}]\n      timeout_s: 1\n"))
    watcher = subprocess.Popen(
        [sys.executable, "-m", "bhoga", "alerts", "--no-desktop", "--json"],
        env=daemon.env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.0)  # subscribed
        statusline(daemon, 99)
        assert watcher.stdout is not None
        alert = json.loads(watcher.stdout.readline())
        assert (alert["kind"], alert["provider"], alert["threshold"]) == ("threshold", "claude_code", 95.0)
        wait_for(started.exists)
        # The hook sleeps; the daemon answers at once, and kills the hook at its timeout.
        t0 = time.monotonic()
        with daemon.router() as router:
            router.best_for("claude-opus-4-7")
        assert time.monotonic() - t0 < 5.0  # generous: only "not blocked for the hook's 60 s"
        wait_for(lambda: "alert hook timed out" in daemon.log_text(), timeout=15)
        assert not _sleepers(slow)
    finally:
        watcher.terminate()
        watcher.wait(10)
        if watcher.stdout is not None:
            watcher.stdout.close()


def _sleepers(script: Path) -> list[str]:
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if str(script).encode() in cmd:
                found.append(pid)
    return found


def test_bhoga_alerts_shows_each_alert_on_the_desktop(make_daemon: Any, tmp_root: Path) -> None:
    bin_dir = tmp_root / "bin"
    bin_dir.mkdir()
    shown = tmp_root / "shown.txt"
    # A notify-send on PATH that records its arguments, one per line, then a separator.
    hook(bin_dir, "notify-send", f'for a in "$@"; do echo "$a" >> {shown}; done\necho --- >> {shown}\n')
    daemon: DaemonProcess = make_daemon("alerts: {projected: false}\n")
    watcher = subprocess.Popen(
        [sys.executable, "-m", "bhoga", "alerts"],
        env={**daemon.env, "PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}"},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.0)  # subscribed
        statusline(daemon, 100)
        assert watcher.stdout is not None
        line = watcher.stdout.readline()
        assert "threshold" in line and "claude_code 'burst' is used up" in line
        wait_for(lambda: "---" in lines(shown))
        args = lines(shown)
        assert args[:3] == ["--app-name=bhoga", "--urgency=critical", "bhoga: claude_code"]
        assert args[3].startswith("claude_code 'burst' is used up")
    finally:
        watcher.terminate()
        watcher.wait(10)
        if watcher.stdout is not None:
            watcher.stdout.close()
