"""The store on a real SQLite file: rollups that always equal the raw turns, reads that never hold up a
commit, one bad row that fails only itself, retention that keeps the budget month, idempotency keys
that survive a restart, and a ledger only its owner can read."""

from __future__ import annotations

import itertools
import math
import os
import sqlite3
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from bhoga.protocol import StoredTurn, Turn, UsageGroup
from bhogad import config
from bhogad.domain import usage
from bhogad.domain.budgets import month_start
from bhogad.domain.keeper import InvalidInput, QuotaKeeper
from bhogad.storage.store import StorageFailure, Store, classify
from bhogad.storage.writer import Writer, retention_cutoff

CFG = config.build({"providers": {"anthropic_api": {"key_env": []}}})
BASE = datetime(2026, 3, 1, tzinfo=UTC)
ALL_GROUPS = [UsageGroup.PROVIDER, UsageGroup.MODEL, UsageGroup.AGENT, UsageGroup.DAY]


@contextmanager
def opened(path: Path) -> Iterator[Store]:
    store = Store.open(path)
    try:
        yield store
    finally:
        store.close()


def _turn(i: int, at: datetime, **kw: Any) -> StoredTurn:
    fields: dict[str, Any] = dict(
        id=i,
        at=at,
        provider="anthropic_api",
        model="m",
        input_tokens=1,
        output_tokens=2,
        cache_read_tokens=0,
        cache_write_tokens=0,
        status_code=200,
    )
    fields.update(kw)
    return StoredTurn(**fields)


turn_fields = st.fixed_dictionaries(
    {
        "minute": st.integers(0, 60 * 24 * 90),  # three months from BASE
        "provider": st.sampled_from(["anthropic_api", "openai_api", "claude_code"]),
        "model": st.sampled_from(["opus", "sonnet", "gpt"]),
        "agent": st.sampled_from([None, "ci", "dev"]),
        "session": st.sampled_from([None, "s1", "s2"]),
        "status_code": st.sampled_from([200, 201, 399, 400, 429, 500]),
        "input_tokens": st.integers(0, 10**9),
        "output_tokens": st.integers(0, 10**6),
        "cache_read_tokens": st.integers(0, 10**6),
        "cache_write_tokens": st.integers(0, 10**6),
        "cost_usd": st.none() | st.floats(0, 1000, allow_nan=False),
        "billed": st.booleans(),
    }
)
steps = st.lists(
    st.one_of(
        st.tuples(st.just("insert"), st.lists(turn_fields, min_size=1, max_size=30)),
        st.tuples(st.just("restart"), st.none()),
        st.tuples(st.just("prune"), st.integers(0, 90)),
    ),
    min_size=1,
    max_size=8,
)


def _model(turns: list[StoredTurn], groups: list[UsageGroup]) -> dict[tuple[Any, ...], list[Any]]:
    """The aggregate, computed the slow obvious way in Python."""
    key_of = {
        UsageGroup.PROVIDER: lambda t: t.provider,
        UsageGroup.MODEL: lambda t: t.model,
        UsageGroup.AGENT: lambda t: t.agent,
        UsageGroup.DAY: lambda t: t.at.isoformat()[:10],
        UsageGroup.SESSION: lambda t: t.session,
    }
    out: dict[tuple[Any, ...], list[Any]] = {}
    for t in turns:
        k = tuple(key_of[g](t) for g in groups)
        acc = out.setdefault(k, [0, 0, 0, 0, 0, 0, 0.0, 0.0, 0])
        acc[0] += 1
        acc[1] += not 200 <= t.status_code <= 399
        acc[2] += t.input_tokens
        acc[3] += t.output_tokens
        acc[4] += t.cache_read_tokens
        acc[5] += t.cache_write_tokens
        if t.cost_usd is None:
            acc[8] += 1
        else:
            acc[6] += t.cost_usd
            acc[7] += t.cost_usd if t.billed else 0.0
    return out


