"""Durable state: the turn ledger and each provider's record, in SQLite (WAL mode).

The daemon is the only writer. SQLite's journal makes every commit all-or-nothing, so a crash at any
point leaves the last committed transaction intact; with ``synchronous=NORMAL`` in WAL mode a commit has
reached the OS when ``commit()`` returns, which is what survives ``kill -9`` (``FULL`` also survives a
power cut, at the price of an fsync per commit).

Every method here blocks; the daemon calls them from one worker thread (see ``writer.py``).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from bhoga.protocol import StoredTurn, TurnSource
from bhogad.domain.state import ProviderState
from bhogad.storage import harness

SCHEMA_VERSION = 2
DB_NAME = "state.db"

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

#: Columns added after schema 1, with their definitions: added in place to an older ledger.
_ADDED_COLUMNS = {"pricing": "TEXT", "billed": "INTEGER NOT NULL DEFAULT 0"}

_TURN_COLUMNS = (
    "id, at, provider, model, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, "
    "status_code, session, agent, latency_ms, cost_usd, pricing, billed, source, request_id"
)

_provider_decoder = msgspec.json.Decoder(ProviderState)


class StoreError(Exception):
    pass


def _row_from_turn(t: StoredTurn) -> tuple[object, ...]:
    """A ledger row, in ``_TURN_COLUMNS`` order."""
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


class Store:
    def __init__(self, conn: sqlite3.Connection, path: Path, quarantine: str | None = None) -> None:
        self._conn = conn
        self.path = path
        #: Where an unusable store was moved at open and why, for the log, ``daemon.status`` and doctor.
        self.quarantine = quarantine
        #: Whether the ledger holds calls read from harness logs (only then can a client's turn
        #: repeat one), and how many such rows a client's report replaced.
        self.log_rows = harness.has_log_rows(conn)
        self.twins_dropped = 0

    # -- opening ---------------------------------------------------------------------------------

    @classmethod
    def open(cls, state_dir: Path, synchronous: str = "normal") -> Store:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = state_dir / DB_NAME
        try:
            return cls(cls._connect(path, synchronous), path)
        except _Unusable as exc:
            moved_to = _move_aside(path)
            return cls(cls._connect(path, synchronous), path, f"{exc.why}; moved to {moved_to}")

    @staticmethod
    def _connect(path: Path, synchronous: str) -> sqlite3.Connection:
        fresh = not path.exists()
        try:
            # The worker thread that runs every call is not the thread that opened the connection.
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {'FULL' if synchronous == 'full' else 'NORMAL'}")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                conn.close()
                raise _Unusable(f"written by a newer bhogad (schema {version} > {SCHEMA_VERSION})")
            if not fresh:
                check = conn.execute("PRAGMA quick_check").fetchone()[0]
                if check != "ok":
                    conn.close()
                    raise _Unusable(f"integrity check failed: {check}")
            conn.executescript(_SCHEMA)
            have = {row[1] for row in conn.execute("PRAGMA table_info(turns)")}
            for column, definition in _ADDED_COLUMNS.items():
                if column not in have:
                    # Older ledgers keep every row; the new columns start empty for them.
                    conn.execute(f"ALTER TABLE turns ADD COLUMN {column} {definition}")
            harness.migrate(conn)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            raise _Unusable(f"not a readable SQLite database: {exc}") from exc
        return conn

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
        return int(row[0] or 0)

    def count_turns(self) -> int:
        return int(self._conn.execute("SELECT count(*) FROM turns").fetchone()[0])

    def list_turns(
        self, after_id: int, limit: int, session: str | None = None, agent: str | None = None
    ) -> list[StoredTurn]:
        sql = f"SELECT {_TURN_COLUMNS} FROM turns WHERE id > ?"
        args: list[object] = [after_id]
        if session is not None:
            sql += " AND session = ?"
            args.append(session)
        if agent is not None:
            sql += " AND agent = ?"
            args.append(agent)
        sql += " ORDER BY id LIMIT ?"
        args.append(limit)
        return [_turn_from_row(r) for r in self._conn.execute(sql, args)]

    def month_spend(self, since: datetime) -> tuple[dict[str, float], dict[str, float]]:
        """USD spent since ``since`` (aware UTC) per provider, and billed USD per agent."""
        cutoff = since.isoformat()
        providers = {
            pid: float(total)
            for pid, total in self._conn.execute(
                "SELECT provider, sum(cost_usd) FROM turns WHERE at >= ? AND cost_usd IS NOT NULL "
                "GROUP BY provider",
                (cutoff,),
            )
        }
        agents = {
            agent: float(total)
            for agent, total in self._conn.execute(
                "SELECT agent, sum(cost_usd) FROM turns WHERE at >= ? AND billed = 1 AND agent IS NOT NULL "
                "AND cost_usd IS NOT NULL GROUP BY agent",
                (cutoff,),
            )
        }
        return providers, agents

    def read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        """Run a read-only query function on the connection (from the writer's thread, like every call)."""
        return query(self._conn)

    # -- writing ---------------------------------------------------------------------------------

    def commit(self, turns: Iterable[StoredTurn], providers: Iterable[tuple[str, bytes]]) -> None:
        """Write a batch in one transaction: all of it is stored, or none of it."""
        conn = self._conn
        turns = list(turns)
        conn.execute("BEGIN")
        try:
            conn.executemany(
                f"INSERT INTO turns ({_TURN_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [_row_from_turn(t) for t in turns],
            )
            if self.log_rows and turns:
                # A harness's log line read before its client reported the same call: one row stays.
                self.twins_dropped += harness.drop_log_twins(conn, turns)
            conn.executemany(
                "INSERT OR REPLACE INTO providers (id, record) VALUES (?, ?)",
                list(providers),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self._conn.close()


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
