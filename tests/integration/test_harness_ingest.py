"""Passive ingest against a real daemon: a tree of Claude Code transcripts and Codex rollouts in the
daemon's HOME is read once and only once — across restarts, appends, rewrites and deletions — with
resumed and forked sessions and client-reported turns counted once."""

from __future__ import annotations

import json
import os
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bhoga.protocol import DaemonStatus, StoredTurn
from tests.conftest import DaemonProcess

HARNESS = Path(__file__).resolve().parents[1] / "data" / "harness"
FAST = "ingest: {interval_s: 0.1}\n"
OTHER = "-home-dev-other"
HALF = "d00d0000-0000-4000-8000-00000000000d.jsonl"
ERRORS = "c4d50000-0000-4000-8000-00000000000c.jsonl"


def plant(home: Path, limit_epoch: int = 1790258400) -> tuple[Path, Path]:
    projects = home / ".claude" / "projects"
    codex = home / ".codex"
    shutil.copytree(HARNESS / "claude" / "projects", projects)
    shutil.copytree(HARNESS / "codex", codex)
    errors = projects / OTHER / ERRORS
    errors.write_text(errors.read_text().replace("LIMIT_EPOCH", str(limit_epoch)))
    return projects, codex


def status(daemon: DaemonProcess) -> DaemonStatus:
    with daemon.router() as router:
        return router.status()


def settled(daemon: DaemonProcess, timeout: float = 20.0) -> DaemonStatus:
    """Wait until two full passes have run since now (the second saw whatever the first left)."""
    deadline = time.monotonic() + timeout
    seen: list[Any] = []
    while time.monotonic() < deadline:
        st = status(daemon)
        ing = st.ingest
        if ing is not None and not ing.scanning and ing.last_scan_at is not None:
            if not seen or seen[-1] != ing.last_scan_at:
                seen.append(ing.last_scan_at)
            if len(seen) >= 3:
                return st
        time.sleep(0.05)
    raise AssertionError(f"ingest did not settle: {status(daemon).ingest}\n{daemon.log_text()[-3000:]}")


def turns(daemon: DaemonProcess) -> list[StoredTurn]:
    with daemon.router() as router:
        return router.turns(0, 10_000)


def by_source(daemon: DaemonProcess) -> dict[str, int]:
    out = daemon.cli("usage", "--period", "all", "--by", "agent,source", "--json")
    assert out.returncode == 0, out.stderr
    rows = {"/".join(r["key"]): r["turns"] for r in json.loads(out.stdout)["rows"]}
    # Grouped by agent alone the summary is answered from the rollups, which must agree with the
    # ledger (grouping by source reads the ledger itself): ingest keeps both.
    out = daemon.cli("usage", "--period", "all", "--by", "agent", "--json")
    summary = json.loads(out.stdout)
    assert summary["from_rollups"], summary
    agents: dict[str, int] = {}
    for key, turns in rows.items():
        agents[key.split("/")[0]] = agents.get(key.split("/")[0], 0) + turns
    assert {r["key"][0]: r["turns"] for r in summary["rows"]} == agents
    return rows


def test_a_tree_is_ingested_once_across_restarts_appends_and_rewrites(make_daemon: Any) -> None:
    daemon: DaemonProcess = make_daemon(FAST, start=False)
    projects, codex = plant(daemon.home)
    daemon.start()
    st = settled(daemon)
    assert st.ingest is not None and st.ingest.sources == ["claude-code-log", "codex-log"]
    assert by_source(daemon) == {"claude-code/claude-code-log": 6, "codex/codex-log": 7}
    ledger = turns(daemon)
    streamed = [t for t in ledger if t.request_id == "req_01A"]
    assert len(streamed) == 1 and streamed[0].output_tokens == 431 and streamed[0].provider == "claude_code"
    assert streamed[0].cost_usd is not None and not streamed[0].billed
    assert {t.provider for t in ledger if t.agent == "codex"} == {"openai-codex"}
    assert (
        sum(t.input_tokens for t in ledger if t.agent == "codex") == 4000 + 3000 + 5000 + 5000 + 5000 + 1123
    )

    daemon.restart()
    settled(daemon)
    assert len(turns(daemon)) == 13

    # The half-written last line is finished; a Codex session goes on.
    half = projects / OTHER / HALF
    full = (HARNESS / "claude" / "projects" / OTHER / HALF).read_bytes()
    line = json.loads(
        (projects / "-home-dev-proj" / "3f1c2d4e-0000-4000-8000-000000000001.jsonl")
        .read_text()
        .splitlines()[4]
    )
    line["message"]["id"], line["requestId"] = "msg_01G", "req_01G"
    with half.open("wb") as f:
        f.write(full[: full.rfind(b"\n") + 1] + json.dumps(line).encode() + b"\n")
    rollout = next((codex / "sessions").rglob("rollout-*0001.jsonl"))
    event = json.loads(rollout.read_text().splitlines()[-1])
    event["timestamp"] = "2026-09-24T12:30:00.000Z"
    event["payload"]["info"]["total_token_usage"]["input_tokens"] += 1000
    event["payload"]["info"]["last_token_usage"]["input_tokens"] = 1000
    with rollout.open("a") as f:
        f.write(json.dumps(event) + "\n")
    settled(daemon)
    assert by_source(daemon) == {"claude-code/claude-code-log": 7, "codex/codex-log": 8}

    # A file rewritten in place (new inode), one truncated and regrown, one deleted: nothing twice,
    # nothing lost.
    resumed = projects / "-home-dev-proj" / "9a7b0000-0000-4000-8000-00000000000a.jsonl"
    copy = resumed.with_suffix(".tmp")
    shutil.copy(resumed, copy)
    os.replace(copy, resumed)
    data = rollout.read_bytes()
    rollout.write_bytes(b"")
    settled(daemon)
    rollout.write_bytes(data)
    (projects / OTHER / ERRORS).unlink()
    st = settled(daemon)
    assert by_source(daemon) == {"claude-code/claude-code-log": 7, "codex/codex-log": 8}
    assert st.ingest is not None and st.ingest.files == 7 and st.ingest.last_error is None
    daemon.restart()
    settled(daemon)
    assert len(turns(daemon)) == 15