def _assert_summary(summary: Any, expected: dict[tuple[Any, ...], list[Any]]) -> None:
    got = {
        tuple(r.key): [
            r.turns,
            r.errors,
            r.input_tokens,
            r.output_tokens,
            r.cache_read_tokens,
            r.cache_write_tokens,
            r.cost_usd,
            r.billed_usd,
            r.unpriced,
        ]
        for r in summary.rows
    }
    assert got.keys() == expected.keys()
    for k, want in expected.items():
        have = got[k]
        assert have[:6] == want[:6] and have[8] == want[8], k
        assert math.isclose(have[6], want[6], rel_tol=1e-9, abs_tol=1e-6), k
        assert math.isclose(have[7], want[7], rel_tol=1e-9, abs_tol=1e-6), k


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=steps)
def test_rollups_equal_the_raw_aggregate_after_inserts_restarts_and_pruning(
    tmp_path_factory: pytest.TempPathFactory, steps: list[tuple[str, Any]]
) -> None:
    path = tmp_path_factory.mktemp("store")
    everything: list[StoredTurn] = []
    kept: list[StoredTurn] = []
    pruned_before = BASE
    store = Store.open(path)
    try:
        for action, arg in steps:
            if action == "insert":
                batch = []
                for f in arg:
                    minute = f.pop("minute")
                    at = BASE + timedelta(minutes=minute)
                    batch.append(_turn(len(everything) + len(batch) + 1, at, **f))
                store.commit(batch, [])
                everything.extend(batch)
                kept.extend(batch)
            elif action == "restart":
                store.close()
                store = Store.open(path)
            else:
                pruned_before = max(pruned_before, BASE + timedelta(days=arg))
                while store.prune(pruned_before, 0.0, chunk=7) == 7:
                    pass
                kept = [t for t in kept if t.at >= pruned_before]
            until = BASE + timedelta(days=100)
            # All of history, by every rollup grouping: the rollups still hold what was pruned.
            summary = store.read(lambda c: usage.summarise(c, None, until, ALL_GROUPS))  # noqa: B023
            assert summary.from_rollups
            _assert_summary(summary, _model(everything, ALL_GROUPS))
            assert store.count_turns() == len(everything)
            # By provider and agent, whole months come from the monthly rollups.
            coarse = [UsageGroup.PROVIDER, UsageGroup.AGENT]
            summary = store.read(lambda c: usage.summarise(c, None, until, coarse))  # noqa: B023
            _assert_summary(summary, _model(everything, coarse))
            # By session the raw turns answer: exactly the ones retention kept.
            by_session = store.read(lambda c: usage.summarise(c, None, until, [UsageGroup.SESSION]))  # noqa: B023
            assert not by_session.from_rollups
            _assert_summary(by_session, _model(kept, [UsageGroup.SESSION]))
            # A window with ragged ends past any pruned part: rollups inside, raw turns at the edges.
            since = max([pruned_before] + [t.at for t in everything if t not in kept]) + timedelta(
                hours=7, minutes=13
            )
            end = since + timedelta(days=47, hours=5)
            window = [t for t in everything if since <= t.at < end]
            ragged = store.read(lambda c: usage.summarise(c, since, end, [UsageGroup.PROVIDER]))  # noqa: B023
            assert ragged.from_rollups
            _assert_summary(ragged, _model(window, [UsageGroup.PROVIDER]))
            # The ids go on from the newest ever given, even when retention removed it.
            assert store.last_turn_id() == len(everything)
    finally:
        store.close()


moments = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)
).map(lambda at: at.replace(second=0, microsecond=0) if at.minute % 3 else at.replace(minute=0, hour=0))


@given(
    since=st.none() | moments,
    length=st.integers(1, 400 * 24 * 60),
    rollups=st.booleans(),
    by_day=st.booleans(),
)
def test_a_summary_reads_every_moment_once_from_aligned_parts(
    since: datetime | None, length: int, rollups: bool, by_day: bool
) -> None:
    until = (since or datetime(2025, 6, 1, tzinfo=UTC)) + timedelta(minutes=length)
    parts = usage.plan(since, until, rollups, by_day)
    assert parts[0][1] == since and parts[-1][2] == until
    for (_, _, hi), (_, lo, _) in itertools.pairwise(parts):
        assert hi == lo  # contiguous: nothing counted twice, nothing left out
    for source, lo, hi in parts:
        assert lo is None or lo < hi
        if source is not usage.Source.TURNS:
            assert rollups
            for edge in (lo, hi):
                assert edge is None or edge.time() == datetime.min.time()
        if source is usage.Source.MONTHLY:
            assert not by_day
            assert (lo is None or lo.day == 1) and hi.day == 1


