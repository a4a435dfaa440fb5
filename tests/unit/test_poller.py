"""The schedule: cadence, backoff, the 429 gate, single-flight refresh, isolation between providers,
and logging in while the daemon runs. The schedule itself is pure and tested as such (no wall-clock
gaps on a shared machine); the rest runs a real QuotaKeeper and store, real HTTP, real drivers."""

from __future__ import annotations

import json
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from bhogad import config
from bhogad.config import ProviderConfig
from bhogad.discovery.poller import RATE_LIMIT_FLOOR_S, Policy, Poller, Schedule, after_poll, next_delay
from bhogad.discovery.providers import DRIVERS
from bhogad.discovery.providers.base import Context, Driver, Kind
from bhogad.domain.keeper import QuotaKeeper
from bhogad.domain.state import Availability, PollResult
from bhogad.storage.store import Store
from tests.fakes.driving import base_env
from tests.fakes.fixtures import load, to_now
from tests.fakes.http_server import FakeServer, Reply, serving

USAGE = "/api/oauth/usage"
FAST = Policy(recheck_s=0.2, backoff_s=0.1, max_backoff_s=5.0, first_poll_s=0.05, sync_s=0.1)


# --------------------------------------------------------------------------------------------------
# The pure schedule


def test_next_delay() -> None:
    policy = Policy()
    rand = random.Random(7)
    ok = [next_delay(Kind.OK, 0, 300, policy, rand) for _ in range(200)]
    assert min(ok) >= 270 and max(ok) <= 330 and len(set(ok)) > 100  # jittered ±10 %
    assert 54 <= next_delay(Kind.LOCAL, 0, 300, policy, rand) <= 66  # re-read local state soon
    assert next_delay(Kind.LOCAL, 0, 10, policy, rand) <= 11
    backoffs = [next_delay(Kind.TRANSIENT, n, 300, policy, random.Random(0)) for n in range(1, 9)]
    assert backoffs == sorted(backoffs)
    assert 54 <= backoffs[0] <= 66 and 108 <= backoffs[1] <= 132 and backoffs[-1] <= 3960
    # A 429 waits five minutes at least, whatever the backoff says.
    assert all(next_delay(Kind.RATE_LIMITED, 1, 1, FAST, rand) >= RATE_LIMIT_FLOOR_S for _ in range(50))
    assert next_delay(Kind.RATE_LIMITED, 8, 300, policy, random.Random(0)) > RATE_LIMIT_FLOOR_S


NOW = datetime(2026, 5, 1, 12, tzinfo=UTC)
UP = Availability(available=True, reason="signed in")


def ended(kind: Kind, not_before: datetime | None = None) -> PollResult:
    return PollResult(at=NOW, availability=UP, kind=kind, not_before=not_before)


def test_backoff_doubles_and_a_success_resets_it() -> None:
    policy, rand = Policy(jitter=0.0), random.Random(1)
    schedule = Schedule()
    delays = []
    for _ in range(8):
        schedule = after_poll(schedule, ended(Kind.TRANSIENT), NOW, 300, policy, rand)
        delays.append(schedule.delay_s)
    assert delays == [60, 120, 240, 480, 960, 1920, 3600, 3600]  # doubling, capped at an hour
    assert schedule.failures == 8
    # A poll that sent nothing (signed out) neither counts as a failure nor forgives one.
    schedule = after_poll(schedule, ended(Kind.LOCAL), NOW, 300, policy, rand)
    assert schedule.failures == 8 and schedule.delay_s == 60
    schedule = after_poll(schedule, ended(Kind.OK), NOW, 300, policy, rand)
    assert schedule == Schedule(failures=0, blocked_until=None, delay_s=300)
    schedule = after_poll(schedule, ended(Kind.PROTOCOL), NOW, 300, policy, rand)
    assert schedule.failures == 1 and schedule.delay_s == 60


