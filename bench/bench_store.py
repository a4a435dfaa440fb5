"""The ledger at a busy team's scale: size, restart, usage summaries and turns.list by session.

Builds synthetic ledgers (turns spread over the past year: 4 providers, 6 models, 8 agents, sessions of
about 50 turns) through the real store code, so the rollups and indexes are the daemon's own. Then, for
each size, every figure beside its floor from the same run, as a ratio:

* DB bytes per turn — beside the same rows in a bare SQLite table (no indexes, no rollups).
* restart to first answer — a real ``bhogad`` started on the ledger until ``daemon.hello`` answers,
  beside a Python process that opens the same file with sqlite3 and reads ``max(id)``.
* ``usage`` today / month / all (by provider) and ``turns.list`` by session (a page of 1000), through
  the real client and daemon — beside the same query run directly in sqlite3 over the raw turns.

Run: ``.venv/bin/python bench/bench_store.py`` (100k and 1M turns); ``--sizes 100000`` for a quick run;
``--large`` adds 3M (a few minutes and ~600 MB of disk; CI never runs it).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bhoga import Router
from bhoga.protocol import StoredTurn
from bhogad import config
from bhogad.domain.keeper import QuotaKeeper
from bhogad.storage.store import Store

PROVIDERS = ["claude_code", "anthropic_api", "openai-codex", "openai_api"]
MODELS = ["claude-opus-4-5", "claude-sonnet-4-5", "claude-haiku-4-5", "gpt-5.4", "gpt-5.4-mini", "o3"]
AGENTS = [None, "ci", "review", "nightly", "dev-a", "dev-b", "dev-c", "triage"]
BATCH = 20_000


def build(state: Path, turns: int, now: datetime) -> None:
    rng = random.Random(turns)
    store = Store.open(state)
    try:
        year = 365 * 24 * 3600
        next_id = 1
        while next_id <= turns:
            batch = []
            for i in range(next_id, min(turns, next_id + BATCH - 1) + 1):
                provider = rng.choice(PROVIDERS)
                billed = provider.endswith("_api")
                batch.append(
                    StoredTurn(
                        id=i,
                        at=now - timedelta(seconds=rng.randrange(year)),
                        provider=provider,
                        model=rng.choice(MODELS),
                        input_tokens=rng.randrange(50_000),
                        output_tokens=rng.randrange(4_000),
                        cache_read_tokens=rng.randrange(100_000),
                        cache_write_tokens=rng.randrange(10_000),
                        status_code=200 if rng.random() < 0.97 else 429,
                        session=f"sess-{rng.randrange(max(1, turns // 50)):08x}",
                        agent=rng.choice(AGENTS),
                        latency_ms=rng.random() * 9000,
                        cost_usd=round(rng.random() * 0.5, 6),
                        pricing="built-in 2026-10: claude-opus-4-5",
                        billed=billed,
                    )
                )
            store.commit(batch, [])
            next_id += len(batch)
        store._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        store.close()


CFG = config.build({})


def load(state: Path) -> None:
    store = Store.open(state)
    try:
        QuotaKeeper(CFG, store).load()
    finally:
        store.close()


def floor_size(db: Path, scratch: Path) -> int:
    """The same rows in a plain table: what the data alone takes in SQLite."""
    bare = scratch / "bare.db"
    conn = sqlite3.connect(bare)
    conn.execute("ATTACH ? AS src", (str(db),))
    conn.execute("CREATE TABLE turns AS SELECT * FROM src.turns")
    conn.commit()
    conn.execute("DETACH src")
    conn.execute("VACUUM")
    conn.close()
    size = bare.stat().st_size
    bare.unlink()
    return size


def db_size(state: Path) -> int:
    return sum(p.stat().st_size for p in state.iterdir() if p.name.startswith("state.db"))


def wait_for(path: Path, deadline: float) -> None:
    while time.perf_counter() < deadline:
        try:
            with Router(socket_path=path, timeout=5) as router:
                router.hello()
            return
        except Exception:
            time.sleep(0.005)
    raise RuntimeError("bhogad did not answer")


def restart_time(root: Path) -> tuple[float, subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "BHOGA_SOCKET": str(root / "run" / "s"),
        "BHOGA_STATE": str(root / "state"),
        "BHOGA_CONFIG": str(root / "none.yaml"),
    }
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "bhogad", "--log-level", "warning"], env=env)
    wait_for(root / "run" / "s", t0 + 120)
    return time.perf_counter() - t0, proc


def floor_restart(db: Path) -> float:
    code = f"import sqlite3; sqlite3.connect({str(db)!r}).execute('SELECT max(id) FROM turns').fetchone()"
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - t0


def best_of(n: int, fn: object) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - t0)
    return min(times) if n < 3 else statistics.median(times)


FLOOR_USAGE = (
    "SELECT provider, count(*), sum(status_code NOT BETWEEN 200 AND 399), sum(input_tokens), "
    "sum(output_tokens), sum(cache_read_tokens), sum(cache_write_tokens), sum(cost_usd), "
    "sum(CASE WHEN billed = 1 THEN cost_usd END), sum(cost_usd IS NULL) FROM turns WHERE at >= ? AND at < ? "
    "GROUP BY provider"
)


def measure(size: int, root: Path, now: datetime, reps: int) -> list[tuple[str, float, float, str, str]]:
    state = root / "state"
    (root / "run").mkdir(mode=0o700)
    t0 = time.perf_counter()
    build(state, size, now)
    print(f"  built {size:,} turns in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    db = state / "state.db"
    rows: list[tuple[str, float, float, str, str]] = []
    label = f"{size // 1000:,}k" if size < 1_000_000 else f"{size / 1e6:g}M"
    ours, floor = db_size(state), floor_size(db, root)
    rows.append((f"{label}: DB bytes/turn", ours / size, floor / size, "bare table", "B"))

    # The part of a restart that depends on the ledger: open it and load what the daemon keeps.
    opened = best_of(3, lambda: load(state))
    floor_o = best_of(3, lambda: sqlite3.connect(db).execute("SELECT max(id) FROM turns").fetchone())
    name = f"{label}: open + load ledger (in process)"
    rows.append((name, opened * 1e3, floor_o * 1e3, "sqlite3 open", "ms"))
    restart, proc = restart_time(root)
    try:
        floor_r = min(floor_restart(db) for _ in range(3))
        rows.append((f"{label}: restart to first answer", restart * 1e3, floor_r * 1e3, "sqlite3 open", "ms"))
        sock = root / "run" / "s"
        conn = sqlite3.connect(db)
        with Router(socket_path=sock, timeout=120) as router:
            for period in ("today", "month", "all"):
                summary = router.usage(period)
                since = summary.since or datetime(1970, 1, 1, tzinfo=UTC)
                until = summary.until
                ours_s = best_of(reps, lambda p=period: router.usage(p))  # type: ignore[misc]
                bounds = (since.isoformat(), until.isoformat())
                # The floor is the better of SQLite's two plans: by the time index, or a full scan.
                scan = FLOOR_USAGE.replace("at >= ? AND at < ?", "+at >= ? AND +at < ?")
                floor_s = min(
                    best_of(reps, lambda q=query, b=bounds: conn.execute(q, b).fetchall())  # type: ignore[misc]
                    for query in (FLOOR_USAGE, scan)
                )
                name = f"{label}: usage --period {period}"
                rows.append((name, ours_s * 1e3, floor_s * 1e3, "sqlite3", "ms"))
            session = conn.execute("SELECT session FROM turns WHERE id = ?", (size // 2,)).fetchone()[0]
            ours_s = best_of(reps, lambda: router.turns(session=session, limit=1000))
            floor_s = best_of(
                reps,
                lambda: conn.execute(
                    "SELECT * FROM turns WHERE id > 0 AND session = ? ORDER BY id LIMIT 1000", (session,)
                ).fetchall(),
            )
            rows.append((f"{label}: turns.list by session", ours_s * 1e3, floor_s * 1e3, "sqlite3", "ms"))
        conn.close()
    finally:
        proc.terminate()
        proc.wait(30)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[100_000, 1_000_000]
    )
    parser.add_argument("--large", action="store_true", help="also 3M turns (slow; never in CI)")
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    sizes = args.sizes + ([3_000_000] if args.large else [])
    now = datetime.now(UTC)
    rows = []
    for size in sizes:
        root = Path(tempfile.mkdtemp(prefix="bhs-", dir="/tmp"))
        try:
            rows += measure(size, root, now, args.reps)
        finally:
            shutil.rmtree(root, ignore_errors=True)
    print(f"{'measure':<40} {'bhogad':>10} {'floor':>10}  ratio (floor)")
    for name, ours, floor, what, unit in rows:
        print(f"{name:<40} {ours:>8,.1f}{unit:>2} {floor:>8,.1f}{unit:>2}  {ours / floor:.2f}x ({what})")
    print(f"(cores: {os.cpu_count()}; socket: {socket.AF_UNIX.name})")


if __name__ == "__main__":
    main()
