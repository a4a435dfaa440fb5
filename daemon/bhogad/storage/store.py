"""Durable state: the turn ledger, its daily rollups and each provider's record, in SQLite (WAL mode).

The daemon is the only writer. SQLite's journal makes every commit all-or-nothing, so a crash at any
point leaves the last committed transaction intact; with ``synchronous=NORMAL`` in WAL mode a commit has
reached the OS when ``commit()`` returns, which is what survives ``kill -9`` (``FULL`` also survives a
power cut, at the price of an fsync per commit).

Writes go through one connection, from one worker thread (see ``writer.py``). Queries run on read
connections of their own (``read``): WAL lets readers see the last commit while the writer goes on, so
a long ``usage.summary`` never holds up an acknowledged turn.

The ``daily`` and ``monthly`` tables keep per (day or month, provider, model, agent) totals, updated in
the same transaction as the turns they count. Period summaries and budgets read them instead of every
turn, and old raw turns can be pruned (``prune``) while the totals stay. Startup reads only rollups
and indexes, never the ledger.
"""

from __future__ import annotations

import contextlib
import errno
import os
import queue
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Final, TypeVar

import msgspec

from bhoga.protocol import StoredTurn, TurnSource
from bhogad.domain.state import ProviderState
from bhogad.storage import harness

