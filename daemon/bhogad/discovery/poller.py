"""Discovery on a schedule: one poller per provider, each on its own jittered cadence.

Each provider's poller is independent — its own task, its own timeout, its own backoff — so a
provider that hangs or fails never delays another. A poll runs in the poller's task group, never in
a client's: ``quota.refresh`` starts one (or joins the one in flight: single-flight) and waits for it,
and a client hanging up cannot cancel a poll half-way.

When to poll again:

* numbers read → the provider's ``poll_interval_s``;
* nothing sent (not signed in, token expired or already refused) → re-read local state within a
  minute, so logging in later just works;
* a 429 → at least five minutes, or the ``retry-after`` when longer; ``quota.refresh`` does not
  break that gate (hammering a usage endpoint is what keeps it saying 429);
* anything else → exponential backoff from a minute to an hour.

Every delay gets ±10 % jitter, so pollers (and daemons) do not fall into step. Per provider, config
sets ``poll_interval_s``, ``poll_timeout_s`` and, in ``options``, ``recheck_s`` (how soon local state
is re-read) and ``driver`` (which discovery module serves the provider; see ``bhogad.discovery.providers``).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import anyio
import anyio.abc
import httpx
import structlog

from bhoga.protocol import ProviderQuota
from bhogad.config import ProviderConfig
from bhogad.discovery.options import recheck_s
from bhogad.discovery.providers import DRIVERS, driver_name
from bhogad.discovery.providers.base import Context, Driver, Kind, redact, scrub
from bhogad.discovery.providers.http import RATE_LIMIT_FLOOR
from bhogad.domain.keeper import QuotaKeeper
from bhogad.domain.state import Availability, PollResult

log = structlog.get_logger("bhogad.discovery.poller")

RATE_LIMIT_FLOOR_S: Final = RATE_LIMIT_FLOOR.total_seconds()


@dataclass(frozen=True)
class Policy:
    #: How soon local state (credential files, environment) is looked at again when nothing was sent.
    recheck_s: float = 60.0
    #: The first retry after a failure; it doubles with each further failure, up to ``max_backoff_s``.
    backoff_s: float = 60.0
    max_backoff_s: float = 3600.0
    jitter: float = 0.1
    #: The first poll after start comes within this, so a fresh daemon knows its quotas at once.
    first_poll_s: float = 1.0
    #: How often the provider list is compared with the (reloadable) config.
    sync_s: float = 5.0


def next_delay(kind: Kind, failures: int, interval_s: float, policy: Policy, rand: random.Random) -> float:
    """Seconds until the next poll after a poll that ended as ``kind`` (the ``failures``-th in a row)."""

    def jittered(seconds: float) -> float:
        return seconds * rand.uniform(1.0 - policy.jitter, 1.0 + policy.jitter)

    if kind is Kind.OK:
        return jittered(interval_s)
    if kind is Kind.LOCAL:
        return jittered(min(interval_s, policy.recheck_s))
    backoff = jittered(min(policy.max_backoff_s, policy.backoff_s * 2.0 ** max(0, failures - 1)))
    if kind is Kind.RATE_LIMITED:
        # The floor is not jittered down: five minutes is the least a 429 gets.
        return max(RATE_LIMIT_FLOOR_S, backoff)
    return backoff


@dataclass(frozen=True)
class Schedule:
    """Where a provider's poller stands after a poll: what decides the next one."""

    #: Consecutive failed polls (transient, protocol or rate limited).
    failures: int = 0
    #: A usage endpoint said 429: no poll, not even a requested one, before this.
    blocked_until: datetime | None = None
    #: Seconds from now until the next scheduled poll.
    delay_s: float = 0.0


def after_poll(
    before: Schedule,
    result: PollResult,
    now: datetime,
    interval_s: float,
    policy: Policy,
    rand: random.Random,
) -> Schedule:
    """The schedule after a poll that ended in ``result``. Pure: the clock and the dice come in.

    Failures count up (a poll that sent nothing leaves the count alone) and a success resets them;
    the 429 gate only ever grows while it lasts, and a success without a new 429 ends it.
    """
    if result.kind is Kind.OK:
        failures = 0
    elif result.kind is not Kind.LOCAL:
        failures = before.failures + 1
    else:
        failures = before.failures
    delay = next_delay(result.kind, failures, interval_s, policy, rand)
    blocked_until = before.blocked_until
    if result.not_before is not None:
        if blocked_until is None or result.not_before > blocked_until:
            blocked_until = result.not_before
        delay = max(delay, (result.not_before - now).total_seconds())
    elif result.kind is Kind.OK:
        blocked_until = None
    return Schedule(failures=failures, blocked_until=blocked_until, delay_s=delay)


