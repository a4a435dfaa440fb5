"""Group commit: many requests, one transaction.

Handlers change state on the event loop, then hand the writer what must become durable and wait on a
ticket. The writer takes everything pending, encodes provider records on the loop (a consistent
snapshot, since nothing else runs meanwhile), commits them in one worker thread and wakes every ticket
of that batch. Under load a commit covers hundreds of turns; when idle it covers one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import anyio
import msgspec
import structlog

from bhoga.protocol import StoredTurn
from bhogad.domain.state import ProviderState
from bhogad.storage.store import Store

log = structlog.get_logger("bhogad.storage.writer")
_encoder = msgspec.json.Encoder()


class Ticket:
    """Resolved when the batch holding a write has committed, or failed."""

    __slots__ = ("done", "error")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.error: str | None = None

    async def wait(self) -> None:
        await self.done.wait()


class Writer:
    def __init__(self, store: Store, providers: Callable[[str], ProviderState | None]) -> None:
        self._store = store
        self._provider = providers
        self._turns: list[StoredTurn] = []
        self._dirty: set[str] = set()
        self._ticket = Ticket()
        self._wakeup = anyio.Event()
        # One thread owns every SQLite call, so calls never interleave.
        self.limiter = anyio.CapacityLimiter(1)
        self.commits = 0
        self.failures = 0

    def submit(self, turns: Iterable[StoredTurn] = (), dirty: Iterable[str] = ()) -> Ticket:
        self._turns.extend(turns)
        self._dirty.update(dirty)
        self._wakeup.set()
        return self._ticket

    @property
    def idle(self) -> bool:
        return not self._turns and not self._dirty

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
        dirty, self._dirty = self._dirty, set()
        ticket, self._ticket = self._ticket, Ticket()
        records = [
            (pid, _encoder.encode(p)) for pid in sorted(dirty) if (p := self._provider(pid)) is not None
        ]
        try:
            await anyio.to_thread.run_sync(self._store.commit, turns, records, limiter=self.limiter)
            self.commits += 1
        except Exception as exc:
            # The batch is not stored. Its requests get an error reply instead of an acknowledgement,
            # so no client believes a lost write was kept.
            self.failures += 1
            ticket.error = f"storage failed: {exc}"
            log.error("commit failed", turns=len(turns), providers=len(records), error=str(exc))
        ticket.done.set()