SCHEMA_VERSION = 3
DB_NAME = "state.db"
#: The largest integer SQLite stores (and adds up) without overflowing.
_INT64_MAX: Final = (1 << 63) - 1

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS turns (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cache_read_tokens INTEGER NOT NULL,
    cache_write_tokens INTEGER NOT NULL,
    status_code INTEGER NOT NULL,
    session TEXT,
    agent TEXT,
    latency_ms REAL,
    cost_usd REAL,
    pricing TEXT,
    billed INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS turns_at ON turns (at);
CREATE TABLE IF NOT EXISTS providers (
    id TEXT PRIMARY KEY,
    record BLOB NOT NULL
);
"""

#: Added by schema 3. ``agent`` is '' for turns without one: NULLs are never equal in a primary key.
_SCHEMA_3_TEMPLATE = """
CREATE INDEX IF NOT EXISTS turns_session ON turns (session, id) WHERE session IS NOT NULL;
CREATE INDEX IF NOT EXISTS turns_agent ON turns (agent, id) WHERE agent IS NOT NULL;
{rollups}CREATE TABLE IF NOT EXISTS turn_keys (
    key TEXT PRIMARY KEY,
    turn_id INTEGER NOT NULL,
    at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS turn_keys_at ON turn_keys (at);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
"""

_ROLLUP_TABLE = """
CREATE TABLE IF NOT EXISTS {table} (
    {key} TEXT NOT NULL,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    agent TEXT NOT NULL,
    turns INTEGER NOT NULL,
    errors INTEGER NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cache_read_tokens INTEGER NOT NULL,
    cache_write_tokens INTEGER NOT NULL,
    cost_usd REAL NOT NULL,
    billed_usd REAL NOT NULL,
    unpriced INTEGER NOT NULL,
    PRIMARY KEY ({key}, provider, model, agent)
) WITHOUT ROWID;
"""

#: Rollup tables: name -> (key column, length of the ISO 8601 prefix of ``at`` it keeps). Daily rows
#: answer any whole days; monthly rows (a thirtieth as many) answer whole months, so a summary of all
#: of history reads a few thousand rows.
ROLLUPS: Final = {"daily": ("day", 10), "monthly": ("month", 7)}

_SCHEMA_3 = _SCHEMA_3_TEMPLATE.format(
    rollups="".join(_ROLLUP_TABLE.format(table=t, key=k) for t, (k, _) in ROLLUPS.items())
)

#: The rollups of existing turns, for a ledger written before rollups existed (runs once, at upgrade).
_BACKFILL = """
INSERT INTO {table} SELECT substr(at, 1, {width}), provider, model, coalesce(agent, ''), count(*),
    coalesce(sum(status_code NOT BETWEEN 200 AND 399), 0), sum(input_tokens), sum(output_tokens),
    sum(cache_read_tokens), sum(cache_write_tokens), coalesce(sum(cost_usd), 0.0),
    coalesce(sum(CASE WHEN billed = 1 THEN cost_usd END), 0.0), sum(cost_usd IS NULL)
FROM turns GROUP BY 1, 2, 3, 4
"""

_UPSERT_ROLLUP = """
INSERT INTO {table} VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)
ON CONFLICT ({key}, provider, model, agent) DO UPDATE SET
    turns = turns + excluded.turns, errors = errors + excluded.errors,
    input_tokens = input_tokens + excluded.input_tokens,
    output_tokens = output_tokens + excluded.output_tokens,
    cache_read_tokens = cache_read_tokens + excluded.cache_read_tokens,
    cache_write_tokens = cache_write_tokens + excluded.cache_write_tokens,
    cost_usd = cost_usd + excluded.cost_usd, billed_usd = billed_usd + excluded.billed_usd,
    unpriced = unpriced + excluded.unpriced
"""
_UPSERTS: Final = {t: (_UPSERT_ROLLUP.format(table=t, key=k), w) for t, (k, w) in ROLLUPS.items()}

#: Columns added after schema 1, with their definitions: added in place to an older ledger.
_ADDED_COLUMNS = {"pricing": "TEXT", "billed": "INTEGER NOT NULL DEFAULT 0"}

TURN_COLUMNS = (
    "id, at, provider, model, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, "
    "status_code, session, agent, latency_ms, cost_usd, pricing, billed, source, request_id"
)
_INSERT_TURN = f"INSERT INTO turns ({TURN_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"

#: Rows deleted per transaction when pruning, so commits of new turns slip in between.
PRUNE_CHUNK: Final = 5000

_provider_decoder = msgspec.json.Decoder(ProviderState)


class StoreError(Exception):
    pass


class StorageFailure(StoreError):
    """A write the store could not make, as what it is: ``kind`` is the reply's stable ``data.kind``.

    ``invalid`` marks a failure caused by the row itself (a value SQLite cannot hold), which the
    client must fix; every other kind is the machine's (disk full, read-only, permissions, I/O).
    """

    def __init__(self, kind: str, message: str, invalid: bool = False) -> None:
        super().__init__(message)
        self.kind = kind
        self.invalid = invalid


class StoreUnavailable(StoreError):
    """The store cannot be opened for a reason a person must fix (permissions, I/O, read-only disk).

    The daemon stops with this message; the ledger is left exactly where it is."""


_FIX = {
    "storage_read_only": "make it writable (remount read-write, or point BHOGA_STATE elsewhere)",
    "storage_permission_denied": "give the user running bhogad read and write access to it "
    "(for example `chown -R $USER` on the state directory)",
    "storage_disk_full": "free some space on that disk",
    "storage_io_error": "check the disk (dmesg) and the file",
}


def classify(exc: BaseException) -> StorageFailure:
    """Name a storage error for what it is, once, for every caller (replies, logs, startup)."""
    if isinstance(exc, StorageFailure):
        return exc
    if isinstance(exc, OverflowError):
        return StorageFailure(
            "out_of_range", f"a value is too large to store ({exc}); counts must be below 2^63", True
        )
    name = getattr(exc, "sqlite_errorname", "") or ""
    err = getattr(exc, "errno", None)
    if name == "SQLITE_FULL" or err == errno.ENOSPC or "database or disk is full" in str(exc):
        kind, what = "storage_disk_full", "the disk holding the ledger is full"
    elif name.startswith("SQLITE_READONLY") or err == errno.EROFS:
        kind, what = "storage_read_only", "the ledger is on a read-only file system or file"
    elif name in ("SQLITE_PERM", "SQLITE_AUTH") or err in (errno.EACCES, errno.EPERM):
        kind, what = "storage_permission_denied", "permission denied on the ledger"
    elif name.startswith(("SQLITE_IOERR", "SQLITE_CANTOPEN")) or isinstance(exc, OSError):
        kind, what = "storage_io_error", "an I/O error on the ledger"
    elif name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")):
        kind, what = "storage_corrupt", "the ledger is damaged"
    elif name in ("SQLITE_TOOBIG", "SQLITE_MISMATCH", "SQLITE_CONSTRAINT") or name.startswith(
        "SQLITE_CONSTRAINT"
    ):
        return StorageFailure("out_of_range", f"a value cannot be stored: {exc}", True)
    else:
        kind, what = "storage_failed", "the ledger could not be written"
    return StorageFailure(kind, f"{what}: {exc}")


def _check_row(t: StoredTurn) -> None:
    """Refuse a row SQLite could store but not add up (the sums in rollups and summaries)."""
    for name in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens"):
        value = getattr(t, name)
        if not 0 <= value <= _INT64_MAX >> 16:  # room for 65 536 such turns in one total
            raise StorageFailure("out_of_range", f"{name} {value} is out of range", True)


def row_from_turn(t: StoredTurn) -> tuple[object, ...]:
    """A ledger row, in ``TURN_COLUMNS`` order."""
    return (
        t.id,
        t.at.isoformat(),
        t.provider,
        t.model,
        t.input_tokens,
        t.output_tokens,
        t.cache_read_tokens,
        t.cache_write_tokens,
        t.status_code,
        t.session,
        t.agent,
        t.latency_ms,
        t.cost_usd,
        t.pricing,
        int(t.billed),
        t.source.value,
        t.request_id,
    )


def _turn_from_row(r: tuple[Any, ...]) -> StoredTurn:
    return StoredTurn(
        id=r[0],
        at=datetime.fromisoformat(r[1]),
        provider=r[2],
        model=r[3],
        input_tokens=r[4],
        output_tokens=r[5],
        cache_read_tokens=r[6],
        cache_write_tokens=r[7],
        status_code=r[8],
        session=r[9],
        agent=r[10],
        latency_ms=r[11],
        cost_usd=r[12],
        pricing=r[13],
        billed=bool(r[14]),
        source=TurnSource(r[15] or TurnSource.CLIENT),
        request_id=r[16],
    )


def add_rollups(conn: sqlite3.Connection, turns: Iterable[StoredTurn], sign: int = 1) -> None:
    """Count ``turns`` into the rollups (``sign=-1``: take them out again), inside the caller's
    transaction; for rows written or removed outside ``commit`` (the harness ingest)."""
    turns = list(turns)
    if not turns:
        return
    for upsert, width in _UPSERTS.values():
        rows = _rollup(turns, width)
        if sign < 0:
            rows = [(*r[:4], *(-x if isinstance(x, (int, float)) else x for x in r[4:])) for r in rows]
        conn.executemany(upsert, rows)


def _rollup(turns: Iterable[StoredTurn], width: int) -> list[tuple[object, ...]]:
    """The rollup increments for a batch, one per (day or month, provider, model, agent)."""
    sums: dict[tuple[str, str, str, str], list[Any]] = {}
    for t in turns:
        key = (t.at.isoformat()[:width], t.provider, t.model, t.agent or "")
        s = sums.get(key)
        if s is None:
            s = sums[key] = [0, 0, 0, 0, 0, 0, 0.0, 0.0, 0]
        s[0] += 1
        s[1] += not 200 <= t.status_code <= 399
        s[2] += t.input_tokens
        s[3] += t.output_tokens
        s[4] += t.cache_read_tokens
        s[5] += t.cache_write_tokens
        if t.cost_usd is None:
            s[8] += 1
        else:
            s[6] += t.cost_usd
            if t.billed:
                s[7] += t.cost_usd
    return [(*k, *v) for k, v in sums.items()]


#: An idempotency key to store with its turn: ``(key, turn_id, unix time)``.
TurnKey = tuple[str, int, float]


class Store:
    def __init__(
        self,
        conn: sqlite3.Connection,
        path: Path,
        quarantine: str | None = None,
        checked: str | None = None,
    ) -> None:
        self._conn = conn
        self.path = path
        #: Where an unusable store was moved at open and why, for the log, ``daemon.status`` and doctor.
        self.quarantine = quarantine
        #: Why the full integrity check ran at open (the last run did not close cleanly), if it did.
        self.checked = checked
        self._readers: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._all_readers: list[sqlite3.Connection] = []
        #: Whether the ledger holds calls read from harness logs (only then can a client's turn
        #: repeat one), and how many such rows a client's report replaced.
        self.log_rows = harness.has_log_rows(conn)
        self.twins_dropped = 0

    # -- opening ---------------------------------------------------------------------------------

    @classmethod
    def open(cls, state_dir: Path, synchronous: str = "normal") -> Store:
        """Open (or create) the store in ``state_dir``.

        Only a file SQLite itself calls damaged, or one written by a newer schema, is moved aside (and
        kept) for a fresh one; any other failure (permissions, a read-only or failing disk) raises
        ``StoreUnavailable`` and leaves everything in place: moving a good ledger aside would lose it.
        """
        path = state_dir / DB_NAME
        try:
            state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise _unavailable(state_dir, exc, "cannot create the state directory") from None
        try:
            conn, checked = cls._connect(path, synchronous)
            return cls(conn, path, checked=checked)
        except _Unusable as exc:
            try:
                moved_to = _move_aside(path)
                conn, _ = cls._connect(path, synchronous)
            except (OSError, sqlite3.Error, _Unusable) as again:
                raise _unavailable(path, again, f"{exc.why}, and it cannot be replaced") from None
            return cls(conn, path, f"{exc.why}; moved to {moved_to}")
        except (OSError, sqlite3.Error) as exc:
            raise _unavailable(path, exc, "cannot open the ledger") from None

    @staticmethod
    def _connect(path: Path, synchronous: str) -> tuple[sqlite3.Connection, str | None]:
        fresh = not path.exists()
        if fresh:
            # SQLite creates the WAL and SHM files with the mode of the database file: all 0600.
            os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        _tighten(path)
        checked: str | None = None
        # The worker thread that runs every call is not the thread that opened the connection.
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                version = conn.execute("PRAGMA user_version").fetchone()[0]
            except sqlite3.DatabaseError as exc:
                _raise_if_damaged(exc)
                raise
            if version > SCHEMA_VERSION:
                raise _Unusable(f"written by a newer bhogad (schema {version} > {SCHEMA_VERSION})")
            conn.execute(f"PRAGMA synchronous = {'FULL' if synchronous == 'full' else 'NORMAL'}")
            clean = True
            if version >= 3:
                row = conn.execute("SELECT value FROM meta WHERE key = 'open'").fetchone()
                clean = row is None or row[0] == "closed"
            if not fresh and (version < 3 or not clean):
                # A full check reads every page: only after a run that did not close cleanly (or once,
                # at upgrade), so a restart never pays for the whole ledger.
                checked = "the last run did not close cleanly" if version >= 3 else "upgrade"
                try:
                    check = conn.execute("PRAGMA quick_check").fetchone()[0]
                except sqlite3.DatabaseError as exc:
                    _raise_if_damaged(exc)
                    raise
                if check != "ok":
                    raise _Unusable(f"integrity check failed: {check}")
            conn.execute("BEGIN IMMEDIATE")
            _upgrade(conn, version)
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('open', 'running')")
            conn.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            conn.close()
            _raise_if_damaged(exc)
            raise
        except BaseException:
            conn.close()
            raise
        for suffix in ("-wal", "-shm"):
            _tighten(Path(f"{path}{suffix}"))
        return conn, checked

    # -- reading ---------------------------------------------------------------------------------

    def load_providers(self) -> tuple[dict[str, ProviderState], list[str]]:
        """Every stored provider record, plus a note per record that could not be read."""
        providers: dict[str, ProviderState] = {}
        problems: list[str] = []
        for pid, record in self._conn.execute("SELECT id, record FROM providers"):
            try:
                providers[pid] = _provider_decoder.decode(record)
            except msgspec.DecodeError as exc:
                # Keep the row: it is overwritten only when this provider changes again.
                problems.append(f"provider record {pid!r} unreadable ({exc}); starting it empty")
        return providers, problems

    def last_turn_id(self) -> int:
        row = self._conn.execute("SELECT max(id) FROM turns").fetchone()
        # Pruning notes the newest id it saw, in case it removed every turn: ids are never reused.
        floor = self._conn.execute("SELECT value FROM meta WHERE key = 'last_turn_id'").fetchone()
        return max(int(row[0] or 0), int(floor[0]) if floor else 0)

    def count_turns(self) -> int:
        """Turns ever stored (from the rollups: pruned turns still count)."""
        return int(self._conn.execute("SELECT coalesce(sum(turns), 0) FROM monthly").fetchone()[0])

    def list_turns(
        self, after_id: int, limit: int, session: str | None = None, agent: str | None = None
    ) -> list[StoredTurn]:
        return self.read(lambda conn: _list_turns(conn, after_id, limit, session, agent))

    def month_spend(self, since: datetime) -> tuple[dict[str, float], dict[str, float]]:
        """USD spent since ``since`` (the start of a UTC month) per provider, and billed USD per agent.

        Read from the monthly rollups, so it costs the same at any ledger size."""
        month = since.isoformat()[:7]
        providers: dict[str, float] = {}
        agents: dict[str, float] = {}
        for pid, agent, cost, billed in self._conn.execute(
            "SELECT provider, agent, sum(cost_usd), sum(billed_usd) FROM monthly WHERE month >= ? "
            "GROUP BY provider, agent",
            (month,),
        ):
            if cost:
                providers[pid] = providers.get(pid, 0.0) + float(cost)
            if agent and billed:
                agents[agent] = agents.get(agent, 0.0) + float(billed)
        return providers, agents

    def recent_keys(self, since: float) -> list[TurnKey]:
        """Idempotency keys stored since ``since`` (unix time), oldest first, with their turns' ids."""
        return list(
            self._conn.execute("SELECT key, turn_id, at FROM turn_keys WHERE at >= ? ORDER BY at", (since,))
        )

    def read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        """Run a read-only query function on a read connection of its own.

        Blocks; call it from a worker thread. Each connection serves one thread at a time, and sees
        the last commit made before the query began (WAL snapshot isolation)."""
        with self._reader() as conn:
            return query(conn)

    @contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection]:
        try:
            conn = self._readers.get_nowait()
        except queue.Empty:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA query_only = ON")
            self._all_readers.append(conn)
        try:
            yield conn
        finally:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._readers.put(conn)

    # -- writing ---------------------------------------------------------------------------------

    def commit(
        self,
        turns: Iterable[StoredTurn],
        providers: Iterable[tuple[str, bytes]],
        keys: Iterable[TurnKey] = (),
    ) -> None:
        """Write a batch in one transaction: all of it is stored (with its rollups), or none of it."""
        turns = list(turns)
        for t in turns:
            _check_row(t)
        conn = self._conn
        turns = list(turns)
        conn.execute("BEGIN")
        try:
            if turns:
                conn.executemany(_INSERT_TURN, [row_from_turn(t) for t in turns])
                for upsert, width in _UPSERTS.values():
                    conn.executemany(upsert, _rollup(turns, width))
                if self.log_rows:
                    # A harness's log line read before its client reported the same call: one row stays.
                    self.twins_dropped += harness.drop_log_twins(conn, turns)
            if keys := list(keys):
                conn.executemany("INSERT OR REPLACE INTO turn_keys VALUES (?, ?, ?)", keys)
            if providers := list(providers):
                conn.executemany("INSERT OR REPLACE INTO providers (id, record) VALUES (?, ?)", providers)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def write(self, change: Callable[[sqlite3.Connection], T]) -> T:
        """Run a function that writes (and manages its own transaction) on the writer's connection.

        Blocks; call it from the writer's thread (``writer.limiter``), like every write. Used by the
        harness ingest and the alert engine (``storage/harness.py``)."""
        return change(self._conn)

    def commit_isolated(
        self,
        turns: list[StoredTurn],
        providers: list[tuple[str, bytes]],
        keys: Mapping[int, TurnKey] | None = None,
    ) -> tuple[dict[int, StorageFailure], StorageFailure | None]:
        """``commit``, but one bad turn never fails the others: if the batch fails, each turn is
        retried in a transaction of its own. Returns the failure of each turn that is not stored, and
        the failure of the provider records (``None`` when they are stored)."""
        keys = keys or {}
        try:
            self.commit(turns, providers, keys.values())
            return {}, None
        except Exception as exc:
            first = classify(exc)
        if len(turns) <= 1 and not providers:
            return {t.id: first for t in turns}, None
        failed: dict[int, StorageFailure] = {}
        for t in turns:
            try:
                self.commit([t], (), [keys[t.id]] if t.id in keys else ())
            except Exception as exc:
                failed[t.id] = classify(exc)
        provider_failure: StorageFailure | None = None
        if providers:
            try:
                self.commit((), providers)
            except Exception as exc:
                provider_failure = classify(exc)
        return failed, provider_failure

    def prune(self, before: datetime, keys_before: float, chunk: int = PRUNE_CHUNK) -> int:
        """Delete up to ``chunk`` raw turns older than ``before`` (their rollups stay), and idempotency
        keys older than ``keys_before``; returns the number of turns deleted (0: nothing left)."""
        conn = self._conn
        conn.execute("BEGIN")
        try:
            # Ids keep counting up after the newest turn is pruned: remember where they were.
            newest = conn.execute(
                "SELECT max(coalesce((SELECT max(id) FROM turns), 0), "
                "coalesce((SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'last_turn_id'), 0))"
            ).fetchone()[0]
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('last_turn_id', ?)", (str(newest),))
            deleted = conn.execute(
                "DELETE FROM turns WHERE id IN (SELECT id FROM turns WHERE at < ? ORDER BY at LIMIT ?)",
                (before.isoformat(), chunk),
            ).rowcount
            conn.execute("DELETE FROM turn_keys WHERE at < ?", (keys_before,))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return int(deleted)

    def close(self) -> None:
        for reader in self._all_readers:
            reader.close()
        with contextlib.suppress(sqlite3.Error):
            # The next open skips the full integrity check: this run ended cleanly.
            self._conn.execute("INSERT OR REPLACE INTO meta VALUES ('open', 'closed')")
        self._conn.close()


