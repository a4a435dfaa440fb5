"""The store's part for harness ingest and alerts: its own tables, and the calls that use them.

Kept apart from ``store.py`` so the ledger's core schema and this one can change independently. The
migration is additive and idempotent (columns added when missing, tables created if absent), so it
runs on every open and needs no schema version of its own.

* ``turns.source`` / ``turns.request_id`` / ``turns.dedupe_key``: where a ledger entry came from, the
  provider's id for the call, and a key that makes an ingested call unique (Claude's
  ``message.id:requestId``, a Codex token event's identity). A unique index on the key is what makes
  ingest idempotent across restarts, re-reads of truncated files and resumed sessions.
* ``ingest_files``: per log file, its identity (device, inode), how far it was read and the parser's
  context at that offset. Committed in the same transaction as the turns read up to that offset, so
  a crash can neither lose nor repeat a line.
* ``alert_state`` / ``alerts``: which alerts already fired (so a restart does not repeat them) and
  the history ``bhoga alerts --history`` lists.

Every function blocks and must run on the writer's thread (``writer.limiter``), like every store call.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Final

import msgspec

from bhoga.protocol import Alert, StoredTurn

_ADDED_TURN_COLUMNS: Final = {"source": "TEXT", "request_id": "TEXT", "dedupe_key": "TEXT"}

_SCHEMA: Final = """
CREATE UNIQUE INDEX IF NOT EXISTS turns_dedupe ON turns (dedupe_key) WHERE dedupe_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS turns_request ON turns (provider, request_id) WHERE request_id IS NOT NULL;
-- Looking for a client's report of an ingested call must not scan the ingested rows around it.
CREATE INDEX IF NOT EXISTS turns_client_at ON turns (provider, at)
    WHERE coalesce(source, 'client') = 'client';