def test_a_client_reported_turn_and_its_transcript_line_count_once(make_daemon: Any) -> None:
    daemon: DaemonProcess = make_daemon(FAST)
    at = datetime(2026, 9, 24, 11, 30, 21, tzinfo=UTC)  # the log says 11:30:20.5
    with daemon.router() as router:
        # msg_01B as a harness wrapping Claude Code reported it, without a request id.
        router.record_turn(
            "claude_code",
            "claude-opus-4-7",
            3,
            210,
            {},
            200,
            cache_read_tokens=20480,
            cache_write_tokens=512,
            at=at,
            agent="wrapper",
            wait=True,
        )
        # msg_01D, reported with Anthropic's request id (and the client's own idea of the time).
        router.call(
            "turns.record",
            {
                "provider": "claude_code",
                "model": "claude-opus-4-7",
                "input_tokens": 4,
                "output_tokens": 88,
                "request_id": "req_01D",
                "agent": "wrapper",
                "at": "2026-09-24T13:09:00Z",
            },
        )
    plant(daemon.home)
    settled(daemon)
    assert by_source(daemon) == {"claude-code/claude-code-log": 4, "codex/codex-log": 7, "wrapper/client": 2}
    keys = {t.request_id for t in turns(daemon) if t.agent == "claude-code"}
    assert keys == {"req_01A", "req_01C", "req_01E", "req_01F"}
    st = status(daemon)
    assert st.ingest is not None and st.ingest.duplicates >= 4


def test_a_limit_reached_line_sets_a_cooldown(make_daemon: Any) -> None:
    daemon: DaemonProcess = make_daemon(FAST, start=False)
    until = int((datetime.now(UTC) + timedelta(hours=2)).timestamp())
    plant(daemon.home, limit_epoch=until)
    daemon.start()
    settled(daemon)
    with daemon.router() as router:
        q = router.quotas()["claude_code:*"]
    assert q.cooldown_until is not None and int(q.cooldown_until.timestamp()) == until
    assert "usage limit" in (q.cooldown_reason or "")


def test_changes_are_noticed_without_waiting_for_the_slow_poll(make_daemon: Any) -> None:
    """With inotify (Linux) a new session folder and its appended lines are read within seconds, though
    the slow poll is an hour away."""
    daemon: DaemonProcess = make_daemon("ingest: {interval_s: 3600}\n", start=False)
    projects = daemon.home / ".claude" / "projects"
    projects.mkdir(parents=True)
    daemon.start()
    src = HARNESS / "claude" / "projects" / "-home-dev-proj" / "3f1c2d4e-0000-4000-8000-000000000001.jsonl"
    lines = src.read_bytes().splitlines(keepends=True)
    time.sleep(1.0)  # the first pass has run and is waiting
    # A new project folder, written at once (as Claude Code does), before anything watches it.
    folder = projects / "-home-dev-new"
    folder.mkdir()
    target = folder / "s.jsonl"
    with target.open("wb") as f:
        f.writelines(lines[:3])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(turns(daemon)) < 1:
        time.sleep(0.1)
    assert [t.request_id for t in turns(daemon)] == ["req_01A"]
    with target.open("ab") as f:
        f.writelines(lines[3:])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(turns(daemon)) < 3:
        time.sleep(0.1)
    assert sorted(t.request_id or "" for t in turns(daemon)) == ["req_01A", "req_01B", "req_01C"]
    assert next(t for t in turns(daemon) if t.request_id == "req_01A").output_tokens == 431


def test_a_client_reporting_after_the_log_was_read_replaces_the_log_row(make_daemon: Any) -> None:
    daemon: DaemonProcess = make_daemon(FAST, start=False)
    projects, _ = plant(daemon.home)
    daemon.start()
    settled(daemon)
    assert by_source(daemon)["claude-code/claude-code-log"] == 6
    with daemon.router() as router:
        # msg_01D by request id; msg_01E by its model, tokens and time (no request id).
        router.call(
            "turns.record",
            {
                "provider": "claude_code",
                "model": "claude-opus-4-7",
                "input_tokens": 4,
                "output_tokens": 88,
                "cache_read_tokens": 22000,
                "cache_write_tokens": 300,
                "request_id": "req_01D",
                "agent": "wrapper",
            },
        )
        router.record_turn(
            "claude_code",
            "claude-sonnet-4-6",
            10,
            20,
            {},
            200,
            at=datetime(2026, 9, 24, 14, 2, 40, tzinfo=UTC),
            agent="wrapper",
            wait=True,
        )
    assert by_source(daemon) == {"claude-code/claude-code-log": 4, "codex/codex-log": 7, "wrapper/client": 2}
    assert status(daemon).turns_stored == 13
    # The logs read again from the start (rewritten): still once.
    for path in projects.rglob("*.jsonl"):
        data = path.read_bytes()
        path.unlink()
        path.write_bytes(data)
    daemon.restart()
    settled(daemon)
    assert by_source(daemon) == {"claude-code/claude-code-log": 4, "codex/codex-log": 7, "wrapper/client": 2}