@given(
    now=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)),
    keep_days=st.integers(1, 3660),
)
def test_retention_never_reaches_into_the_budget_month(now: datetime, keep_days: int) -> None:
    cutoff = retention_cutoff(now, keep_days)
    assert cutoff <= month_start(now)
    assert cutoff <= now - timedelta(days=keep_days)


def test_pruning_keeps_every_turn_of_the_current_month(tmp_path: Path) -> None:
    now = datetime(2026, 5, 2, 12, tzinfo=UTC)
    with opened(tmp_path) as store:
        ats = [now - timedelta(days=d, hours=1) for d in range(0, 40)]
        store.commit([_turn(i + 1, at) for i, at in enumerate(ats)], [])
        assert store.prune(retention_cutoff(now, 1), 0.0) > 0
        kept = {t.at for t in store.list_turns(0, 1000)}
    assert kept == {at for at in ats if at >= month_start(now)}


def test_a_slow_read_does_not_delay_an_acknowledged_turn(tmp_path: Path) -> None:
    """Event ordering, not a stopwatch: the turn is committed while a read transaction is still open."""
    started, release = threading.Event(), threading.Event()

    def slow(conn: sqlite3.Connection) -> int:
        conn.execute("BEGIN")
        before = int(conn.execute("SELECT count(*) FROM turns").fetchone()[0])  # snapshot taken
        started.set()
        release.wait(60)
        after = int(conn.execute("SELECT count(*) FROM turns").fetchone()[0])
        assert after == before  # the same snapshot all along
        return before

    async def main() -> None:
        store = Store.open(tmp_path)
        keeper = QuotaKeeper(CFG, store)
        keeper.load()
        results: list[int] = []
        read_done = anyio.Event()
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(keeper.writer.run)

                async def reader() -> None:
                    results.append(await keeper.writer.read(lambda: store.read(slow)))
                    read_done.set()

                tg.start_soon(reader)
                await anyio.to_thread.run_sync(started.wait)
                with anyio.fail_after(60):  # a guard against a deadlock, not a measurement
                    turn_id, ticket = keeper.record_turn(Turn(provider="anthropic_api", model="m"))
                    assert ticket is not None
                    await ticket.wait()
                assert ticket.failure(turn_id) is None
                assert not release.is_set() and not results  # committed while the read was running
                check = sqlite3.connect(store.path)
                assert check.execute("SELECT id FROM turns").fetchall() == [(turn_id,)]
                check.close()
                release.set()
                await read_done.wait()
                tg.cancel_scope.cancel()
        finally:
            release.set()
            store.close()
        assert results == [0]

    anyio.run(main)


def test_one_bad_turn_fails_alone_in_its_group_commit(tmp_path: Path) -> None:
    with opened(tmp_path) as store:
        # A row SQLite itself refuses, past any validation in front of it.
        store._conn.execute(
            "CREATE TRIGGER poison BEFORE INSERT ON turns WHEN NEW.model = 'poison' "
            "BEGIN SELECT RAISE(ABORT, 'poisoned row'); END"
        )
        batch = [_turn(1, BASE), _turn(2, BASE, model="poison"), _turn(3, BASE, input_tokens=1 << 62)]
        batch.append(_turn(4, BASE))
        failed, providers_failed = store.commit_isolated(batch, [("anthropic_api", b"{}")])
        assert set(failed) == {2, 3}
        assert all(f.invalid and f.kind == "out_of_range" for f in failed.values())
        assert providers_failed is None
        assert [t.id for t in store.list_turns(0, 10)] == [1, 4]
        assert store.count_turns() == 2  # the rollups counted only what was stored


