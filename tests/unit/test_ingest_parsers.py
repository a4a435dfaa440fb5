"""The transcript and rollout parsers, and reading a file in batches, on the fixtures in
tests/data/harness (see its README for where each shape comes from)."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import given, settings, strategies as st

from bhoga.protocol import TurnSource
from bhogad.ingest import claude, codex
from bhogad.ingest.scanner import Seen, read_batch

HARNESS = Path(__file__).resolve().parents[1] / "data" / "harness"
PROJECTS = HARNESS / "claude" / "projects"
SESSIONS = HARNESS / "codex" / "sessions" / "2026" / "09" / "24"


def claude_items(path: Path) -> list[claude.ClaudeCall | claude.LimitHit]:
    return [item for line in path.read_bytes().splitlines() if (item := claude.parse_line(line)) is not None]


def codex_calls(path: Path, ctx: codex.Context | None = None) -> list[codex.CodexCall]:
    ctx = ctx or codex.Context()
    return [c for line in path.read_bytes().splitlines() if (c := codex.parse_line(line, ctx)) is not None]


def test_claude_normal_session_streamed_message_is_one_key() -> None:
    items = claude_items(PROJECTS / "-home-dev-proj" / "3f1c2d4e-0000-4000-8000-000000000001.jsonl")
    calls = [i for i in items if isinstance(i, claude.ClaudeCall)]
    assert [c.dedupe_key for c in calls] == [
        "claude:msg_01A:req_01A",
        "claude:msg_01A:req_01A",
        "claude:msg_01B:req_01B",
        "claude:msg_01C:req_01C",
    ]
    first, second = calls[0], calls[1]
    assert (first.output_tokens, second.output_tokens) == (12, 431)
    assert (second.input_tokens, second.cache_read_tokens, second.cache_write_tokens) == (6, 18432, 2048)
    assert second.model == "claude-opus-4-7" and second.request_id == "req_01A"
    assert second.session == "3f1c2d4e-0000-4000-8000-000000000001"
    assert calls[3].model == "claude-haiku-4-5"  # a sidechain call is a real call


def test_claude_errors_synthetic_and_limit() -> None:
    path = PROJECTS / "-home-dev-other" / "c4d50000-0000-4000-8000-00000000000c.jsonl"
    text = path.read_text().replace("LIMIT_EPOCH", "1790258400")
    items = [i for line in text.encode().splitlines() if (i := claude.parse_line(line)) is not None]
    assert len(items) == 2
    hit, call = items
    assert isinstance(hit, claude.LimitHit) and int(hit.until.timestamp()) == 1790258400
    assert isinstance(call, claude.ClaudeCall) and call.dedupe_key == "claude:msg_01E:req_01E"
    # The placeholder as written is no epoch: nothing is made up from it.
    assert not any(isinstance(i, claude.LimitHit) for i in claude_items(path))


def test_claude_provider_fixture_keeps_the_last_streamed_line() -> None:
    path = HARNESS.parent / "providers" / "claude-project-session.jsonl"
    calls = [i for i in claude_items(path) if isinstance(i, claude.ClaudeCall)]
    assert {c.dedupe_key for c in calls} == {
        "claude:msg_01FIXTURE000000000000000A1:req_011FIXTURE00000000000000A1"
    }
    assert max(c.output_tokens for c in calls) == 431


def test_claude_rejects_absurd_counts_and_missing_time() -> None:
    line = {
        "type": "assistant",
        "timestamp": "2026-09-24T11:30:04Z",
        "requestId": "r",
        "message": {
            "id": "m",
            "model": "claude-opus-4-7",
            "usage": {"input_tokens": 10**12, "output_tokens": 1},
        },
    }
    assert claude.parse_line(json.dumps(line).encode()) is None
    line["message"]["usage"] = {"input_tokens": -1}  # type: ignore[index]
    assert claude.parse_line(json.dumps(line).encode()) is None
    del line["timestamp"]
    line["message"]["usage"] = {"input_tokens": 1}  # type: ignore[index]
    assert claude.parse_line(json.dumps(line).encode()) is None


def test_codex_normal_session_uses_last_usage_and_skips_repeats() -> None:
    calls = codex_calls(SESSIONS / "rollout-2026-09-24T11-40-00-019f95ae-0000-7000-8000-000000000001.jsonl")
    assert [(c.input_tokens, c.cache_read_tokens, c.output_tokens) for c in calls] == [
        (4000, 8000, 400),
        (3000, 11000, 650),
        (5000, 15000, 900),
    ]
    assert [c.model for c in calls] == ["gpt-5.5", "gpt-5.5", "gpt-5.5-codex"]
    assert {c.session for c in calls} == {"019f95ae-0000-7000-8000-000000000001"}


def test_codex_fork_and_subagent_replays_are_not_new_calls() -> None:
    parent = codex_calls(SESSIONS / "rollout-2026-09-24T11-40-00-019f95ae-0000-7000-8000-000000000001.jsonl")
    fork = codex_calls(SESSIONS / "rollout-2026-09-24T12-00-00-019f95ae-0000-7000-8000-0000000000f0.jsonl")
    sub = codex_calls(SESSIONS / "rollout-2026-09-24T11-50-30-019f95ae-0000-7000-8000-0000000000a9.jsonl")
    assert len(fork) == 1 and fork[0].input_tokens == 5000 and fork[0].cache_read_tokens == 25000
    assert len(sub) == 1 and sub[0].input_tokens == 5000 and sub[0].model == "gpt-5.5-codex"
    keys = [c.dedupe_key for c in parent + fork + sub]
    assert len(keys) == len(set(keys)) == 5


def test_codex_replays_share_keys_even_without_fork_marks() -> None:
    # A fork whose session_meta does not say so still replays the same events: same keys.
    fork = SESSIONS / "rollout-2026-09-24T12-00-00-019f95ae-0000-7000-8000-0000000000f0.jsonl"
    lines = [line for line in fork.read_bytes().splitlines() if b"session_meta" not in line]
    ctx = codex.Context()
    calls = [c for line in lines if (c := codex.parse_line(line, ctx)) is not None]
    parent = codex_calls(SESSIONS / "rollout-2026-09-24T11-40-00-019f95ae-0000-7000-8000-000000000001.jsonl")
    assert {c.dedupe_key for c in parent} < {c.dedupe_key for c in calls}


def test_codex_legacy_rollouts_without_model() -> None:
    calls = codex_calls(HARNESS / "codex" / "archived_sessions" / "rollout-2025-09-20T09-00-00-legacy.jsonl")
    assert [(c.input_tokens, c.output_tokens, c.model) for c in calls] == [
        (1000, 100, "unknown"),
        (123, 0, "unknown"),
    ]


def test_codex_totals_only_give_differences() -> None:
    ctx = codex.Context(model="gpt-5")

    def event(ts: str, total: tuple[int, int, int, int]) -> bytes:
        names = ("input_tokens", "cached_input_tokens", "output_tokens", "reasoning_output_tokens")
        usage = dict(zip(names, total, strict=True))
        payload = {"type": "token_count", "info": {"total_token_usage": usage}}
        return json.dumps({"timestamp": ts, "type": "event_msg", "payload": payload}).encode()

    first = codex.parse_line(event("2026-01-01T00:00:00Z", (100, 0, 10, 0)), ctx)
    second = codex.parse_line(event("2026-01-01T00:01:00Z", (250, 50, 30, 5)), ctx)
    assert first is not None and (first.input_tokens, first.output_tokens) == (100, 10)
    assert second is not None and (second.input_tokens, second.cache_read_tokens, second.output_tokens) == (
        100,
        50,
        20,
    )


@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=400)
    | st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(
                st.sampled_from(
                    [
                        "type",
                        "message",
                        "usage",
                        "timestamp",
                        "payload",
                        "info",
                        "model",
                        "id",
                        "requestId",
                        "input_tokens",
                        "last_token_usage",
                        "total_token_usage",
                    ]
                ),
                inner,
                max_size=5,
            )
        ),
        max_leaves=20,
    ).map(lambda v: json.dumps(v).encode())
)
def test_parsers_never_raise(line: bytes) -> None:
    claude.parse_line(line + b' "usage"')
    codex.parse_line(line + b' "token_count"', codex.Context())


def _seen(path: Path, source: TurnSource) -> Seen:
    st_ = path.stat()
    return Seen(str(path), source, st_.st_dev, st_.st_ino, st_.st_size, st_.st_mtime_ns)


def test_read_batch_stops_at_a_half_written_line(tmp_path: Path) -> None:
    src = PROJECTS / "-home-dev-other" / "d00d0000-0000-4000-8000-00000000000d.jsonl"
    path = tmp_path / "s.jsonl"
    path.write_bytes(src.read_bytes())
    complete = src.read_bytes().rfind(b"\n") + 1
    parsed = read_batch(_seen(path, TurnSource.CLAUDE_CODE_LOG), 0, None, 1 << 20)
    assert parsed.offset == complete and [c.dedupe_key for c in parsed.calls] == ["claude:msg_01F:req_01F"]
    again = read_batch(_seen(path, TurnSource.CLAUDE_CODE_LOG), parsed.offset, None, 1 << 20)
    assert again.offset == complete and not again.calls
    # The harness finishes the line: the rest of it is read, once.
    line = (
        (PROJECTS / "-home-dev-proj" / "3f1c2d4e-0000-4000-8000-000000000001.jsonl")
        .read_bytes()
        .splitlines()[4]
    )
    with path.open("r+b") as f:
        f.truncate(complete)
        f.seek(0, os.SEEK_END)
        f.write(line + b"\n")
    done = read_batch(_seen(path, TurnSource.CLAUDE_CODE_LOG), parsed.offset, None, 1 << 20)
    assert [c.dedupe_key for c in done.calls] == ["claude:msg_01B:req_01B"]


def test_read_batch_in_small_steps_reads_every_line_once(tmp_path: Path) -> None:
    src = SESSIONS / "rollout-2026-09-24T11-40-00-019f95ae-0000-7000-8000-000000000001.jsonl"
    seen = _seen(src, TurnSource.CODEX_LOG)
    offset, context, calls = 0, None, []
    while offset < seen.size:
        parsed = read_batch(seen, offset, context, 4096)
        assert parsed.offset > offset
        offset, context = parsed.offset, parsed.context
        calls += parsed.calls
    assert [c.input_tokens for c in calls] == [4000, 3000, 5000]


def test_read_batch_skips_a_line_longer_than_a_batch(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    good = (
        (PROJECTS / "-home-dev-proj" / "3f1c2d4e-0000-4000-8000-000000000001.jsonl")
        .read_bytes()
        .splitlines()[4]
    )
    path.write_bytes(b'{"pad":"' + b"x" * 20000 + b'"}\n' + good + b"\n")
    seen = _seen(path, TurnSource.CLAUDE_CODE_LOG)
    first = read_batch(seen, 0, None, 4096)
    assert first.offset == 20000 + 11 and not first.calls
    second = read_batch(seen, first.offset, None, 4096)
    assert [c.dedupe_key for c in second.calls] == ["claude:msg_01B:req_01B"]


def test_claude_one_hour_cache_writes_are_read() -> None:
    line = {
        "type": "assistant",
        "timestamp": "2026-09-24T11:30:04Z",
        "requestId": "r",
        "message": {
            "id": "m",
            "model": "claude-opus-4-7",
            "usage": {
                "input_tokens": 1,
                "output_tokens": 1,
                "cache_creation_input_tokens": 3000,
                "cache_creation": {"ephemeral_5m_input_tokens": 1000, "ephemeral_1h_input_tokens": 2000},
            },
        },
    }
    call = claude.parse_line(json.dumps(line).encode())
    assert isinstance(call, claude.ClaudeCall)
    assert (call.cache_write_tokens, call.cache_write_1h_tokens) == (3000, 2000)


def test_one_hour_cache_writes_are_priced_at_twice_input(tmp_path: Path) -> None:
    from bhogad import config
    from bhogad.domain.keeper import QuotaKeeper
    from bhogad.ingest.scanner import Scanner
    from bhogad.storage.store import Store

    store = Store.open(tmp_path / "state")
    try:
        keeper = QuotaKeeper(config.build(), store)
        scanner = Scanner(keeper, {}, tmp_path)
        base = dict(
            dedupe_key="k",
            at=datetime(2026, 9, 24, 11, 30, tzinfo=UTC),
            model="claude-opus-4-5",
            input_tokens=0,
            output_tokens=0,
            cache_read_tokens=0,
            cache_write_tokens=1_000_000,
            session=None,
            request_id=None,
            cost_usd=None,
        )
        five = scanner._row(TurnSource.CLAUDE_CODE_LOG, claude.ClaudeCall(**base)).turn  # type: ignore[arg-type]
        hour = scanner._row(
            TurnSource.CLAUDE_CODE_LOG,
            claude.ClaudeCall(**base, cache_write_1h_tokens=1_000_000),  # type: ignore[arg-type]
        ).turn
        # Opus 4.5: $5 input, so a million 5-minute writes cost $6.25 and 1-hour writes $10.
        assert five.cost_usd is not None and abs(five.cost_usd - 6.25) < 1e-9
        assert hour.cost_usd is not None and abs(hour.cost_usd - 10.0) < 1e-9
        assert hour.pricing is not None and "1-hour" in hour.pricing
    finally:
        store.close()
