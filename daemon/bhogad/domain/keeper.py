"""The daemon's single owner of quota state: operations, persistence hand-off and change events.

Every operation runs on the event loop and changes memory in one synchronous step, so every client
sees each change whole and immediately (read-your-writes across processes). What must be durable goes
to the writer, and the caller waits for its ticket before acknowledging.
"""

from __future__ import annotations

import os
import re
from collections import deque
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol, TypeVar

import msgspec
import structlog

from bhoga.protocol import (
    Alert,
    ClearCooldownParams,
    CooldownCleared,
    IngestStatus,
    ListTurnsParams,
    ProviderKind,
    ProviderQuota,
    QuotaChanged,
    QuotaWindow,
    Ranking,
    ReportParams,
    SetQuotaParams,
    SharedStatus,
    StoredTurn,
    Turn,
    UsageParams,
    UsageSummary,
)
from bhoga.quota.headers import read_response
from bhoga.quota.values import (
    CLOCK_SKEW,
    MAX_TOKENS,
    MAX_WINDOWS,
    RESET_HORIZON,
    as_utc,
    model_scope,
    time_problem,
    window_problem,
)
from bhogad.config import Config
from bhogad.discovery.providers import api_keys
from bhogad.domain import affinity, budgets, pricing, routing, usage
from bhogad.domain.affinity import Affinity
from bhogad.domain.errors import InvalidInput, OutOfRange, StorageFailed, UnknownProvider
from bhogad.domain.state import (
    PollResult,
    ProviderState,
    apply_poll,
    apply_turn,
    bare_cooldown_s,
    checked_windows,
    clear_cooldown,
    extend_cooldown,
    manual_windows,
    merge_windows,
    new_provider,
    provider_quota,
    repair,
    signature,
    start_trial,
)
from bhogad.observability.metrics import Metrics
from bhogad.storage.store import StorageFailure, Store
from bhogad.storage.writer import Ticket, Writer

T = TypeVar("T")

#: How long an idempotency key is remembered: far longer than any client's retry or a daemon restart.
IDEMPOTENCY_WINDOW_S = 24 * 3600.0
#: Most keys held in memory (about 150 MB at most); past it the oldest are forgotten first.
MAX_IDEMPOTENCY_KEYS = 1_000_000
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,128}$")

log = structlog.get_logger("bhogad.domain.keeper")

_PROVIDER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Observer(Protocol):
    """Something inside the daemon that follows changes (shared state). It must not block."""

    def quota_changed(self, pid: str, cause: str) -> None: ...

    def turn_recorded(self, pid: str) -> None: ...


class SharedLink(Protocol):
    def status(self) -> SharedStatus: ...


class EventSink(Protocol):
    """Where ``quota.changed`` events go (the RPC layer encodes and fans them out).

    ``len()`` is how many are listening: with nobody, no event is even built.
    """

    def __len__(self) -> int: ...

    def publish(self, event: QuotaChanged) -> None: ...

    def publish_alert(self, alert: Alert) -> None: ...


class _Nobody:
    def __len__(self) -> int:
        return 0

    def publish(self, event: QuotaChanged) -> None:
        pass

    def publish_alert(self, alert: Alert) -> None:
        pass