def test_the_writer_answers_each_waiter_for_its_own_turn(tmp_path: Path) -> None:
    async def main() -> None:
        with opened(tmp_path) as store:
            writer = Writer(store, lambda pid: None)
            ticket = writer.submit([_turn(1, BASE), _turn(2, BASE, output_tokens=1 << 62)])
            assert writer.submit([_turn(3, BASE)]) is ticket  # one batch
            await writer.flush()
            assert ticket.done.is_set()
            assert ticket.failure(1) is None and ticket.failure(3) is None
            failure = ticket.failure(2)
            assert failure is not None and failure.kind == "out_of_range"
            assert [t.id for t in store.list_turns(0, 10)] == [1, 3]

    anyio.run(main)


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (sqlite3.OperationalError("database or disk is full"), "storage_disk_full"),
        (OSError(28, "No space left on device"), "storage_disk_full"),
        (OSError(30, "Read-only file system"), "storage_read_only"),
        (PermissionError(13, "Permission denied"), "storage_permission_denied"),
        (OSError(5, "Input/output error"), "storage_io_error"),
        (OverflowError("Python int too large to convert to SQLite INTEGER"), "out_of_range"),
        (RuntimeError("something else"), "storage_failed"),
    ],
)
def test_storage_errors_are_named_for_what_they_are(exc: BaseException, kind: str) -> None:
    assert classify(exc).kind == kind


def test_classify_reads_sqlites_own_error_names(tmp_path: Path) -> None:
    path = tmp_path / "ro.db"
    sqlite3.connect(path).execute("CREATE TABLE t (x)").connection.close()
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    with pytest.raises(sqlite3.Error) as caught:
        conn.execute("INSERT INTO t VALUES (1)")
    conn.close()
    assert classify(caught.value).kind == "storage_read_only"
    failure = classify(caught.value)
    assert isinstance(failure, StorageFailure) and not failure.invalid


def test_ledger_and_wal_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        state = tmp_path / "state"
        state.mkdir(mode=0o777)
        with opened(state) as store:
            store.commit([_turn(1, BASE)], [])
            files = [p for p in state.iterdir() if p.name.startswith("state.db")]
            modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in files}
    finally:
        os.umask(old)
    assert set(modes) >= {"state.db", "state.db-wal", "state.db-shm"}
    assert set(modes.values()) == {0o600}, modes


def test_an_existing_loose_ledger_is_tightened(tmp_path: Path) -> None:
    with opened(tmp_path):
        pass
    (tmp_path / "state.db").chmod(0o644)
    with opened(tmp_path):
        assert stat.S_IMODE((tmp_path / "state.db").stat().st_mode) == 0o600


def test_integrity_check_runs_only_after_an_unclean_stop(tmp_path: Path) -> None:
    with opened(tmp_path) as store:
        assert store.checked is None  # a new ledger
    with opened(tmp_path) as store:
        assert store.checked is None  # closed cleanly last time: no full scan
    crashed = Store.open(tmp_path)
    crashed._conn.close()  # as if killed: the "running" mark stays
    with opened(tmp_path) as store:
        assert store.checked == "the last run did not close cleanly"


def test_an_older_ledger_gets_rollups_of_its_turns(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "state.db")
    conn.executescript(
        """
        CREATE TABLE turns (id INTEGER PRIMARY KEY, at TEXT NOT NULL, provider TEXT NOT NULL,
            model TEXT NOT NULL, input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL,
            cache_read_tokens INTEGER NOT NULL, cache_write_tokens INTEGER NOT NULL,
            status_code INTEGER NOT NULL, session TEXT, agent TEXT, latency_ms REAL, cost_usd REAL,
            pricing TEXT, billed INTEGER NOT NULL DEFAULT 0);
        CREATE TABLE providers (id TEXT PRIMARY KEY, record BLOB NOT NULL);
        INSERT INTO turns VALUES (1, '2026-03-02T10:00:00+00:00', 'openai_api', 'gpt', 5, 6, 0, 0, 200,
            NULL, 'ci', NULL, 1.5, NULL, 1);
        INSERT INTO turns VALUES (2, '2026-03-02T11:00:00+00:00', 'openai_api', 'gpt', 1, 1, 0, 0, 429,
            NULL, NULL, NULL, NULL, NULL, 1);
        PRAGMA user_version = 2;
        """
    )
    conn.close()
    with opened(tmp_path) as store:
        assert store.count_turns() == 2
        assert store.month_spend(BASE) == ({"openai_api": 1.5}, {"ci": 1.5})
        summary = store.read(lambda c: usage.summarise(c, None, BASE + timedelta(days=5), ALL_GROUPS))
        assert {tuple(r.key): (r.turns, r.errors, r.unpriced) for r in summary.rows} == {
            ("openai_api", "gpt", "ci", "2026-03-02"): (1, 0, 0),
            ("openai_api", "gpt", None, "2026-03-02"): (1, 1, 1),
        }


