"""Cooldowns a person can see the end of, and end: ``bhoga status`` says when and why, and
``bhoga cooldown clear`` (the ``cooldown.clear`` method) lifts one, durably and on the record."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.conftest import DaemonProcess


def _log(d: DaemonProcess) -> list[dict[str, Any]]:
    return [json.loads(line) for line in d.log_text().splitlines() if line.startswith("{")]


def _record_429(d: DaemonProcess, retry_after: str) -> None:
    out = d.cli(
        "record",
        "anthropic_api",
        "claude-opus-4",
        "--status",
        "429",
        "--header",
        f"Retry-After: {retry_after}",
    )
    assert out.returncode == 0, out.stderr


def test_status_says_when_and_why_and_clear_ends_it_for_good(daemon: DaemonProcess) -> None:
    assert daemon.cli("set-quota", "anthropic_api", "90").returncode == 0
    _record_429(daemon, "86400")  # a day: long, but what the server said
    status = daemon.cli("status").stdout
    line = next(line for line in status.splitlines() if "cooldown until" in line)
    assert "since" in line and "429" in line and "bhoga cooldown clear anthropic_api" in line
    assert daemon.cli("best", "claude-opus-4").returncode == 3  # nothing else can serve it

    cleared = daemon.cli("cooldown", "clear", "anthropic_api")
    assert cleared.returncode == 0, cleared.stderr
    assert cleared.stdout.startswith("anthropic_api: lifted cooldown until") and "429" in cleared.stdout
    assert "cooldown until" not in daemon.cli("status").stdout
    assert daemon.cli("best", "claude-opus-4").stdout.startswith("anthropic_api\t")
    (entry,) = [e for e in _log(daemon) if e.get("event") == "cooldown cleared by hand"]
    assert entry["provider"] == "anthropic_api" and "429" in entry["lifted"][0] and entry["peer_pid"]

    # Cleared is stored: a restart does not bring the day back.
    daemon.restart()
    assert daemon.router().quotas()["anthropic_api:*"].cooldown_until is None
    again = daemon.cli("cooldown", "clear", "anthropic_api")
    assert again.returncode == 0 and "nothing to clear" in again.stdout


def test_clear_for_one_model_lifts_its_empty_rate_bucket_and_failure_streak(daemon: DaemonProcess) -> None:
    reset = (datetime.now(UTC) + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    headers = [
        "--header", "anthropic-ratelimit-requests-limit: 50",
        "--header", "anthropic-ratelimit-requests-remaining: 0",
        "--header", f"anthropic-ratelimit-requests-reset: {reset}",
    ]  # fmt: skip
    assert daemon.cli("record", "anthropic_api", "claude-opus-4", *headers).returncode == 0
    for _ in range(6):
        assert daemon.cli("record", "anthropic_api", "claude-opus-4", "--status", "529").returncode == 0
    before = daemon.router().quotas()["anthropic_api:*"]
    assert before.status == "throttled" and before.model_health
    out = daemon.cli(
        "--timeout", "10", "cooldown", "clear", "anthropic_api", "--model", "claude-opus-4", "--json"
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["provider"] == "anthropic_api" and result["model"] == "claude-opus-4"
    assert any("rate limit" in c for c in result["cleared"])
    assert any("consecutive failures of claude-opus-4" in c for c in result["cleared"])
    after = daemon.router().quotas()["anthropic_api:*"]
    assert after.status != "throttled" and not after.model_health


def test_bad_requests_are_refused_with_their_reason(daemon: DaemonProcess) -> None:
    unknown = daemon.cli("cooldown", "clear", "anthropic-api")
    assert unknown.returncode == 1 and "unknown provider" in unknown.stderr
    usage = daemon.cli("cooldown", "lift", "anthropic_api")
    assert usage.returncode == 2
    router = daemon.router()
    reply: Any = router.call("cooldown.clear", ["anthropic_api"])  # by position, as every method
    assert reply["provider"] == "anthropic_api" and reply["cleared"] == []
    blank = daemon.cli("call", "cooldown.clear", '{"provider": "anthropic_api", "model": " "}')
    assert blank.returncode == 1 and "model" in blank.stderr
