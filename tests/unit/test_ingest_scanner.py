"""The scanner, in-process over a real store: however a harness's writes are cut up between passes
(half lines, appends, a truncation and rewrite, a restart in between), every call is stored once."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import anyio
from hypothesis import HealthCheck, given, settings, strategies as st

from bhogad import config
from bhogad.domain.keeper import QuotaKeeper
from bhogad.ingest.scanner import Scanner, roots
from bhogad.storage import harness
from bhogad.storage.store import Store

HARNESS = Path(__file__).resolve().parents[1] / "data" / "harness"
CLAUDE = HARNESS / "claude" / "projects" / "-home-dev-proj"
CODEX = HARNESS / "codex" / "sessions" / "2026" / "09" / "24"
SOURCES = {
    "claude": (CLAUDE / "3f1c2d4e-0000-4000-8000-000000000001.jsonl", ".claude/projects/p/s.jsonl"),
    "resumed": (CLAUDE / "9a7b0000-0000-4000-8000-00000000000a.jsonl", ".claude/projects/p/r.jsonl"),
    "codex": (
        CODEX / "rollout-2026-09-24T11-40-00-019f95ae-0000-7000-8000-000000000001.jsonl",
        ".codex/sessions/2026/09/24/rollout-a.jsonl",
    ),
}
#: What one full read of all three files stores: (request id or model, input, output).
EXPECTED = sorted(
    [
        ("req_01A", 6, 431),
        ("req_01B", 3, 210),
        ("req_01C", 1200, 95),
        ("req_01D", 4, 88),
        ("gpt-5.5", 4000, 400),
        ("gpt-5.5", 3000, 650),
        ("gpt-5.5-codex", 5000, 900),
    ]
)


_CLAUDE_NEW = (
    b'{"type":"assistant","timestamp":"2026-09-25T09:00:00Z","sessionId":"n","requestId":"req_NEW",'
    b'"message":{"id":"msg_NEW","model":"claude-opus-4-7","usage":{"input_tokens":5,"output_tokens":50}}}\n'
)
_CODEX_NEW = (
    b'{"timestamp":"2026-09-25T09:00:00Z","type":"turn_context","payload":{"model":"gpt-5.5"}}\n'
    b'{"timestamp":"2026-09-25T09:00:05Z","type":"event_msg","payload":{"type":"token_count","info":'
    b'{"last_token_usage":{"input_tokens":900,"cached_input_tokens":0,"output_tokens":9}}}}\n'
)
#: What a harness writes first into a file it truncated, and the call that adds.
REWRITTEN = {
    "claude": (_CLAUDE_NEW, ("req_NEW", 5, 50)),
    "resumed": (_CLAUDE_NEW, ("req_NEW", 5, 50)),
    "codex": (_CODEX_NEW, ("gpt-5.5", 900, 9)),
}


def ledger(store: Store) -> list[tuple[str, int, int]]:
    rows = store.read(
        lambda c: c.execute(
            "SELECT coalesce(request_id, model), input_tokens, output_tokens FROM turns"
        ).fetchall()
    )
    return sorted((str(a), int(b), int(c)) for a, b, c in rows)


async def one_pass(home: Path, state: Path) -> None:
    """A daemon's life in miniature: open the store, load marks, one pass, close."""
    store = Store.open(state)
    try:
        keeper = QuotaKeeper(config.build(), store)
        keeper.load()
        scanner = Scanner(keeper, {}, home)
        scanner.marks = store.read(harness.load_marks)
        async with anyio.create_task_group() as tg:
            tg.start_soon(keeper.writer.run)
            await scanner.scan(roots(keeper.cfg.ingest, {}, home))
            tg.cancel_scope.cancel()
    finally:
        store.close()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cuts=st.dictionaries(st.sampled_from(sorted(SOURCES)), st.lists(st.floats(0, 1), max_size=4)),
    rewrite=st.sampled_from([None, *sorted(SOURCES)]),
)
def test_any_way_of_writing_stores_each_call_once(cuts: dict[str, list[float]], rewrite: str | None) -> None:
    root = Path(tempfile.mkdtemp(prefix="bhg-scan-", dir="/tmp"))
    try:
        home, state = root / "home", root / "state"
        data = {name: src.read_bytes() for name, (src, _) in SOURCES.items()}
        targets = {name: home / rel for name, (_, rel) in SOURCES.items()}
        for target in targets.values():
            target.parent.mkdir(parents=True, exist_ok=True)
        # Each file grows in steps ending at arbitrary bytes (mid-line included); a pass after each.
        steps: list[tuple[str, int]] = []
        for name, points in cuts.items():
            steps += [(name, int(p * len(data[name]))) for p in sorted(points)]
        steps += [(name, len(data[name])) for name in SOURCES]
        for name, upto in steps:
            target = targets[name]
            have = target.stat().st_size if target.exists() else 0
            if upto > have:
                with target.open("ab") as f:
                    f.write(data[name][have:upto])
            anyio.run(one_pass, home, state)
        expected = list(EXPECTED)
        if rewrite is not None:
            # Truncated (a pass sees it empty) ...
            targets[rewrite].write_bytes(b"")
            anyio.run(one_pass, home, state)
            content, call = REWRITTEN[rewrite]
            # Written again in place, past where the old file had been read to, before the next
            # pass: it must not look like an append.
            targets[rewrite].write_bytes(content + data[rewrite])
            anyio.run(one_pass, home, state)
            expected = sorted([*expected, call])
        store = Store.open(state)
        try:
            assert ledger(store) == expected
        finally:
            store.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