class ProviderPoller:
    def __init__(self, pid: str, name: str, driver: Driver, owner: Poller) -> None:
        self.pid = pid
        self.driver_name = name
        self.driver = driver
        self.owner = owner
        self.schedule = Schedule()
        #: When (``anyio.current_time()``) the next scheduled poll is due.
        self.due = 0.0
        self.inflight: anyio.Event | None = None
        self.last: PollResult | None = None
        self.polls = 0
        self.scope = anyio.CancelScope()
        self._wake = anyio.Event()

    # -- scheduling ------------------------------------------------------------------------------

    async def loop(self) -> None:
        with self.scope:
            policy = self.owner.policy
            self.due = anyio.current_time() + self.owner.rand.uniform(0.0, policy.first_poll_s)
            while True:
                delay = self.due - anyio.current_time()
                if delay > 0:
                    # A requested poll wakes us, so the schedule is recomputed from its outcome.
                    with anyio.move_on_after(delay):
                        await self._wake.wait()
                    self._wake = anyio.Event()
                    continue
                await self.trigger(respect_gate=False).wait()

    @property
    def failures(self) -> int:
        """Consecutive failed polls (transient, protocol or rate limited)."""
        return self.schedule.failures

    @property
    def blocked_until(self) -> datetime | None:
        """A usage endpoint said 429: no poll, not even a requested one, before this."""
        return self.schedule.blocked_until

    def gated(self) -> bool:
        return self.blocked_until is not None and self.owner.daemon.clock() < self.blocked_until

    def trigger(self, *, respect_gate: bool = True) -> anyio.Event:
        """Start a poll unless one is in flight; either way, the event is set when it is done."""
        if self.inflight is not None:
            return self.inflight
        tg = self.owner.task_group
        if tg is None or (respect_gate and self.gated()):
            done = anyio.Event()
            done.set()
            return done
        self.inflight = anyio.Event()
        tg.start_soon(self._run, self.inflight)
        return self.inflight

    async def _run(self, done: anyio.Event) -> None:
        try:
            await self._poll()
        finally:
            self.inflight = None
            done.set()
            self._wake.set()

    # -- one poll --------------------------------------------------------------------------------

    def _known_availability(self) -> Availability:
        held = self.owner.daemon.providers.get(self.pid)
        if held is not None and held.detected is not None:
            return held.detected
        return Availability(available=False, reason="quota discovery has not finished yet")

    async def _poll(self) -> None:
        daemon = self.owner.daemon
        policy = self.owner.policy
        pcfg = daemon.cfg.providers.get(self.pid)
        if pcfg is None or not pcfg.enabled:
            # Disabled or removed by a config reload; state.availability already says so.
            self.due = anyio.current_time() + policy.recheck_s
            return
        lease = self.owner.lease
        if lease is not None:
            # Several machines on one account: one polls its usage endpoint (which rate-limits
            # pollers per token), the others read its numbers from shared state.
            wait = await lease(self.pid)
            if wait is not None:
                self.due = anyio.current_time() + wait
                return
        ctx = Context(pid=self.pid, cfg=pcfg, http=self.owner.http, env=self.owner.env, now=daemon.clock)
        budget = self.driver.budget_s(pcfg)
        outcome: PollResult | None = None
        with anyio.move_on_after(budget):
            try:
                outcome = await self.driver.poll(ctx)
            except Exception as exc:  # a driver bug must not stop this poller, let alone the others
                log.error(
                    "discovery failed unexpectedly",
                    provider=self.pid,
                    error=redact(f"{type(exc).__name__}: {exc}", ctx.secrets),
                )
                outcome = ctx.result(
                    self._known_availability(),
                    error=f"internal error reading the quota ({type(exc).__name__}); see the daemon log",
                    kind=Kind.TRANSIENT,
                )
        if outcome is None:
            outcome = ctx.result(
                self._known_availability(),
                error=f"reading the quota timed out after {budget:g} s",
                kind=Kind.TRANSIENT,
            )
        # The one place every driver's answer passes: nothing it read may carry the credential it
        # sent onward to the state, the store, the log or a client.
        outcome = scrub(outcome, ctx.secrets)
        if outcome.error is not None:
            outcome.error = redact(outcome.error, ctx.secrets)
        self.polls += 1
        self._apply(outcome)
        self._schedule(outcome, pcfg)

    def _apply(self, outcome: PollResult) -> None:
        daemon = self.owner.daemon
        p = daemon.provider(self.pid)
        previous = self.last
        self.last = outcome
        if (
            not outcome.availability.available
            and not outcome.windows
            and outcome.error is None
            and p.last_poll_error is None
            and (p.detected is None or p.detected == outcome.availability)
        ):
            # Nothing a client could notice changed (a machine without this provider): no event to
            # subscribers, no write to the store, every minute, forever.
            p.detected = outcome.availability
            return
        if outcome.error != (previous.error if previous else None):
            if outcome.error is None:
                log.info("quota readable again", provider=self.pid)
            else:
                log.warning("quota not read", provider=self.pid, error=outcome.error, kind=outcome.kind.value)
        log.debug("polled", provider=self.pid, windows=len(outcome.windows), kind=outcome.kind.value)
        daemon.apply_poll(self.pid, outcome)

    def _schedule(self, outcome: PollResult, pcfg: ProviderConfig) -> None:
        policy = self.owner.policy
        recheck = recheck_s(pcfg.options)
        if recheck is not None:
            # How soon a login is noticed is a per-provider choice (tests, or a slow Keychain).
            policy = dataclasses.replace(policy, recheck_s=recheck)
        now = self.owner.daemon.clock()
        self.schedule = after_poll(self.schedule, outcome, now, pcfg.poll_interval_s, policy, self.owner.rand)
        self.due = anyio.current_time() + self.schedule.delay_s


