"""Group commit: many requests, one transaction; and reads beside it, never behind it.

Handlers change state on the event loop, then hand the writer what must become durable and wait on a
ticket. The writer takes everything pending, encodes provider records on the loop (a consistent
snapshot, since nothing else runs meanwhile), commits them in one worker thread and wakes every ticket
of that batch. Under load a commit covers hundreds of turns; when idle it covers one.

One bad turn never fails its neighbours: if a batch fails, the store retries each turn alone, and
each waiter hears about its own turn only. Queries run on their own threads and connections
(``read``), a few at a time, so a long summary never delays a commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import TypeVar

import anyio
import msgspec
import structlog

from bhoga.protocol import StoredTurn
from bhogad.domain.budgets import month_start
from bhogad.domain.state import ProviderState
from bhogad.storage.store import PRUNE_CHUNK, StorageFailure, Store, TurnKey, classify

log = structlog.get_logger("bhogad.storage.writer")
_encoder = msgspec.json.Encoder()

T = TypeVar("T")

#: Queries running at once; more wait their turn (each holds a thread and a read connection).
MAX_READERS = 4
#: How much less CPU priority reader threads get than the rest of the daemon (Linux ``nice``): on a
#: busy machine a long query then takes the CPU the event loop and the writer leave over.
READER_NICE = 10


def _lower_priority() -> None:
    # Linux gives each thread its own nice value; elsewhere this changes the whole process, so skip.
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), READER_NICE)


#: How often old raw turns are pruned (and once soon after start).
PRUNE_EVERY_S = 3600.0


class Ticket:
    """Resolved when the batch holding a write has committed, or failed."""

    __slots__ = ("done", "error", "failed")

    def __init__(self) -> None:
        self.done = anyio.Event()
        #: Why the batch's provider records are not stored (``None``: they are).
        self.error: StorageFailure | None = None
        #: Turns of this batch that are not stored, by id, each with its own reason.
        self.failed: dict[int, StorageFailure] = {}

    async def wait(self) -> None:
        await self.done.wait()

    def failure(self, turn_id: int | None = None) -> StorageFailure | None:
        """What went wrong for one turn of the batch, or (no id) for its provider records."""
        return self.failed.get(turn_id) if turn_id is not None else self.error


def retention_cutoff(now: datetime, keep_days: int) -> datetime:
    """Raw turns before this may be pruned: older than ``keep_days``, and never in this budget month."""
    return min(now - timedelta(days=keep_days), month_start(now))


class Writer:
    def __init__(self, store: Store, providers: Callable[[str], ProviderState | None]) -> None:
        self._store = store
        self._provider = providers
        self._turns: list[StoredTurn] = []
        self._keys: dict[int, TurnKey] = {}
        self._dirty: set[str] = set()
        self._ticket = Ticket()
        self._wakeup = anyio.Event()
        # One thread owns every SQLite write, so writes never interleave.
        self.limiter = anyio.CapacityLimiter(1)
        # Threads of their own (not anyio's shared pool, whose threads also run commits), each
        # started at a lower priority: a query must never take CPU from an acknowledgement.
        self._readers = ThreadPoolExecutor(MAX_READERS, "bhogad-read", initializer=_lower_priority)
        self.commits = 0
        self.failures = 0
        self.pruned = 0
        self._in_flight: Ticket | None = None

    def submit(
        self,
        turns: Iterable[StoredTurn] = (),
        dirty: Iterable[str] = (),
        keys: Mapping[int, TurnKey] | None = None,
    ) -> Ticket:
        self._turns.extend(turns)
        self._dirty.update(dirty)
        if keys:
            self._keys.update(keys)
        self._wakeup.set()
        return self._ticket

    @property
    def idle(self) -> bool:
        return not self._turns and not self._dirty

    async def settled(self) -> None:
        """Wait until everything submitted so far is committed (or failed): then a read sees every
        acknowledged write. Costs nothing when there is nothing to wait for."""
        if not self.idle:
            await self.submit().wait()
        elif self._in_flight is not None:
            await self._in_flight.wait()

    async def read(self, query: Callable[[], T]) -> T:
        """Run a blocking query on a reader thread: never on the writer's, never on the loop.

        A query the store cannot answer raises ``StorageFailure`` naming why (damaged, I/O...)."""
        try:
            return await asyncio.get_running_loop().run_in_executor(self._readers, query)
        except (sqlite3.Error, OSError) as exc:
            raise classify(exc) from exc

    def close(self) -> None:
        self._readers.shutdown(wait=False, cancel_futures=True)

    async def run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup = anyio.Event()
            await self._commit_pending()

    async def flush(self) -> None:
        """Commit whatever is pending now (used at shutdown, shielded by the caller)."""
        while not self.idle:
            await self._commit_pending()

    async def _commit_pending(self) -> None:
        turns, self._turns = self._turns, []
        keys, self._keys = self._keys, {}
        dirty, self._dirty = self._dirty, set()
        ticket, self._ticket = self._ticket, Ticket()
        records = [
            (pid, _encoder.encode(p)) for pid in sorted(dirty) if (p := self._provider(pid)) is not None
        ]
        if not turns and not records:
            ticket.done.set()
            return
        self._in_flight = ticket
        try:
            failed, error = await anyio.to_thread.run_sync(
                self._store.commit_isolated, turns, records, keys, limiter=self.limiter
            )
        except Exception as exc:  # the store classifies what it can; this is the last resort
            failed = {t.id: StorageFailure("storage_failed", f"storage failed: {exc}") for t in turns}
            error = StorageFailure("storage_failed", f"storage failed: {exc}")
        if failed or error is not None:
            # Those requests get an error reply instead of an acknowledgement, so no client believes
            # a lost write was kept.
            self.failures += 1
            reasons = sorted({f.kind for f in failed.values()} | ({error.kind} if error else set()))
            log.error(
                "commit failed",
                turns=len(turns),
                turns_not_stored=len(failed),
                providers=len(records),
                providers_stored=error is None,
                kinds=reasons,
                error=str(error or next(iter(failed.values()))),
            )
        if len(failed) < len(turns) or (error is None and records):
            self.commits += 1
        ticket.failed = failed
        ticket.error = error
        self._in_flight = None
        ticket.done.set()

    async def maintain(self, keep_days: int, key_window_s: float, clock: Callable[[], datetime]) -> None:
        """Prune raw turns past retention (rollups keep their totals) and expired idempotency keys,
        a chunk per transaction so turns keep committing in between; then again every hour."""
        await anyio.sleep(5.0)  # not while the daemon is starting up
        while True:
            now = clock()
            before = retention_cutoff(now, keep_days)
            keys_before = now.timestamp() - key_window_s
            try:
                while True:
                    n = await anyio.to_thread.run_sync(
                        self._store.prune, before, keys_before, PRUNE_CHUNK, limiter=self.limiter
                    )
                    self.pruned += n
                    if n:
                        log.info("pruned old turns", turns=n, before=before.isoformat())
                    if n < PRUNE_CHUNK:
                        break
            except Exception as exc:
                log.error("pruning old turns failed; will try again", error=str(exc))
            await anyio.sleep(PRUNE_EVERY_S)