class QuotaKeeper:
    def __init__(
        self,
        cfg: Config,
        store: Store,
        clock: Callable[[], datetime] = utcnow,
        events: EventSink | None = None,
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.clock = clock
        self.providers: dict[str, ProviderState] = {}
        self.next_turn_id = 1
        self.writer = Writer(store, self.providers.get)
        self.events: EventSink = events if events is not None else _Nobody()
        self._signatures: dict[str, tuple[object, ...]] = {}
        #: Bumped on every change of state or config; cached rankings from older versions are void.
        self.version = 0
        self._rankings: dict[tuple[object, ...], tuple[int, Ranking, datetime | None]] = {}
        #: Session routes and last answers, which rankings keep until another is clearly better.
        self.affinity = Affinity()
        #: This month's spend, for budgets; rebuilt from the ledger by ``load``.
        self.spend = budgets.Spend(month=budgets.month_of(clock()))
        self.started_at = clock()
        self.turns_stored = 0
        self.metrics = Metrics()
        #: Progress of the harness-log ingest, kept current by ``bhogad.ingest``; None when it is off.
        self.ingest_status: IngestStatus | None = None
        #: Idempotency key -> (turn id, the ticket of the batch that stores it), within the window.
        self._keys: dict[str, tuple[int, Ticket | None]] = {}
        self._key_order: deque[tuple[float, str]] = deque()
        self._prices = pricing.PriceBook(cfg.pricing)
        #: Other machines' spend this month, from shared state; ``None`` while this daemon is alone.
        self.peer_spend: budgets.Spend | None = None
        self._fleet_spend_cache: tuple[int, budgets.Spend] | None = None
        self.observers: list[Observer] = []
        #: The link to other machines' daemons, when ``shared.url`` is configured.
        self.shared: SharedLink | None = None

    def load(self) -> list[str]:
        """Read the store into memory; returns notes about anything that could not be read."""
        providers, problems = self.store.load_providers()
        now = self.clock()
        for pid, p in providers.items():
            # A record written by an older version may hold values this one refuses at the door; it
            # is brought into range (or the bad part dropped) here, never left to crash a reader.
            for note in repair(p, now):
                log.warning("stored provider record repaired", provider=pid, repair=note)
        self.providers.update(providers)
        self.next_turn_id = self.store.last_turn_id() + 1
        self.turns_stored = self.store.count_turns()
        # Budgets survive restarts because the ledger's rollups are their only record.
        now = self.clock()
        for key, turn_id, at in self.store.recent_keys(now.timestamp() - IDEMPOTENCY_WINDOW_S):
            self._keys[key] = (turn_id, None)
            self._key_order.append((at + IDEMPOTENCY_WINDOW_S, key))
        by_provider, by_agent = self.store.month_spend(budgets.month_start(now))
        self.spend = budgets.Spend(month=budgets.month_of(now), providers=by_provider, agents=by_agent)
        for pid in self.cfg.providers:
            self.providers.setdefault(pid, new_provider(pid))
        self.detect_keys(os.environ)
        return problems

    # -- providers -------------------------------------------------------------------------------

    def provider(self, pid: str) -> ProviderState:
        """The state of a configured provider (or one already known); unknown ids are refused."""
        p = self.providers.get(pid)
        if p is not None:
            return p
        if pid in self.cfg.providers:
            return self.providers.setdefault(pid, new_provider(pid))
        raise UnknownProvider(pid, sorted(self.cfg.providers))

    def detect_keys(self, environ: Mapping[str, str]) -> None:
        """API-key providers are available when the daemon can see a key (the poller re-checks)."""
        self.version += 1
        for pid, pcfg in self.cfg.providers.items():
            if pcfg.kind is ProviderKind.API_KEY and pcfg.key_env:
                self.provider(pid).detected = api_keys.detect(pcfg, environ)

    def quota(self, pid: str, model: str = "*") -> ProviderQuota:
        return provider_quota(self.provider(pid), self.cfg.providers.get(pid), self.cfg, self.clock(), model)

    def quotas(self, pid: str | None = None) -> list[ProviderQuota]:
        pids = [pid] if pid is not None else sorted(self.providers)
        return [self.quota(p) for p in pids]

    # -- operations ------------------------------------------------------------------------------

    def rank(self, model: str, agent: str | None = None, session: str | None = None) -> Ranking:
        """The ranking for ``model`` (as ``agent`` and ``session`` see it), reused until state changes
        or time alone would change it.

        Harnesses ask for the same few models over and over; recomputing every provider's view per
        call would make ranking the daemon's hottest path. An agent's ranking differs from everyone
        else's only while that agent is over its budget, and a session's only by who holds its
        answer, so that is all the cache key carries.
        """
        if session is not None and not 0 < len(session) <= affinity.MAX_SESSION_LEN:
            raise InvalidInput(
                "invalid_session", f"session must be 1–{affinity.MAX_SESSION_LEN} characters", field="session"
            )
        now = self.clock()
        budgeted = self.cfg.budgets
        spend = self._fleet_spend(now) if budgeted.providers or budgeted.agents else self.spend
        agent_over = budgets.agent_over(spend, budgeted, now, agent)
        holder, holder_until = self.affinity.holder(self.cfg, model, session, now)
        cache_key = (model, agent_over, session if holder and holder.explain else None, holder)
        cached = self._rankings.get(cache_key)
        if cached is not None and cached[0] == self.version and (cached[2] is None or now < cached[2]):
            return self._answered(model, session, cached[1], now)
        if not model.strip():
            raise InvalidInput("invalid_model", "model must be a non-empty string")
        blocked: dict[str, str] = {}
        if budgeted.providers or budgeted.agents:
            paid = [pid for pid, pcfg in self.cfg.providers.items() if pcfg.kind is ProviderKind.API_KEY]
            blocked = budgets.blocked(spend, budgeted, now, paid, agent if agent_over else None)
        ranking, changes_at = routing.rank_until(model, self.providers, self.cfg, now, blocked, holder)
        for until in (
            budgets.next_month_start(now) if budgeted.providers or budgeted.agents else None,
            holder_until,
        ):
            # Budgets reset at the month's turn and a session's affinity lapses when it idles, with
            # no event to mark either.
            if until is not None:
                changes_at = until if changes_at is None else min(changes_at, until)
        if len(self._rankings) > 1024:
            self._rankings.clear()
        self._rankings[cache_key] = (self.version, ranking, changes_at)
        return self._answered(model, session, ranking, now)

    def _answered(self, model: str, session: str | None, ranking: Ranking, now: datetime) -> Ranking:
        chosen = _chosen(ranking)
        self.affinity.answered(model, session, chosen, now)
        p = self.providers.get(chosen) if chosen is not None else None
        if p is not None and start_trial(p, now, self.cfg.routing):
            # A half-open provider gets one trial call; until its answer, others are recommended.
            self.version += 1
        return ranking

    def reconfigure(self, cfg: Config) -> None:
        self.cfg = cfg
        self.version += 1

    def record_turn(self, turn: Turn) -> tuple[int, Ticket | None]:
        """Apply a turn and hand it to the writer: its id, and the ticket to wait on before
        acknowledging (``None``: a repeat of a stored turn, nothing new to wait for)."""
        key = turn.idempotency_key
        if key is not None and not _IDEMPOTENCY_KEY.match(key):
            raise InvalidInput(
                "invalid_idempotency_key",
                "idempotency_key must be 1–128 printable ASCII characters",
                field="idempotency_key",
            )
        now = self.clock()
        if key is not None:
            repeat = self._repeat(key, now.timestamp())
            if repeat is not None:
                return repeat
        p = self.provider(turn.provider)
        # "No agent" is one value everywhere (the rollups' keys, summaries, budgets).
        if turn.agent == "":
            turn.agent = None
        if turn.session == "":
            turn.session = None
        _check_turn(turn, now)
        if turn.at is not None:
            # The ledger compares times as UTC text; a naive time is taken to be UTC. (Checked first:
            # converting a time at the edge of the calendar can overflow.)
            turn.at = turn.at.replace(tzinfo=UTC) if turn.at.tzinfo is None else turn.at.astimezone(UTC)
        if turn.at is not None and turn.at > now:
            # Within the clock skew allowed: stored as now, never as a time that has not come.
            turn.at = now
        p = self.provider(turn.provider)
        at = turn.at or now
        reading = read_response(
            turn.headers,
            status_code=turn.status_code,
            error_body=turn.error_body,
            # The headers describe the quota when the response came, not when it was reported: a
            # turn reported late must not override a poll taken after it. A clock ahead of ours
            # must not make its reading outrank the next poll either.
            now=min(at, now),
            default_cooldown_s=bare_cooldown_s(p, self.cfg.routing),
        )
        if reading.limit_names:
            reading.windows = [_named_scope(w, reading.limit_names) for w in reading.windows]
        apply_turn(p, turn, reading, now, burn_window_s=self.cfg.routing.burn_window_s)
        ok = 200 <= turn.status_code < 400
        cached = turn.cache_read_tokens + turn.cache_write_tokens
        self.affinity.called(turn.session, turn.provider, turn.model, at, ok, cached)
        self.metrics.count_turn(turn.provider, turn.status_code)
        pcfg = self.cfg.providers.get(turn.provider)
        billed = (pcfg.kind if pcfg else ProviderKind.API_KEY) is ProviderKind.API_KEY
        if self._prices.overrides is not self.cfg.pricing:
            self._prices = pricing.PriceBook(self.cfg.pricing)  # the config was reloaded
        priced = self._prices.price_turn(
            turn.model,
            turn.input_tokens,
            turn.output_tokens,
            turn.cache_read_tokens,
            turn.cache_write_tokens,
            subscription=not billed,
            reported_usd=turn.cost_usd,
        )
        if priced.cost_usd:
            self.spend = budgets.add(self.spend, now, at, turn.provider, turn.agent, priced.cost_usd, billed)
        turn_id = self.next_turn_id
        self.next_turn_id += 1
        row = StoredTurn(
            id=turn_id,
            at=at,
            provider=turn.provider,
            model=turn.model,
            input_tokens=turn.input_tokens,
            output_tokens=turn.output_tokens,
            cache_read_tokens=turn.cache_read_tokens,
            cache_write_tokens=turn.cache_write_tokens,
            status_code=turn.status_code,
            session=turn.session,
            agent=turn.agent,
            latency_ms=turn.latency_ms,
            cost_usd=priced.cost_usd,
            pricing=priced.source,
            billed=billed,
            request_id=turn.request_id,
        )
        self.turns_stored += 1
        self.changed(turn.provider, "turn")
        for observer in self.observers:
            observer.turn_recorded(turn.provider)
        if key is None:
            return turn_id, self.writer.submit([row], (turn.provider,))
        ticket = self.writer.submit([row], (turn.provider,), {turn_id: (key, turn_id, now.timestamp())})
        self._keys[key] = (turn_id, ticket)
        self._key_order.append((now.timestamp() + IDEMPOTENCY_WINDOW_S, key))
        return turn_id, ticket

    def _repeat(self, key: str, now: float) -> tuple[int, Ticket | None] | None:
        """The earlier turn sent with ``key``, if it is stored or on its way; ``None`` if it is new.

        A turn whose storing failed is forgotten, so the client's retry stores it."""
        order = self._key_order
        while order and (order[0][0] <= now or len(order) > MAX_IDEMPOTENCY_KEYS):
            _, old = order.popleft()
            self._keys.pop(old, None)
        seen = self._keys.get(key)
        if seen is None:
            return None
        turn_id, ticket = seen
        if ticket is not None and ticket.done.is_set():
            if ticket.failure(turn_id) is not None:
                del self._keys[key]
                return None
            self._keys[key] = (turn_id, None)  # stored: drop the batch's ticket
            ticket = None
        return seen[0], ticket

    def set_quota(self, params: SetQuotaParams) -> tuple[ProviderQuota, Ticket]:
        for name, value in (("pct_remaining", params.pct_remaining), ("weekly_pct", params.weekly_pct)):
            if value is not None and not 0.0 <= value <= 100.0:
                raise OutOfRange(name, f"{name} must be 0–100, got {value}")
        if params.resets_at is not None:
            problem = time_problem(params.resets_at, self.clock(), ahead=RESET_HORIZON)
            if problem is not None:
                raise OutOfRange("resets_at", f"resets_at {problem}")
            params.resets_at = as_utc(params.resets_at)
        p = self.provider(params.provider)
        pcfg = self.cfg.providers.get(params.provider)
        kind = pcfg.kind if pcfg else ProviderKind.API_KEY
        merge_windows(p, manual_windows(params, kind, self.clock()))
        self.changed(params.provider, "manual")
        return self.quota(params.provider, params.model), self.writer.submit(dirty=(params.provider,))

    def report_windows(self, params: ReportParams) -> tuple[ProviderQuota, Ticket]:
        """Windows a harness read itself (Claude Code's statusline), merged like any other reading:
        newest wins. Times from the future are clamped to now, so a fast clock cannot pin a reading."""
        p = self.provider(params.provider)
        now = self.clock()
        if len(params.windows) > MAX_WINDOWS:
            raise OutOfRange("windows", f"at most {MAX_WINDOWS} windows per report")
        windows = []
        for w in params.windows:
            _check_window(w, now)  # every window first: nothing of a refused report is kept
            at = w.updated_at
            at = now if at is None else min(at.replace(tzinfo=UTC) if at.tzinfo is None else at, now)
            windows.append(msgspec.structs.replace(w, updated_at=at))
        if windows and (p.accepted_at is None or p.accepted_at < now):
            # Readings of a subscription's windows come from its responses: the harness's login
            # works, as a successful turn would prove.
            p.accepted_at = now
        if merge_windows(p, windows):
            self.changed(params.provider, "report")
        return self.quota(params.provider), self.writer.submit(dirty=(params.provider,))

    def price(
        self, provider: str, model: str, tokens: tuple[int, int, int, int], reported: float | None
    ) -> tuple[float | None, str | None, bool]:
        """``(cost_usd, pricing source, billed)`` for a call, by the same rule ``record_turn`` uses."""
        pcfg = self.cfg.providers.get(provider)
        billed = (pcfg.kind if pcfg else ProviderKind.API_KEY) is ProviderKind.API_KEY
        prices = self._prices  # the ingest's worker thread calls this too: read the book once
        if prices.overrides is not self.cfg.pricing:
            prices = pricing.PriceBook(self.cfg.pricing)
        priced = prices.price_turn(model, *tokens, subscription=not billed, reported_usd=reported)
        return priced.cost_usd, priced.source, billed

    def ingested(self, turns: list[StoredTurn]) -> None:
        """Account for calls the ingest stored: counts and this month's spend (budgets). Their quota
        effect already reached us through the harness's own windows; history must not skew the
        token-flow estimate, so only the ledger and budgets see them."""
        now = self.clock()
        touched: set[str] = set()
        for t in turns:
            p = self.providers.get(t.provider)
            if p is not None and t.at <= now and (p.accepted_at is None or t.at > p.accepted_at):
                p.accepted_at = t.at  # the harness's login worked for this call
                touched.add(t.provider)
            if t.cost_usd:
                self.spend = budgets.add(self.spend, now, t.at, t.provider, t.agent, t.cost_usd, t.billed)
            self.metrics.count_turn(t.provider, t.status_code)
        self.turns_stored += len(turns)
        if turns:
            self.version += 1
        for pid in sorted({t.provider for t in turns}):
            for observer in self.observers:
                observer.turn_recorded(pid)  # spend changed (shared state publishes it)
        for pid in sorted(touched):
            self.changed(pid, "ingest")
        if touched:
            self.writer.submit(dirty=touched)

    def cooldown_until(self, pid: str, until: datetime, reason: str) -> None:
        """A limit a harness log reported (Claude Code's "usage limit reached|<epoch>")."""
        now = self.clock()
        if until <= now:
            return
        if extend_cooldown(self.provider(pid), until, reason, now):
            self.changed(pid, "cooldown")
            self.writer.submit(dirty=(pid,))

    def clear_cooldown(
        self, params: ClearCooldownParams, peer_pid: int | None = None
    ) -> tuple[CooldownCleared, Ticket]:
        """A person lifts a cooldown (``bhoga cooldown clear``); the log keeps who lifted what."""
        model = params.model.strip()
        if not model:
            raise InvalidInput("invalid_model", "model must be a non-empty string (or '*')", field="model")
        p = self.provider(params.provider)
        lifted = clear_cooldown(p, model, self.clock())
        log.info(
            "cooldown cleared by hand" if lifted else "cooldown clear: nothing was running",
            provider=params.provider,
            model=model,
            lifted=lifted,
            peer_pid=peer_pid,
        )
        self.changed(params.provider, "cooldown_cleared")
        cleared = CooldownCleared(
            provider=params.provider, model=model, cleared=lifted, quota=self.quota(params.provider, model)
        )
        return cleared, self.writer.submit(dirty=(params.provider,))

    def apply_poll(self, pid: str, result: PollResult) -> Ticket:
        p = self.provider(pid)
        apply_poll(p, result)
        if p.last_poll_error != result.error:
            # Out-of-range values in the answer turned the poll into a failure; apply_poll says why.
            log.warning("provider answer out of range", provider=pid, error=p.last_poll_error)
        self.metrics.count_poll(pid, p.last_poll_error is None)
        self.changed(pid, "poll")
        return self.writer.submit(dirty=(pid,))

    # -- the ledger -----------------------------------------------------------------------------

    @property
    def state_dir(self) -> Path:
        """Where the ledger lives (for ``daemon.status``)."""
        return self.store.path.parent

    async def list_turns(self, params: ListTurnsParams) -> list[StoredTurn]:
        """Stored turns after ``after_id``, oldest first, including every turn acknowledged so far."""
        if not 1 <= params.limit <= 10_000:
            raise OutOfRange("limit", "limit must be 1–10000")
        if not -(2**63) <= params.after_id < 2**63:  # SQLite's integers (the fuzz suite's find)
            raise OutOfRange("after_id", "after_id must be a turn id (a 64-bit integer)")
        # Wait for pending writes first, so a caller reads its own acknowledged turns.
        await self.writer.settled()
        return await self._query(
            lambda: self.store.list_turns(params.after_id, params.limit, params.session, params.agent)
        )

    async def usage(self, params: UsageParams) -> UsageSummary:
        """Tokens and spend over the requested period, grouped as asked (``BadPeriod`` if empty)."""
        since, until = usage.resolve_period(params, self.clock())
        await self.writer.settled()  # a caller's own acknowledged turns are counted
        return await self._query(
            lambda: self.store.read(lambda conn: usage.summarise(conn, since, until, params.group_by))
        )

    async def _query(self, query: Callable[[], T]) -> T:
        """A read on the store's reader threads; one it cannot answer is raised as what it is."""
        try:
            return await self.writer.read(query)
        except StorageFailure as failure:
            raise StorageFailed(str(failure), kind=failure.kind, storage=True) from None

    def merge_shared(
        self,
        pid: str,
        windows: list[QuotaWindow],
        cooldown: tuple[datetime, str] | None,
        peer_flow_per_h: float,
        peer_consumed: int,
    ) -> None:
        """Fold in what other machines know of ``pid``'s account, by the same rules as local readings:
        the newest reading of a window wins, and a cooldown only grows."""
        p = self.providers.get(pid)
        if p is None:
            return
        now = self.clock()
        # Another machine's readings are as untrusted as a provider's: out of range, they are left out.
        windows, problem = checked_windows(windows, now)
        if problem is not None:
            log.warning("shared reading out of range", provider=pid, error=problem)
        changed = merge_windows(p, windows)
        if cooldown is not None and cooldown[0] > now:
            changed = extend_cooldown(p, cooldown[0], cooldown[1], now) or changed
        if (p.peer_flow_per_h, p.peer_consumed) != (peer_flow_per_h, peer_consumed):
            p.peer_flow_per_h, p.peer_consumed = peer_flow_per_h, peer_consumed
            self.version += 1  # pace ranks with the fleet's burn; nothing a subscriber shows
        if changed:
            self.changed(pid, "shared")
            self.writer.submit(dirty=(pid,))

    def _fleet_spend(self, now: datetime) -> budgets.Spend:
        """This month's spend on every machine; recomputed only when it changes (``version``)."""
        if self.peer_spend is None:
            return self.spend
        if self._fleet_spend_cache is None or self._fleet_spend_cache[0] != self.version:
            self._fleet_spend_cache = (self.version, budgets.combined(self.spend, self.peer_spend, now))
        return self._fleet_spend_cache[1]

    def set_peer_spend(self, spend: budgets.Spend | None) -> None:
        if spend != self.peer_spend:
            self.peer_spend = spend
            self.version += 1

    # -- events ----------------------------------------------------------------------------------

    def changed(self, pid: str, cause: str) -> None:
        """Note a change of ``pid``, and push ``quota.changed`` to subscribers if they would see it."""
        self.version += 1
        for observer in self.observers:
            observer.quota_changed(pid, cause)
        if not len(self.events):
            return
        quota = self.quota(pid)
        sig = signature(quota)
        if self._signatures.get(pid) == sig:
            return
        self._signatures[pid] = sig
        self.events.publish(QuotaChanged(provider=pid, cause=cause, quota=quota))


async def durable(ticket: Ticket | None, turn_id: int | None = None) -> None:
    """Wait until the change behind ``ticket`` (for a turn: that turn) is committed; a failure is
    raised as what it is (``kind``: disk full, read-only, permission denied, a value out of range).
    ``None`` is a repeat of something already stored: nothing to wait for."""
    if ticket is None:
        return
    await ticket.wait()
    failure = ticket.failure(turn_id)
    if failure is None:
        return
    if failure.invalid:
        raise InvalidInput(failure.kind, str(failure), storage=True)
    raise StorageFailed(str(failure), kind=failure.kind, storage=True)


def _chosen(ranking: Ranking) -> str | None:
    return ranking.recommendation.provider_id if ranking.recommendation is not None else None


def _named_scope(w: QuotaWindow, names: dict[str, str]) -> QuotaWindow:
    """A named extra limit (Codex's Spark family) scoped to the model it names, as the poller
    scopes it: then a header reading and a poll are one window, the newer wins, and it limits the
    model it belongs to instead of none."""
    limit_id = w.scope.removeprefix("limit:")
    if limit_id == w.scope or limit_id not in names:
        return w
    return msgspec.structs.replace(w, scope=model_scope(names[limit_id], limit_id))


def _check_window(w: QuotaWindow, now: datetime) -> None:
    problem = window_problem(w, now)
    if problem is not None:
        raise OutOfRange("windows", problem)


def _check_turn(turn: Turn, now: datetime) -> None:
    """The harness's numbers and times, held to the bounds of :mod:`bhoga.quota.values`; an error
    names the field, and nothing of a refused turn is kept."""
    if not _PROVIDER_ID.match(turn.provider):
        raise InvalidInput("invalid_provider", "provider must be a short id like 'claude_code'")
    if not turn.model.strip():
        raise InvalidInput("invalid_model", "model must be a non-empty string")
    for name in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens"):
        if not 0 <= getattr(turn, name) <= MAX_TOKENS:
            raise OutOfRange(name, f"{name} must be 0–{MAX_TOKENS:,}")
    if not 0 <= turn.status_code <= 999:
        raise OutOfRange("status_code", "status_code must be an HTTP status (0 for no response)")
    if turn.request_id is not None and not 0 < len(turn.request_id) <= 256:
        raise OutOfRange("request_id", "request_id must be 1–256 characters")
    if turn.cost_usd is not None and not 0.0 <= turn.cost_usd < 1e6:
        raise OutOfRange("cost_usd", "cost_usd must be a non-negative number of US dollars")
    if turn.latency_ms is not None and not 0.0 <= turn.latency_ms <= _MAX_LATENCY_MS:
        raise OutOfRange("latency_ms", "latency_ms must be 0 to one day in milliseconds")
    if turn.at is not None:
        # A turn from the future would be the newest evidence of everything until then, and dates
        # near year 9999 overflow every later computation that adds a duration to them.
        problem = time_problem(turn.at, now, ahead=CLOCK_SKEW)
        if problem is not None:
            raise OutOfRange("at", f"at {problem}")


#: A call that took longer than a day did not happen as reported.
_MAX_LATENCY_MS = 86_400_000.0