CREATE TABLE IF NOT EXISTS ingest_files (
    path TEXT PRIMARY KEY,
    dev INTEGER NOT NULL,
    ino INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    context BLOB
);
CREATE TABLE IF NOT EXISTS alert_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    record BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    provider TEXT NOT NULL,
    record BLOB NOT NULL
);
"""

#: How far apart a client's report of a call and the harness log's line for it may be dated.
MATCH_WINDOW: Final = timedelta(minutes=2)

_alert_decoder = msgspec.json.Decoder(Alert)
_encoder = msgspec.json.Encoder()


def migrate(conn: sqlite3.Connection) -> None:
    have = {row[1] for row in conn.execute("PRAGMA table_info(turns)")}
    for column, definition in _ADDED_TURN_COLUMNS.items():
        if column not in have:
            conn.execute(f"ALTER TABLE turns ADD COLUMN {column} {definition}")
    # One statement at a time: executescript would commit the caller's open transaction.
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)


# -- ingest -----------------------------------------------------------------------------------------


class FileMark(msgspec.Struct, kw_only=True, frozen=True):
    """How far one log file has been read, and what the parser knew at that point."""

    path: str
    dev: int
    ino: int
    offset: int
    size: int
    mtime_ns: int
    context: bytes | None = None


class IngestRow(msgspec.Struct, kw_only=True):
    """An ingested call, priced, waiting for an id; ``dedupe_key`` is required."""

    turn: StoredTurn
    dedupe_key: str


class IngestResult(msgspec.Struct, kw_only=True):
    inserted: list[StoredTurn]
    #: Already in the ledger: the same call seen in another file, or reported by a client.
    duplicates: int
    #: Rows that replaced a smaller reading of the same call (a streamed message read half-way).
    updated: int


def load_marks(conn: sqlite3.Connection) -> dict[str, FileMark]:
    rows = conn.execute("SELECT path, dev, ino, offset, size, mtime_ns, context FROM ingest_files")
    return {
        r[0]: FileMark(path=r[0], dev=r[1], ino=r[2], offset=r[3], size=r[4], mtime_ns=r[5], context=r[6])
        for r in rows
    }


def _tokens(t: StoredTurn) -> int:
    return t.input_tokens + t.output_tokens + t.cache_read_tokens + t.cache_write_tokens


def _client_twin(conn: sqlite3.Connection, t: StoredTurn) -> bool:
    """Whether a client already reported this call: by request id, else by provider, model, time
    and token counts (a harness that wraps Claude Code reports the same call the log holds)."""
    if t.request_id is not None:
        hit = conn.execute(
            "SELECT 1 FROM turns WHERE provider = ? AND request_id = ? "
            "AND coalesce(source, 'client') = 'client'",
            (t.provider, t.request_id),
        ).fetchone()
        if hit is not None:
            return True
    hit = conn.execute(
        "SELECT 1 FROM turns WHERE coalesce(source, 'client') = 'client' AND provider = ? "
        "AND at >= ? AND at <= ? AND model = ? "
        "AND input_tokens = ? AND output_tokens = ? AND cache_read_tokens = ? AND cache_write_tokens = ? "
        "LIMIT 1",
        (
            t.provider,
            (t.at - MATCH_WINDOW).isoformat(),
            (t.at + MATCH_WINDOW).isoformat(),
            t.model,
            t.input_tokens,
            t.output_tokens,
            t.cache_read_tokens,
            t.cache_write_tokens,
        ),
    ).fetchone()
    return hit is not None


_ROW_COLUMNS: Final = (
    "id, at, provider, model, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, "
    "status_code, agent, cost_usd, billed"
)


def _stored(r: tuple[object, ...]) -> StoredTurn:
    """Enough of a ledger row to take it out of the rollups again."""
    return msgspec.convert(dict(zip(_ROW_COLUMNS.split(", "), r, strict=True)), StoredTurn, strict=False)


def _rollups(conn: sqlite3.Connection, turns: Sequence[StoredTurn], sign: int) -> None:
    from bhogad.storage.store import add_rollups  # store imports this module: import at use

    add_rollups(conn, turns, sign)


def has_log_rows(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT 1 FROM turns WHERE dedupe_key IS NOT NULL LIMIT 1").fetchone() is not None


def drop_log_twins(conn: sqlite3.Connection, turns: Sequence[StoredTurn]) -> int:
    """Remove ingested rows that client-reported ``turns`` describe again; returns how many.

    The client's row wins (it names the agent). Should the log be read again, its line finds the
    client's row and is skipped (``_client_twin``), so the call stays counted once.
    """
    gone: list[StoredTurn] = []
    for t in turns:
        if t.request_id is not None:
            found = conn.execute(
                f"SELECT {_ROW_COLUMNS} FROM turns WHERE provider = ? AND request_id = ? "
                "AND dedupe_key IS NOT NULL",
                (t.provider, t.request_id),
            ).fetchall()
            if found:
                gone += [_stored(r) for r in found]
                continue
        found = conn.execute(
            f"SELECT {_ROW_COLUMNS} FROM turns WHERE at >= ? AND at <= ? "
            "AND dedupe_key IS NOT NULL AND provider = ? AND model = ? AND input_tokens = ? "
            "AND output_tokens = ? AND cache_read_tokens = ? AND cache_write_tokens = ? LIMIT 1",
            (
                (t.at - MATCH_WINDOW).isoformat(),
                (t.at + MATCH_WINDOW).isoformat(),
                t.provider,
                t.model,
                t.input_tokens,
                t.output_tokens,
                t.cache_read_tokens,
                t.cache_write_tokens,
            ),
        ).fetchall()
        gone += [_stored(r) for r in found]
    if gone:
        conn.executemany("DELETE FROM turns WHERE id = ?", [(t.id,) for t in gone])
        _rollups(conn, gone, -1)  # the rollups count each call once, like the ledger
    return len(gone)


def commit_ingest(
    conn: sqlite3.Connection,
    rows: Sequence[IngestRow],
    marks: Iterable[FileMark],
    gone: Iterable[str],
    next_id: int,
) -> IngestResult:
    """Store a batch of ingested calls and the file offsets they were read up to, in one transaction.

    Ids are taken from ``next_id`` upwards (the daemon's counter, so ids never collide with turns a
    client is reporting meanwhile); duplicates leave gaps. A call already stored under the same key
    is replaced only by a reading with more tokens: Claude Code writes a streamed message several
    times, each line with the usage so far.
    """
    # The one ledger row the store builds; imported here because the store imports this module.
    from bhogad.storage.store import TURN_COLUMNS, row_from_turn

    insert = f"INSERT INTO turns ({TURN_COLUMNS}, dedupe_key) VALUES ({', '.join('?' * 18)})"
    inserted: list[StoredTurn] = []
    duplicates = updated = 0
    conn.execute("BEGIN")
    try:
        # Most machines have no client reporting what a harness also logs: look only where one does.
        clients = {
            provider
            for provider in {row.turn.provider for row in rows}
            if conn.execute(
                "SELECT 1 FROM turns WHERE coalesce(source, 'client') = 'client' AND provider = ? LIMIT 1",
                (provider,),
            ).fetchone()
        }
        for row in rows:
            t = row.turn
            held_row = conn.execute(
                f"SELECT {_ROW_COLUMNS} FROM turns WHERE dedupe_key = ?", (row.dedupe_key,)
            ).fetchone()
            if held_row is not None:
                held = _stored(held_row)
                if _tokens(held) < _tokens(t):
                    conn.execute(
                        "UPDATE turns SET input_tokens = ?, output_tokens = ?, cache_read_tokens = ?, "
                        "cache_write_tokens = ?, cost_usd = ?, pricing = ? WHERE id = ?",
                        (
                            t.input_tokens,
                            t.output_tokens,
                            t.cache_read_tokens,
                            t.cache_write_tokens,
                            t.cost_usd,
                            t.pricing,
                            held.id,
                        ),
                    )
                    # The rollups follow: the smaller reading out, the larger one in.
                    _rollups(conn, [held], -1)
                    _rollups(conn, [msgspec.structs.replace(t, id=held.id, at=held.at)], 1)
                    updated += 1
                else:
                    duplicates += 1
                continue
            if t.provider in clients and _client_twin(conn, t):
                duplicates += 1
                continue
            t.id = next_id
            next_id += 1
            conn.execute(insert, (*row_from_turn(t), row.dedupe_key))
            inserted.append(t)
        _rollups(conn, inserted, 1)
        conn.executemany(
            "INSERT OR REPLACE INTO ingest_files (path, dev, ino, offset, size, mtime_ns, context) "
            "VALUES (?,?,?,?,?,?,?)",
            [(m.path, m.dev, m.ino, m.offset, m.size, m.mtime_ns, m.context) for m in marks],
        )
        conn.executemany("DELETE FROM ingest_files WHERE path = ?", [(p,) for p in gone])
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return IngestResult(inserted=inserted, duplicates=duplicates, updated=updated)


# -- alerts -----------------------------------------------------------------------------------------


def load_alert_state(conn: sqlite3.Connection) -> bytes | None:
    row = conn.execute("SELECT record FROM alert_state WHERE id = 1").fetchone()
    return bytes(row[0]) if row is not None else None


def last_alert_id(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT coalesce(max(id), 0) FROM alerts").fetchone()[0])


def commit_alerts(
    conn: sqlite3.Connection, state: bytes, alerts: Sequence[Alert], keep: int = 10_000
) -> None:
    """Record fired alerts and the state that says they fired, together: after a crash either both
    are stored (no repeat) or neither (the alert fires again, never lost)."""
    conn.execute("BEGIN")
    try:
        conn.execute("INSERT OR REPLACE INTO alert_state (id, record) VALUES (1, ?)", (state,))
        conn.executemany(
            "INSERT INTO alerts (id, at, provider, record) VALUES (?,?,?,?)",
            [(a.id, a.at.isoformat(), a.provider, _encoder.encode(a)) for a in alerts],
        )
        if alerts:
            conn.execute("DELETE FROM alerts WHERE id <= ?", (alerts[-1].id - keep,))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def list_alerts(conn: sqlite3.Connection, limit: int, provider: str | None = None) -> list[Alert]:
    """The newest ``limit`` alerts, oldest first."""
    sql = "SELECT record FROM alerts"
    args: list[object] = []
    if provider is not None:
        sql += " WHERE provider = ?"
        args.append(provider)
    sql += " ORDER BY id DESC LIMIT ?"
    args.append(limit)
    alerts = [_alert_decoder.decode(r[0]) for r in conn.execute(sql, args)]
    return alerts[::-1]