class Poller:
    """Every provider's poller, kept in step with the daemon's (reloadable) config."""

    def __init__(
        self,
        daemon: QuotaKeeper,
        http: httpx.AsyncClient,
        *,
        env: Mapping[str, str],
        policy: Policy | None = None,
        rand: random.Random | None = None,
        drivers: Mapping[str, Callable[[], Driver]] = DRIVERS,
    ) -> None:
        self.daemon = daemon
        self.drivers = drivers
        self.http = http
        self.env = env
        self.policy = policy or Policy()
        self.rand = rand or random.Random()
        self.pollers: dict[str, ProviderPoller] = {}
        self._unknown: set[str] = set()
        self.task_group: anyio.abc.TaskGroup | None = None
        #: Asked before each poll when machines share state: ``None`` to poll, or seconds to wait
        #: because another machine holds this account's poll lease.
        self.lease: Callable[[str], Awaitable[float | None]] | None = None

    async def run(self) -> None:
        async with anyio.create_task_group() as tg:
            self.task_group = tg
            try:
                while True:
                    self.sync()
                    await anyio.sleep(self.policy.sync_s)
            finally:
                self.task_group = None

    def sync(self) -> None:
        """Start pollers for providers that gained a polling driver; stop those that lost it."""
        tg = self.task_group
        assert tg is not None
        wanted: dict[str, str] = {}
        for pid, pcfg in self.daemon.cfg.providers.items():
            name = driver_name(pid, pcfg)
            if name is not None and name in self.drivers:
                wanted[pid] = name
            elif name is not None and pid not in self._unknown:
                self._unknown.add(pid)
                log.warning("no such discovery driver", provider=pid, driver=name, known=sorted(self.drivers))
        for pid in list(self.pollers):
            if wanted.get(pid) != self.pollers[pid].driver_name:
                self.pollers.pop(pid).scope.cancel()
        for pid, name in wanted.items():
            if pid in self.pollers:
                continue
            driver = self.drivers[name]()
            if not driver.polls:
                continue  # API keys: their windows come from turn headers, availability from the env
            poller = ProviderPoller(pid, name, driver, self)
            self.pollers[pid] = poller
            tg.start_soon(poller.loop)

    async def refresh(self, pid: str | None = None) -> list[ProviderQuota]:
        """Poll now (joining polls in flight) and return the quotas; ``None`` means every provider."""
        targets = list(self.pollers.values()) if pid is None else [p for p in (self.pollers.get(pid),) if p]
        for done in [target.trigger() for target in targets]:
            await done.wait()
        return [self.daemon.quota(pid)] if pid is not None else self.daemon.quotas()