def test_the_429_gate_only_grows_and_a_success_ends_it() -> None:
    policy, rand = Policy(jitter=0.0), random.Random(1)
    later = NOW + timedelta(hours=2)
    schedule = after_poll(Schedule(), ended(Kind.RATE_LIMITED, later), NOW, 300, policy, rand)
    assert schedule.blocked_until == later and schedule.delay_s == 7200  # retry-after beyond the floor
    sooner = NOW + timedelta(minutes=1)
    schedule = after_poll(schedule, ended(Kind.RATE_LIMITED, sooner), NOW, 300, policy, rand)
    assert schedule.blocked_until == later  # a shorter 429 later does not release it early
    assert schedule.delay_s == RATE_LIMIT_FLOOR_S  # the five-minute floor, not the one minute it said
    assert schedule.failures == 2
    # A failure of another kind keeps the gate; a success without a new 429 ends it.
    schedule = after_poll(schedule, ended(Kind.TRANSIENT), NOW, 300, policy, rand)
    assert schedule.blocked_until == later
    schedule = after_poll(schedule, ended(Kind.OK), NOW, 300, policy, rand)
    assert schedule.blocked_until is None and schedule.failures == 0


# --------------------------------------------------------------------------------------------------
# A running poller


class Clock:
    """The daemon's clock, movable by tests; it starts at the wall clock (the poller sleeps in real
    time), so fixtures are served moved to it with :func:`fresh`."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now


START = Clock()


def fresh(name: str) -> Any:
    return to_now(load(name), START.now)


def only(pid: str, **settings: Any) -> dict[str, Any]:
    """Config with every built-in provider disabled except ``pid``."""
    providers: dict[str, Any] = {p: {"enabled": False} for p in config.DEFAULT_PROVIDERS}
    providers[pid] = settings
    return {"providers": providers}


def claude_home(tmp_path: Path, clock: Clock) -> Path:
    creds = load("claude-credentials.json")
    creds["claudeAiOauth"]["expiresAt"] = int((clock.now + timedelta(days=1)).timestamp() * 1000)
    home = tmp_path / "home"
    (home / ".claude").mkdir(parents=True, exist_ok=True)
    (home / ".claude" / ".credentials.json").write_text(json.dumps(creds))
    return home


Body = Callable[[QuotaKeeper, Poller], Awaitable[None]]


def run(
    tmp_path: Path,
    overrides: dict[str, Any],
    env: dict[str, str],
    body: Body,
    clock: Clock | None = None,
    drivers: dict[str, Callable[[], Driver]] | None = None,
) -> None:
    async def main() -> None:
        store = Store.open(tmp_path / "state")
        try:
            daemon = QuotaKeeper(config.build(overrides), store, clock or Clock())
            daemon.load()
            async with anyio.create_task_group() as tg, httpx.AsyncClient(trust_env=False) as http:
                tg.start_soon(daemon.writer.run)
                poller = Poller(
                    daemon, http, env=env, policy=FAST, rand=random.Random(3), drivers=drivers or DRIVERS
                )
                tg.start_soon(poller.run)
                with anyio.fail_after(30):
                    await body(daemon, poller)
                tg.cancel_scope.cancel()
        finally:
            store.close()

    anyio.run(main)


async def until(check: Callable[[], bool], within: float = 10.0) -> None:
    # Polling a predicate: the states waited for have no event of their own.
    with anyio.fail_after(within):
        while not check():  # noqa: ASYNC110
            await anyio.sleep(0.02)


@pytest.fixture
def claude() -> FakeServer:
    with serving() as s:
        s.route(USAGE, fresh("claude-oauth-usage.json"))
        yield s  # type: ignore[misc]


def test_first_poll_comes_at_once_and_fills_the_quota(claude: FakeServer, tmp_path: Path) -> None:
    clock = Clock()
    clock.now = START.now
    env = base_env(claude_home(tmp_path, clock))

    async def body(daemon: QuotaKeeper, poller: Poller) -> None:
        await until(lambda: daemon.quota("claude_code").last_poll_at is not None)
        q = daemon.quota("claude_code")
        assert q.available and q.last_poll_error is None
        assert q.windows["weekly"].pct_used == 61.0 and q.windows["weekly"].source == "oauth"
        assert daemon.quota("claude_code", "claude-opus-4").quota_pct == pytest.approx(0.39)
        await anyio.sleep(0.5)
        assert len(claude.to(USAGE)) == 1  # the next one is poll_interval_s away

    run(tmp_path, only("claude_code", base_url=claude.url), env, body, clock)


def test_refresh_joins_the_poll_in_flight(claude: FakeServer, tmp_path: Path) -> None:
    clock = Clock()
    clock.now = START.now
    env = base_env(claude_home(tmp_path, clock))
    claude.route(USAGE, Reply(body=fresh("claude-oauth-usage.json"), delay_s=0.6))

    async def body(daemon: QuotaKeeper, poller: Poller) -> None:
        await until(lambda: len(claude.to(USAGE)) == 1)  # the first scheduled poll is in flight
        results: list[Any] = []

        async def refresh() -> None:
            results.append(await poller.refresh("claude_code"))

        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(refresh)
        assert len(claude.to(USAGE)) == 1
        assert all(r[0].windows["burst"].pct_used == 37.0 for r in results)
        # With nothing in flight, a refresh polls now.
        await poller.refresh("claude_code")
        assert len(claude.to(USAGE)) == 2
        everything = await poller.refresh()
        assert {q.provider_id for q in everything} >= {"claude_code", "openai-codex"}

    run(tmp_path, only("claude_code", base_url=claude.url), env, body, clock)


def test_429_gate_holds_even_against_refresh(claude: FakeServer, tmp_path: Path) -> None:
    clock = Clock()
    clock.now = START.now
    env = base_env(claude_home(tmp_path, clock))
    claude.route(USAGE, Reply(429, load("claude-oauth-usage-429.json")["body"], {"retry-after": "0"}))

    async def body(daemon: QuotaKeeper, poller: Poller) -> None:
        await until(lambda: daemon.quota("claude_code").last_poll_error is not None)
        p = poller.pollers["claude_code"]
        assert p.blocked_until is not None and p.blocked_until >= clock.now + timedelta(minutes=5)
        assert p.due - anyio.current_time() >= RATE_LIMIT_FLOOR_S - 1
        assert "HTTP 429" in (daemon.quota("claude_code").last_poll_error or "")
        for _ in range(3):
            await poller.refresh("claude_code")
        assert len(claude.to(USAGE)) == 1
        # Once the gate has passed, a refresh goes through and a success clears it.
        clock.now += timedelta(minutes=6)
        claude.route(USAGE, fresh("claude-oauth-usage.json"))
        await poller.refresh("claude_code")
        assert len(claude.to(USAGE)) == 2 and p.blocked_until is None
        assert daemon.quota("claude_code").last_poll_error is None

    run(tmp_path, only("claude_code", base_url=claude.url), env, body, clock)


def test_failures_are_counted_and_a_success_resets_them(claude: FakeServer, tmp_path: Path) -> None:
    clock = Clock()
    clock.now = START.now
    env = base_env(claude_home(tmp_path, clock))
    claude.push(USAGE, *[Reply(500, b"down")] * 3)

    async def body(daemon: QuotaKeeper, poller: Poller) -> None:
        # The real poller follows the pure schedule above: three failures, then a success.
        await until(lambda: len(claude.to(USAGE)) >= 4)
        await until(lambda: daemon.quota("claude_code").last_poll_error is None)
        assert poller.pollers["claude_code"].failures == 0
        assert "weekly" in daemon.quota("claude_code").windows

    run(tmp_path, only("claude_code", base_url=claude.url, poll_interval_s=60), env, body, clock)


def test_failed_polls_keep_the_last_good_windows_until_stale(claude: FakeServer, tmp_path: Path) -> None:
    clock = Clock()
    clock.now = START.now
    env = base_env(claude_home(tmp_path, clock))

    async def body(daemon: QuotaKeeper, poller: Poller) -> None:
        await until(lambda: "weekly" in daemon.quota("claude_code").windows)
        claude.route(USAGE, Reply(500, b"down"))
        clock.now += timedelta(minutes=10)
        await poller.refresh("claude_code")
        q = daemon.quota("claude_code")
        assert "HTTP 500" in (q.last_poll_error or "")
        assert q.windows["weekly"].pct_used == 61.0 and not q.windows["weekly"].stale
        clock.now += timedelta(minutes=30)
        q = daemon.quota("claude_code")
        assert q.windows["weekly"].stale and q.quota_pct == -1.0  # stale, never "100 % left"

    run(tmp_path, only("claude_code", base_url=claude.url, stale_after_s=1200), env, body, clock)


def test_a_hanging_provider_does_not_delay_another(claude: FakeServer, tmp_path: Path) -> None:
    clock = Clock()
    clock.now = START.now
    env = base_env(claude_home(tmp_path, clock), OPENROUTER_API_KEY="sk-or-v1-x")
    claude.route(USAGE, Reply(body={}, delay_s=20))
    overrides = only("claude_code", base_url=claude.url, poll_timeout_s=15)
    with serving() as openrouter:
        openrouter.route("/api/v1/key", fresh("openrouter-key.json"))
        openrouter.route("/api/v1/credits", fresh("openrouter-credits.json"))
        overrides["providers"]["openrouter"] = {
            "base_url": openrouter.url + "/api/v1",
            "poll_interval_s": 0.2,
        }

        async def body(daemon: QuotaKeeper, poller: Poller) -> None:
            await until(lambda: len(openrouter.to("/api/v1/key")) >= 5, within=5)
            assert poller.pollers["claude_code"].inflight is not None  # still stuck
            assert daemon.quota("openrouter").windows["monthly"].pct_used == pytest.approx(25.5)

        run(tmp_path, overrides, env, body, clock)


def test_logging_in_later_just_works(claude: FakeServer, tmp_path: Path) -> None:
    clock = Clock()
    clock.now = START.now
    home = tmp_path / "home"
    home.mkdir()
    env = base_env(home)

    async def body(daemon: QuotaKeeper, poller: Poller) -> None:
        await until(lambda: "claude_code" in poller.pollers and poller.pollers["claude_code"].polls >= 2)
        q = daemon.quota("claude_code")
        assert not q.available and "not signed in to Claude Code" in q.reason
        # Nothing a client could see changed, so nothing was written or announced.
        assert daemon.writer.commits == 0 and q.last_poll_at is None
        claude_home(tmp_path, clock)
        await until(lambda: daemon.quota("claude_code").available, within=3)
        await until(lambda: "burst" in daemon.quota("claude_code").windows, within=3)

    run(tmp_path, only("claude_code", base_url=claude.url), env, body, clock)


class CrashingDriver:
    polls = True
    calls = 0

    def budget_s(self, cfg: ProviderConfig) -> float:
        return 0.3

    async def poll(self, ctx: Context) -> PollResult:
        CrashingDriver.calls += 1
        if CrashingDriver.calls == 1:
            raise RuntimeError(f"bug while holding {ctx.env['SECRET_TOKEN']}")
        if CrashingDriver.calls == 2:
            await anyio.sleep(10)  # longer than the budget
        return ctx.result(Availability(available=True, reason="fine"))


def test_driver_bugs_and_hangs_are_contained(tmp_path: Path) -> None:
    token = "sk-ant-oat01-SECRETSECRETSECRET"
    env = {"SECRET_TOKEN": token, "HOME": str(tmp_path)}
    overrides = only("claude_code")

    async def body(daemon: QuotaKeeper, poller: Poller) -> None:
        await until(lambda: daemon.quota("claude_code").last_poll_error is not None)
        error = daemon.quota("claude_code").last_poll_error or ""
        assert "internal error reading the quota (RuntimeError)" in error and token not in error
        await until(lambda: "timed out after 0.3 s" in (daemon.quota("claude_code").last_poll_error or ""))
        await until(lambda: daemon.quota("claude_code").last_poll_error is None)
        assert daemon.quota("claude_code").reason == "fine"

    # The built-in driver's name, served by the crashing one: the config names only real drivers.
    run(tmp_path, overrides, env, body, drivers={"claude_code": CrashingDriver})


def test_config_reload_starts_and_stops_pollers(claude: FakeServer, tmp_path: Path) -> None:
    clock = Clock()
    clock.now = START.now
    env = base_env(claude_home(tmp_path, clock))

    async def body(daemon: QuotaKeeper, poller: Poller) -> None:
        assert "claude_code" not in poller.pollers or not daemon.cfg.providers["claude_code"].enabled
        daemon.cfg = config.build(only("claude_code", base_url=claude.url))
        await until(lambda: "burst" in daemon.quota("claude_code").windows)
        # Another driver (one that never polls): the old poller stops.
        daemon.cfg = config.build(only("claude_code", base_url=claude.url, options={"driver": "api_key"}))
        await until(lambda: "claude_code" not in poller.pollers)

    run(tmp_path, only("claude_code", enabled=False), env, body, clock)