def _list_turns(
    conn: sqlite3.Connection, after_id: int, limit: int, session: str | None, agent: str | None
) -> list[StoredTurn]:
    sql = f"SELECT {TURN_COLUMNS} FROM turns WHERE id > ?"
    args: list[object] = [after_id]
    if session is not None:
        sql += " AND session = ?"
        args.append(session)
    if agent is not None:
        sql += " AND agent = ?"
        args.append(agent)
    sql += " ORDER BY id LIMIT ?"
    args.append(limit)
    return [_turn_from_row(r) for r in conn.execute(sql, args)]


def _upgrade(conn: sqlite3.Connection, version: int) -> None:
    """Bring the schema to ``SCHEMA_VERSION`` inside the open transaction; older rows are kept."""
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)
    have = {row[1] for row in conn.execute("PRAGMA table_info(turns)")}
    for column, definition in _ADDED_COLUMNS.items():
        if column not in have:
            # Older ledgers keep every row; the new columns start empty for them.
            conn.execute(f"ALTER TABLE turns ADD COLUMN {column} {definition}")
    for statement in _SCHEMA_3.split(";"):
        if statement.strip():
            conn.execute(statement)
    if version < 3:
        for table, (_, width) in ROLLUPS.items():
            conn.execute(_BACKFILL.format(table=table, width=width))
    harness.migrate(conn)  # the harness ingest's columns and tables: additive, idempotent
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _tighten(path: Path) -> None:
    """The ledger names sessions and agents: readable by its owner only, whatever made it before."""
    try:
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            path.chmod(mode & 0o700)
    except OSError:
        pass  # missing, or not ours to change: opening it says what is wrong, if anything


