"""``bhoga statusline`` against a real daemon: Claude Code's readings reach it and ``best`` follows
them; without a daemon, or with garbage on stdin, it still prints a line and exits 0."""

from __future__ import annotations

import json
import re
import socket
import time
from pathlib import Path
from typing import Any

from tests.conftest import DaemonProcess

SL = Path(__file__).resolve().parents[1] / "data" / "harness" / "statusline"


def payload(name: str = "subscriber.json", new_period: str | None = None, **used: float) -> str:
    """A fixture with its resets moved ahead of now and, optionally, other percentages; the bucket
    named by ``new_period`` is read in its next period (its reset a week later)."""
    data = json.loads((SL / name).read_text())
    now = int(time.time())
    for key, bucket in (data.get("rate_limits") or {}).items():
        bucket["resets_at"] = now + (2 * 3600 if key == "five_hour" else 3 * 86400)
        if key == new_period:
            bucket["resets_at"] += 7 * 86400
        if key in used:
            bucket["used_percentage"] = used[key]
    return json.dumps(data)


def best(daemon: DaemonProcess, model: str) -> str:
    out = daemon.cli("best", model)
    return out.stdout.split("\t")[0]


def test_readings_reach_the_daemon_and_best_follows_them(make_daemon: Any) -> None:
    daemon: DaemonProcess = make_daemon(env={"ANTHROPIC_API_KEY": "sk-ant-test-not-real"})
    assert best(daemon, "claude-opus-4-7") == "anthropic_api"  # no Claude login on this machine

    out = daemon.cli("statusline", input=payload())
    assert out.returncode == 0 and out.stderr == ""
    assert re.fullmatch(r"opus 4\.7 · 5h 37% \(1h5\dm\) · wk 61% · best: claude_code\n", out.stdout)
    with daemon.router() as router:
        q = router.quotas()["claude_code:*"]
    assert {k: (w.pct_used, w.source) for k, w in q.windows.items()} == {
        "burst": (37.0, "statusline"),
        "weekly": (61.0, "statusline"),
        "weekly/opus": (12.0, "statusline"),
        "weekly/sonnet": (4.0, "statusline"),
    }
    assert q.available and best(daemon, "claude-opus-4-7") == "claude_code"

    # The weekly Opus bucket runs out: Opus goes elsewhere, Sonnet stays.
    out = daemon.cli("statusline", input=payload(seven_day_opus=100.0))
    assert out.stdout.endswith("best: anthropic_api\n")
    assert best(daemon, "claude-opus-4-7") == "anthropic_api"
    assert best(daemon, "claude-sonnet-4-6") == "claude_code"

    # A lower reading of the same period is noise (usage only grows within a period) ...
    daemon.cli("statusline", input=payload(seven_day_opus=1.0))
    assert best(daemon, "claude-opus-4-7") == "anthropic_api"
    # ... but one of the next period (the reset moved on) says it is back.
    daemon.cli("statusline", input=payload(new_period="seven_day_opus", seven_day_opus=1.0))
    assert best(daemon, "claude-opus-4-7") == "claude_code"

    # Readings survive a restart like any other window.
    daemon.restart()
    assert best(daemon, "claude-opus-4-7") == "claude_code"


def test_api_key_and_old_payloads_send_nothing_but_still_print(make_daemon: Any) -> None:
    daemon: DaemonProcess = make_daemon(env={"ANTHROPIC_API_KEY": "sk-ant-test-not-real"})
    for name, line in (
        ("api-key.json", "sonnet 4.6 · best: anthropic_api\n"),
        ("old-version.json", "sonnet 4.5 · best: anthropic_api\n"),
    ):
        out = daemon.cli("statusline", input=payload(name))
        assert (out.returncode, out.stdout) == (0, line)
    with daemon.router() as router:
        assert router.quotas()["claude_code:*"].windows == {}


def test_never_fails_the_statusline(make_daemon: Any) -> None:
    daemon: DaemonProcess = make_daemon(start=False)  # no daemon at all
    out = daemon.cli("statusline", input=payload())
    assert out.returncode == 0 and out.stderr == ""
    assert re.fullmatch(r"opus 4\.7 · 5h 37% \(1h5\dm\) · wk 61%\n", out.stdout)
    for name in ("garbage.txt", "bad-values.json"):
        out = daemon.cli("statusline", input=(SL / name).read_text(errors="replace"))
        assert out.returncode == 0 and out.stdout.strip() and out.stderr == ""
    out = daemon.cli("statusline", input="")
    assert (out.returncode, out.stdout) == (0, "bhoga\n")
    out = daemon.cli("statusline", "--format", "{model}|{burst}|{best}", input=payload())
    assert out.stdout == "opus 4.7|37%|-\n"


def test_a_daemon_that_does_not_answer_costs_at_most_the_timeout(make_daemon: Any, tmp_root: Path) -> None:
    daemon: DaemonProcess = make_daemon(start=False)
    (daemon.root / "run").mkdir(mode=0o700, exist_ok=True)
    mute = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    mute.bind(str(daemon.socket))
    mute.listen(8)  # accepts connections and never answers
    try:
        out = daemon.cli("statusline", "--timeout", "0.2", input=payload())
        assert out.returncode == 0 and re.fullmatch(r"opus 4\.7 · 5h 37% \(1h5\dm\) · wk 61%\n", out.stdout)
    finally:
        mute.close()


def test_quota_report_refuses_bad_windows_whole(daemon: DaemonProcess) -> None:
    from bhoga import InvalidParams

    good = {"name": "burst", "pct_used": 10.0, "source": "statusline"}
    bad_cases = [
        [good, {"name": "weekly", "pct_used": 1e300}],
        [good, {"name": "weekly", "pct_used": 5.0, "resets_at": "2999-01-01T00:00:00Z"}],
        [good, {"name": "weekly", "pct_used": 5.0, "updated_at": "2999-01-01T00:00:00Z"}],
        [good, {"name": "", "pct_used": 5.0}],
        [dict(good, scope=f"s{i}") for i in range(100)],
    ]
    with daemon.router() as router:
        for windows in bad_cases:
            try:
                router.call("quota.report", {"provider": "claude_code", "windows": windows})
            except InvalidParams as exc:
                assert exc.data.get("field") == "windows"
            else:
                raise AssertionError(f"accepted {windows[-1]}")
        assert router.quotas()["claude_code:*"].windows == {}  # nothing of a refused report is kept
        q = router.call("quota.report", {"provider": "claude_code", "windows": [good]})
        assert q["windows"]["burst"]["source"] == "statusline"


def test_a_chained_statusline_follows_on_the_same_line(make_daemon: Any, tmp_root: Path) -> None:
    daemon: DaemonProcess = make_daemon(start=False)
    other = tmp_root / "other.sh"
    # The statusline the user had: it reads the same JSON from stdin.
    script = 'import json, sys; print("cwd=" + json.load(sys.stdin)["cwd"])'
    other.write_text(f"#!/bin/sh\npython3 -c '{script}'\n")
    other.chmod(0o755)
    out = daemon.cli("statusline", "--chain-to", str(other), input=payload("api-key.json"))
    assert (out.returncode, out.stdout) == (0, "sonnet 4.6 │ cwd=/home/dev/proj\n")
