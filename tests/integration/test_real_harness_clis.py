"""The real ``claude`` and ``codex`` CLIs (from npm), run offline against local fake model APIs, write
the logs the daemon ingests: every call they made lands in the ledger once, with its tokens.

The npm install (into ``.cache/npm-harness``, or ``BHOGA_HARNESS_NPM``) is the only step that needs
the network. It skips, saying why, only when npm is missing or its registry cannot be reached (never
on CI). The CLIs then talk only to 127.0.0.1: Claude Code to a fake Messages API (``ANTHROPIC_BASE_URL``),
Codex to a fake Responses API configured as a custom model provider.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DaemonProcess
from tests.fakes.http_server import FakeServer, Reply, Request, serving

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("BHOGA_HARNESS_NPM") or REPO / ".cache" / "npm-harness")
PINS = {"claude": "@anthropic-ai/claude-code@2.1.197", "codex": "@openai/codex@0.171.0"}
QUIET = {
    "DISABLE_TELEMETRY": "1",
    "DISABLE_ERROR_REPORTING": "1",
    "DISABLE_AUTOUPDATER": "1",
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "NO_COLOR": "1",
}


def _install(name: str) -> Path:
    npm = shutil.which("npm")
    if npm is None:
        if os.environ.get("CI"):
            pytest.fail("npm is needed for the real-CLI tests")
        pytest.skip("npm is not installed, so the real claude/codex CLIs cannot be")
    prefix = CACHE / name
    exe = prefix / "node_modules" / ".bin" / name
    stamp = prefix / ".bhoga-stamp"
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel runs share the cache; the stamp is written last
        if not (stamp.exists() and stamp.read_text() == PINS[name] and exe.exists()):
            shutil.rmtree(prefix, ignore_errors=True)
            prefix.mkdir(parents=True)
            proc = subprocess.run(
                [npm, "install", "--no-audit", "--no-fund", "--prefix", str(prefix), PINS[name]],
                capture_output=True,
                text=True,
                timeout=900,
            )
            if proc.returncode != 0 or not exe.exists():
                shutil.rmtree(prefix, ignore_errors=True)
                why = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
                if os.environ.get("CI"):
                    pytest.fail(f"npm install {PINS[name]} failed: {why[0]}")
                pytest.skip(f"npm install {PINS[name]} failed (registry unreachable?): {why[0]}")
            stamp.write_text(PINS[name])
    return exe


@pytest.fixture(scope="session")
def claude_cli() -> Path:
    return _install("claude")


@pytest.fixture(scope="session")
def codex_cli() -> Path:
    return _install("codex")


def _events(events: list[tuple[str, dict[str, Any]]]) -> bytes:
    return b"".join(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode() for name, data in events)


def anthropic_reply(i: int) -> bytes:
    usage = {
        "input_tokens": 11,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": 1,
    }
    message = {
        "id": f"msg_fake_{i:04d}",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-6",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": usage,
    }
    return _events(
        [
            ("message_start", {"type": "message_start", "message": message}),
            (
                "content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            ),
            (
                "content_block_delta",
                {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "pong"}},
            ),
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": 7},
                },
            ),
            ("message_stop", {"type": "message_stop"}),
        ]
    )


def responses_reply(i: int) -> bytes:
    rid = f"resp_fake_{i:04d}"
    usage = {
        "input_tokens": 1200,
        "input_tokens_details": {"cached_tokens": 1000},
        "output_tokens": 30,
        "output_tokens_details": {"reasoning_tokens": 10},
        "total_tokens": 1230,
    }
    item = {
        "type": "message",
        "role": "assistant",
        "id": f"msg_{i}",
        "content": [{"type": "output_text", "text": "pong"}],
    }
    return _events(
        [
            ("response.created", {"type": "response.created", "response": {"id": rid}}),
            ("response.output_item.done", {"type": "response.output_item.done", "item": item}),
            ("response.completed", {"type": "response.completed", "response": {"id": rid, "usage": usage}}),
        ]
    )


@pytest.fixture
def model_api() -> Iterator[FakeServer]:
    counter = itertools.count(1)

    def answer(request: Request) -> Reply:
        path = request.path.split("?")[0]
        if path == "/v1/messages":
            i = next(counter)
            return Reply(
                body=anthropic_reply(i),
                headers={"content-type": "text/event-stream", "request-id": f"req_fake_{i:04d}"},
            )
        if path == "/v1/responses":
            return Reply(body=responses_reply(next(counter)), headers={"content-type": "text/event-stream"})
        return Reply(
            status=404, body={"type": "error", "error": {"type": "not_found_error", "message": path}}
        )

    with serving() as server:
        server.guard = answer
        yield server


def ledger(daemon: DaemonProcess, agent: str, count: int, timeout: float = 30.0) -> list[Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with daemon.router() as router:
            found = [t for t in router.turns(0, 1000) if t.agent == agent]
        if len(found) >= count:
            time.sleep(0.5)  # and no more than that arrives
            with daemon.router() as router:
                return [t for t in router.turns(0, 1000) if t.agent == agent]
        time.sleep(0.1)
    raise AssertionError(f"{agent}: expected {count} turns\n{daemon.log_text()[-2000:]}")


def run(cmd: list[str], daemon: DaemonProcess, cwd: Path, env: dict[str, str]) -> None:
    full = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(daemon.home), **QUIET, **env}
    proc = subprocess.run(
        cmd, cwd=cwd, env=full, capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL
    )
    assert proc.returncode == 0 and "pong" in proc.stdout, f"{cmd[0]} failed:\n{proc.stdout}\n{proc.stderr}"


def test_real_claude_code_calls_are_ingested_once(
    claude_cli: Path, model_api: FakeServer, make_daemon: Any, tmp_root: Path
) -> None:
    daemon: DaemonProcess = make_daemon("ingest: {interval_s: 0.1, claude_provider: anthropic_api}\n")
    project = tmp_root / "proj"
    project.mkdir()
    env = {"ANTHROPIC_API_KEY": "sk-ant-test-not-real", "ANTHROPIC_BASE_URL": model_api.url}
    run([str(claude_cli), "-p", "ping"], daemon, project, env)
    # The same session continued: Claude Code carries the history on, the daemon counts each call once.
    run([str(claude_cli), "-p", "--continue", "ping again"], daemon, project, env)
    calls = len(model_api.to("/v1/messages"))
    assert calls >= 2
    turns = ledger(daemon, "claude-code", calls)
    assert len(turns) == calls
    assert {t.request_id for t in turns} == {f"req_fake_{i:04d}" for i in range(1, calls + 1)}
    assert all(
        (t.model, t.input_tokens, t.output_tokens, t.provider)
        == ("claude-sonnet-4-6", 11, 7, "anthropic_api")
        for t in turns
    )
    assert all(t.source == "claude-code-log" and t.billed and t.cost_usd for t in turns)
    assert list((daemon.home / ".claude" / "projects").rglob("*.jsonl"))


def test_real_codex_calls_are_ingested_once(
    codex_cli: Path, model_api: FakeServer, make_daemon: Any, tmp_root: Path
) -> None:
    daemon: DaemonProcess = make_daemon("ingest: {interval_s: 0.1}\n")
    codex_home = daemon.home / ".codex"
    codex_home.mkdir()
    (codex_home / "config.toml").write_text(
        'model = "gpt-5.5"\nmodel_provider = "fake"\n\n[model_providers.fake]\nname = "fake"\n'
        f'base_url = "{model_api.url}/v1"\nwire_api = "responses"\nenv_key = "FAKE_OPENAI_KEY"\n'
    )
    project = tmp_root / "proj"
    project.mkdir()
    env = {"CODEX_HOME": str(codex_home), "FAKE_OPENAI_KEY": "sk-test-not-real"}
    run([str(codex_cli), "exec", "--skip-git-repo-check", "ping"], daemon, project, env)
    calls = len(model_api.to("/v1/responses"))
    assert calls >= 1
    turns = ledger(daemon, "codex", calls)
    assert len(turns) == calls
    t = turns[0]
    # 1200 input of which 1000 cached: 200 fresh, 1000 cache reads; output includes reasoning.
    assert (t.model, t.input_tokens, t.cache_read_tokens, t.output_tokens) == ("gpt-5.5", 200, 1000, 30)
    assert (t.provider, t.source) == ("openai-codex", "codex-log")
