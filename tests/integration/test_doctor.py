"""``bhoga doctor`` against real daemons in the states people find them in."""

from __future__ import annotations

import json
import os
import time
from typing import Any

from tests.conftest import DaemonProcess


def doctor(d: DaemonProcess) -> tuple[int, dict[str, dict[str, str]]]:
    done = d.cli("doctor", "--json")
    report = json.loads(done.stdout)
    assert report["ok"] == (done.returncode == 0), done.stdout
    return done.returncode, {c["name"]: c for c in report["checks"]}


def test_healthy_daemon_passes(daemon: DaemonProcess) -> None:
    code, checks = doctor(daemon)
    assert code == 0, checks
    for name in ("socket directory", "socket file", "daemon", "versions", "clock", "config"):
        assert checks[name]["status"] == "pass", checks[name]
    providers = [c for n, c in checks.items() if n.startswith("provider ")]
    assert providers and all(c["status"] in ("pass", "info") for c in providers)
    text = daemon.cli("doctor")
    assert text.returncode == 0 and "0 failed" in text.stdout


def test_no_available_provider_is_a_warning_with_what_to_do(daemon: DaemonProcess) -> None:
    code, checks = doctor(daemon)
    assert code == 0 and checks["providers"]["status"] == "warn"
    assert "set-quota" in checks["providers"]["fix"]
    assert daemon.cli("set-quota", "claude_code", "50").returncode == 0
    code, checks = doctor(daemon)
    assert "providers" not in checks and checks["provider claude_code"]["status"] == "pass"


def test_stopped_daemon_fails_with_how_to_start_it_and_still_checks_the_rest(make_daemon: Any) -> None:
    d: DaemonProcess = make_daemon()
    assert d.stop() == 0
    code, checks = doctor(d)
    assert code == 1
    assert checks["daemon"]["status"] == "fail" and "bhoga service install" in checks["daemon"]["fix"]
    assert checks["config"]["status"] == "pass"  # checked without a daemon
    assert checks["socket directory"]["status"] == "pass"
    text = d.cli("doctor")
    assert text.returncode == 1 and "fix: start it" in text.stdout


def test_socket_directory_open_to_others_fails_with_the_chmod(daemon: DaemonProcess) -> None:
    run = daemon.socket.parent
    os.chmod(run, 0o755)
    try:
        code, checks = doctor(daemon)
    finally:
        os.chmod(run, 0o700)
    assert code == 1
    check = checks["socket directory"]
    assert check["status"] == "fail" and check["fix"] == f"chmod 700 {run}"
    assert checks["daemon"]["status"] == "pass"  # a running daemon still answers; the fix is the mode


def test_invalid_config_fails_naming_file_and_line(make_daemon: Any) -> None:
    d: DaemonProcess = make_daemon("providers:\n  claude_code:\n    priority: first\n", start=False)
    code, checks = doctor(d)
    assert code == 1
    assert checks["config"]["status"] == "fail"
    assert f"{d.config}:3" in checks["config"]["detail"]


def test_provider_with_expired_credentials_says_how_to_refresh(make_daemon: Any) -> None:
    d: DaemonProcess = make_daemon(
        # Nothing listens on port 9: an expired token must be reported before any request is made.
        "providers:\n  claude_code:\n    base_url: http://127.0.0.1:9\n",
        start=False,
    )
    creds = {
        "claudeAiOauth": {
            "accessToken": "sk-ant-oat01-TEST-expired-not-real",
            "refreshToken": "sk-ant-ort01-TEST-not-real",
            "expiresAt": int((time.time() - 3600) * 1000),
            "scopes": ["user:inference", "user:profile"],
            "subscriptionType": "max",
        }
    }
    (d.home / ".claude").mkdir(parents=True)
    (d.home / ".claude" / ".credentials.json").write_text(json.dumps(creds))
    d.start()
    with d.router() as router:
        router.refresh("claude_code")
    code, checks = doctor(d)
    check = checks["provider claude_code"]
    assert check["status"] in ("warn", "fail"), check
    assert "expired" in check["fix"] and "`claude`" in check["fix"]
    assert "sk-ant" not in json.dumps(checks)  # a token never reaches the report
    assert code == (1 if check["status"] == "fail" else 0)