def test_a_repeated_idempotency_key_returns_the_first_id_even_after_a_restart(tmp_path: Path) -> None:
    async def session(check: Any) -> None:
        store = Store.open(tmp_path)
        try:
            keeper = QuotaKeeper(CFG, store)
            keeper.load()
            await check(keeper)
            await keeper.writer.flush()
        finally:
            store.close()

    async def first(keeper: QuotaKeeper) -> None:
        a, ticket = keeper.record_turn(Turn(provider="anthropic_api", model="m", idempotency_key="k-1"))
        again, same = keeper.record_turn(Turn(provider="anthropic_api", model="m", idempotency_key="k-1"))
        assert (again, same) == (a, ticket)  # still pending: the repeat waits for the same commit
        await keeper.writer.flush()
        b, _ = keeper.record_turn(Turn(provider="anthropic_api", model="m", idempotency_key="k-2"))
        assert b == a + 1
        c, none = keeper.record_turn(Turn(provider="anthropic_api", model="m", idempotency_key="k-1"))
        assert (c, none) == (a, None)
        with pytest.raises(InvalidInput, match="idempotency_key"):
            keeper.record_turn(Turn(provider="anthropic_api", model="m", idempotency_key="has space"))

    async def after_restart(keeper: QuotaKeeper) -> None:
        assert keeper.record_turn(Turn(provider="anthropic_api", model="m", idempotency_key="k-2"))[0] == 2
        assert keeper.record_turn(Turn(provider="anthropic_api", model="m", idempotency_key="k-3"))[0] == 3

    anyio.run(session, first)
    anyio.run(session, after_restart)
    with opened(tmp_path) as store:
        assert [t.id for t in store.list_turns(0, 10)] == [1, 2, 3]


def test_a_failed_query_is_named_not_an_internal_error(tmp_path: Path) -> None:
    def broken() -> None:
        exc = sqlite3.OperationalError("disk I/O error")
        exc.sqlite_errorname = "SQLITE_IOERR_READ"  # as SQLite itself sets it
        raise exc

    async def main() -> None:
        with opened(tmp_path) as store:
            writer = Writer(store, lambda pid: None)
            try:
                with pytest.raises(StorageFailure) as caught:
                    await writer.read(broken)
            finally:
                writer.close()
        assert caught.value.kind == "storage_io_error"
        assert "disk I/O error" in str(caught.value)

    anyio.run(main)


def test_idempotency_keys_in_memory_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bhogad.domain import keeper as keeper_module

    monkeypatch.setattr(keeper_module, "MAX_IDEMPOTENCY_KEYS", 3)

    async def main() -> None:
        with opened(tmp_path) as store:
            keeper = QuotaKeeper(CFG, store)
            keeper.load()
            ids = [
                keeper.record_turn(Turn(provider="anthropic_api", model="m", idempotency_key=f"k{i}"))[0]
                for i in range(6)
            ]
            await keeper.writer.flush()
            assert len(keeper._keys) <= 4
            # The newest are still known; the oldest were forgotten to keep memory bounded.
            assert (
                keeper.record_turn(Turn(provider="anthropic_api", model="m", idempotency_key="k5"))[0]
                == ids[5]
            )
            assert keeper.record_turn(Turn(provider="anthropic_api", model="m", idempotency_key="k0"))[0] == 7
            await keeper.writer.flush()

    anyio.run(main)
