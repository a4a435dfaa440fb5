"""The real ``bhoga`` command against a real daemon: output people read, exit codes scripts use."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.conftest import DaemonProcess


def test_status_table_shows_bars_resets_sources_and_cooldowns(daemon: DaemonProcess) -> None:
    reset = (datetime.now(UTC) + timedelta(hours=3)).replace(microsecond=0)
    assert (
        daemon.cli(
            "set-quota", "claude_code", "70", "--weekly", "25", "--resets-at", reset.isoformat()
        ).returncode
        == 0
    )
    assert (
        daemon.cli(
            "record", "anthropic_api", "claude-opus-4", "--status", "429", "--header", "Retry-After: 600"
        ).returncode
        == 0
    )
    out = daemon.cli("status")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    claude = next(i for i, line in enumerate(lines) if line.startswith("claude_code"))
    assert "25% left" in lines[claude] and "quota set by hand" in lines[claude]
    weekly = next(line for line in lines[claude:] if line.strip().startswith("weekly"))
    assert "███████████████░░░░░" in weekly and "75.0% used" in weekly
    local = reset.astimezone().strftime("%H:%M")
    assert f"resets {local}" in weekly and "[manual," in weekly
    api = next(line for line in lines if line.startswith("anthropic_api"))
    assert "throttled" in api
    assert any("cooldown until" in line and "429" in line for line in lines)


def test_best_exit_codes_and_explain(daemon: DaemonProcess) -> None:
    none = daemon.cli("best", "claude-opus-4")
    assert none.returncode == 3 and "no provider" in none.stdout
    daemon.cli("set-quota", "claude_code", "40")
    daemon.cli("set-quota", "anthropic_api", "90")
    best = daemon.cli("best", "claude-opus-4")
    assert best.returncode == 0 and best.stdout.split("\t")[0] == "anthropic_api"
    explain = daemon.cli("best", "claude-opus-4", "--explain")
    lines = explain.stdout.splitlines()
    assert lines[1].split()[:2] == ["1.", "anthropic_api"] and "chosen" in lines[1]
    assert lines[2].split()[:2] == ["2.", "claude_code"]
    assert any("✗" in line and "github-copilot" in line and "unavailable" in line for line in lines)


def test_json_output_is_parseable_everywhere(daemon: DaemonProcess) -> None:
    daemon.cli("set-quota", "openai-codex", "66")
    best: Any = json.loads(daemon.cli("best", "gpt-5.4", "--json").stdout)
    assert best["provider_id"] == "openai-codex" and best["quota_pct"] == 0.66
    ranking = json.loads(daemon.cli("rank", "gpt-5.4", "--json").stdout)
    assert next(c["provider_id"] for c in ranking["candidates"]) == "openai-codex"
    status = json.loads(daemon.cli("status", "--json").stdout)
    assert {q["provider_id"] for q in status} >= {"claude_code", "openai-codex", "openrouter"}
    recorded = json.loads(daemon.cli("record", "openai-codex", "gpt-5.4", "--input", "5", "--json").stdout)
    turns = json.loads(daemon.cli("turns", "--json").stdout)
    assert turns[0]["id"] == recorded["id"] and turns[0]["input_tokens"] == 5
    raw = json.loads(daemon.cli("call", "daemon.hello").stdout)
    assert raw["protocol"] == 1


def test_errors_have_distinct_exit_codes(daemon: DaemonProcess, tmp_root: Any) -> None:
    bad = daemon.cli("set-quota", "claude_code", "120")
    assert bad.returncode == 1 and "0–100" in bad.stderr
    usage = daemon.cli("set-quota", "claude_code", "lots")
    assert usage.returncode == 2
    gone = daemon.cli("--socket", str(tmp_root / "none.sock"), "status")
    assert gone.returncode == 4 and "not running" in gone.stderr and "none.sock" in gone.stderr


def test_status_names_a_model_that_fails_while_others_answer(daemon: DaemonProcess) -> None:
    for _ in range(5):
        assert daemon.cli("record", "anthropic_api", "claude-opus-4-5", "--status", "529").returncode == 0
        assert daemon.cli("record", "anthropic_api", "claude-sonnet-4-5").returncode == 0
    out = daemon.cli("status").stdout
    assert "claude-opus-4-5: unhealthy (failing for this model while others answer)" in out
    assert "claude-sonnet-4-5:" not in out
