"""Many processes at once, and a daemon killed mid-stream: nothing acknowledged may be lost."""

from __future__ import annotations

import multiprocessing
import signal
import time
from collections import defaultdict
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

from bhoga import BhogaError, Router
from tests.conftest import DaemonProcess

WORKERS = 32
TURNS = 500


def _worker(socket_path: str, index: int, inbox: Queue[Any], outbox: Queue[Any], results: Queue[Any]) -> None:
    """Record turns, publish quota values for a neighbour to read, and read the neighbour's values."""
    errors: list[str] = []
    acked: list[int] = []
    with Router(socket_path=socket_path, timeout=60) as router:
        for j in range(TURNS):
            turn_id = router.record_turn(
                "anthropic_api",
                "claude-opus-4",
                j,
                1,
                {"anthropic-ratelimit-requests-limit": "100"},
                session=f"w{index}",
                wait=True,
            )
            assert turn_id is not None
            acked.append(turn_id)
            if j % 50 == 0:
                pct = j / 5.0
                router.set_quota("anthropic_api", 100 - pct, model=f"scope-{index}")
                outbox.put((index, pct))  # "I have set this": the neighbour must see it (or newer)
            while not inbox.empty():
                sender, pct = inbox.get()
                seen = router.quotas()["anthropic_api:*"].windows[f"quota/scope-{sender}"].pct_used
                if seen < pct:
                    errors.append(f"w{index} read {seen} for scope-{sender} after it set {pct}")
    results.put((index, acked, errors))


def test_dozens_of_processes_lose_nothing_and_read_each_others_writes(daemon: DaemonProcess) -> None:
    ctx = multiprocessing.get_context("spawn")
    mailboxes: list[Queue[Any]] = [ctx.Queue() for _ in range(WORKERS)]
    results: Queue[Any] = ctx.Queue()
    procs = [
        ctx.Process(
            target=_worker,
            args=(str(daemon.socket), i, mailboxes[i], mailboxes[(i + 1) % WORKERS], results),
        )
        for i in range(WORKERS)
    ]
    for p in procs:
        p.start()
    collected = [results.get(timeout=600) for _ in range(WORKERS)]
    for p in procs:
        p.join(60)
        assert p.exitcode == 0

    errors = [e for _, _, errs in collected for e in errs]
    assert errors == []
    acked = {turn_id for _, ids, _ in collected for turn_id in ids}
    assert len(acked) == WORKERS * TURNS

    with daemon.router() as router:
        ledger = []
        after = 0
        while batch := router.turns(after_id=after, limit=10_000):
            ledger.extend(batch)
            after = batch[-1].id
        quota = router.quotas()["anthropic_api:*"]
    assert {t.id for t in ledger} == acked  # exactly every acknowledged turn: none lost, none invented
    per_session: dict[str, list[int]] = defaultdict(list)
    for t in ledger:
        per_session[t.session or ""].append(t.input_tokens)
    assert per_session == {f"w{i}": list(range(TURNS)) for i in range(WORKERS)}  # each in its own order
    assert quota.n_requests == WORKERS * TURNS
    assert quota.consumed == WORKERS * sum(j + 1 for j in range(TURNS))


def _recorder(socket_path: str, index: int, acked_file: str) -> None:
    with Router(socket_path=socket_path, timeout=5) as router, open(acked_file, "w") as out:
        for j in range(100_000):
            try:
                turn_id = router.record_turn("openai_api", "gpt-5.4", j, 2, session=f"r{index}", wait=True)
            except (BhogaError, OSError):
                return
            out.write(f"{turn_id} {j}\n")
            out.flush()


def test_kill_9_mid_stream_keeps_every_acknowledged_turn(daemon: DaemonProcess, tmp_root: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    files = [tmp_root / f"acked-{i}.txt" for i in range(6)]
    procs = [ctx.Process(target=_recorder, args=(str(daemon.socket), i, str(f))) for i, f in enumerate(files)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + 60
    while sum(len(f.read_text().splitlines()) for f in files if f.exists()) < 2000:
        assert time.monotonic() < deadline, "recorders made no progress"
        time.sleep(0.05)
    daemon.stop(signal.SIGKILL)
    for p in procs:
        p.join(30)

    acked: dict[int, tuple[str, int]] = {}
    for i, f in enumerate(files):
        for line in f.read_text().splitlines():
            turn_id, j = line.split()
            acked[int(turn_id)] = (f"r{i}", int(j))
    assert len(acked) >= 2000

    daemon.start()
    with daemon.router() as router:
        stored = {t.id: (t.session, t.input_tokens) for t in router.turns(limit=10_000)}
        while len(stored) % 10_000 == 0 and stored:
            more = router.turns(after_id=max(stored), limit=10_000)
            if not more:
                break
            stored.update({t.id: (t.session, t.input_tokens) for t in more})
    missing = {k: v for k, v in acked.items() if stored.get(k) != v}
    assert missing == {}