def _raise_if_damaged(exc: sqlite3.DatabaseError) -> None:
    name = getattr(exc, "sqlite_errorname", "") or ""
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")):
        raise _Unusable(f"not a readable SQLite database: {exc}") from exc


def _os_reason(path: Path) -> OSError | None:
    """SQLite often says only "unable to open database file": ask the OS what is in the way."""
    directory = path.parent if path.name == DB_NAME else path
    try:
        if os.statvfs(directory).f_flag & os.ST_RDONLY:
            return OSError(errno.EROFS, os.strerror(errno.EROFS))
        if path.exists():
            os.close(os.open(path, os.O_RDWR))
        if not os.access(directory, os.W_OK | os.X_OK):
            # WAL mode creates its -wal and -shm files beside the ledger.
            return PermissionError(errno.EACCES, f"{os.strerror(errno.EACCES)} (on {directory})")
    except OSError as exc:
        return exc
    return None


def _unavailable(path: Path, exc: BaseException, what: str) -> StoreUnavailable:
    if isinstance(exc, sqlite3.Error):
        exc = _os_reason(path) or exc
    failure = classify(exc)
    fix = _FIX.get(failure.kind, "check the path and its permissions")
    detail = getattr(exc, "strerror", None) or str(exc)
    return StoreUnavailable(f"{what} at {path}: {detail} ({failure.kind}); to fix: {fix}")


class _Unusable(Exception):
    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


def _move_aside(path: Path) -> Path:
    """Rename the store and its WAL/SHM files out of the way; never delete what we cannot read."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    target = path.with_name(f"{path.name}.unusable-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        src = Path(f"{path}{suffix}")
        if src.exists():
            src.rename(Path(f"{target}{suffix}"))
    return target
