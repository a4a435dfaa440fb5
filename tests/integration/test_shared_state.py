"""Several machines, one account: three real bhogad processes, each with its own socket, state and
home, pointed at one real Redis server (Debian's ``redis-server``, started here) and at one fake
Claude usage endpoint. Every home holds the same Claude organisation in ``.claude.json``, so the
three discover that they share one quota; nothing in the config says so.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bhoga import Router
from tests.conftest import DaemonProcess
from tests.fakes.fixtures import load, to_now
from tests.fakes.http_server import FakeServer, serving
from tests.fakes.redis_server import RedisServer, make_tls_files, server_binary

CLAUDE_USAGE = "/api/oauth/usage"
CLAUDE_TOKEN = load("claude-credentials.json")["claudeAiOauth"]["accessToken"]
ORG = "00000000-0000-4000-8000-00000000b001"
ACCOUNT = f"claude:{ORG}"
API_KEY = "sk-ant-api03-PLANTEDsecretPLANTEDsecret0000"
OPUS = "claude-opus-4"
POLL_S = 1.5

pytestmark = pytest.mark.skipif(
    server_binary() is None,
    reason="no redis-server or valkey-server on PATH (.ci/run installs Debian's redis-server)",
)


@pytest.fixture
def redis(tmp_root: Path) -> Iterator[RedisServer]:
    binary = server_binary()
    assert binary is not None
    server = RedisServer(tmp_root / "redis", binary)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def claude() -> Iterator[FakeServer]:
    with serving() as s:
        s.route(CLAUDE_USAGE, to_now(load("claude-oauth-usage.json")))
        yield s


def write_login(home: Path) -> None:
    (home / ".claude").mkdir(parents=True, exist_ok=True)
    creds = to_now(load("claude-credentials.json"))
    (home / ".claude" / ".credentials.json").write_text(json.dumps(creds))
    # What Claude Code itself writes about the signed-in account: the identity bhoga shares by.
    (home / ".claude.json").write_text(
        json.dumps({"oauthAccount": {"accountUuid": "acct-1", "organizationUuid": ORG}})
    )


def config(redis: RedisServer, claude: FakeServer, device: str, extra: str = "") -> str:
    return (
        "providers:\n"
        f"  claude_code:\n    base_url: {claude.url}\n    poll_interval_s: {POLL_S}\n"
        "  openai-codex: {enabled: false}\n"
        "  github-copilot: {enabled: false}\n"
        "  openrouter: {enabled: false}\n"
        f"shared:\n  url: {redis.url}\n  device: {device}\n  sync_interval_s: 0.5\n" + extra
    )


@pytest.fixture
def fleet(make_daemon: Any, redis: RedisServer, claude: FakeServer) -> Callable[..., list[DaemonProcess]]:
    def start(extra: str = "") -> list[DaemonProcess]:
        daemons = []
        for name in ("laptop", "server-1", "server-2"):
            d: DaemonProcess = make_daemon(
                config=config(redis, claude, name, extra), env={"ANTHROPIC_API_KEY": API_KEY}, start=False
            )
            write_login(d.home)
            d.start()
            daemons.append(d)
        for d in daemons:
            with d.router() as router:
                until(lambda r=router: r.quotas()["claude_code:*"].account == ACCOUNT, "account discovered")
        return daemons

    return start


def until(check: Callable[[], bool], what: str, within: float = 10.0) -> float:
    """Wait for ``check``; returns how long it took."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        if check():
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for: {what}")


def spend(router: Router, usd: float) -> None:
    """One API-key turn whose price the provider reported (it wins over the pricing table)."""
    router.call("turns.record", {"provider": "anthropic_api", "model": OPUS, "cost_usd": usd})


def best(router: Router) -> str | None:
    rec = router.best_for(OPUS)
    return rec.provider_id if rec is not None else None


def test_a_429_on_one_machine_moves_the_others(fleet: Callable[..., list[DaemonProcess]]) -> None:
    a, b, c = fleet()
    with b.router() as rb, c.router() as rc, a.router() as ra:
        assert best(rb) == best(rc) == "claude_code"
        ra.record_turn("claude_code", OPUS, status_code=429, headers={"retry-after": "600"}, wait=True)
        took = until(lambda: best(rb) == best(rc) == "anthropic_api", "B and C move off claude_code", 2.0)
        assert took < 2.0
        cooled = rc.quotas()["claude_code:*"]
        assert cooled.cooldown_until is not None and "via laptop" in (cooled.cooldown_reason or "")


def test_one_machine_polls_the_account_and_all_show_its_numbers(
    fleet: Callable[..., list[DaemonProcess]], claude: FakeServer, redis: RedisServer
) -> None:
    daemons = fleet()
    before = len(claude.to(CLAUDE_USAGE))
    time.sleep(POLL_S * 4)
    polls = len(claude.to(CLAUDE_USAGE)) - before
    # One machine at a time, once per interval (with the poller's jitter): not three per interval.
    assert 1 <= polls <= 6, polls
    for d in daemons:
        with d.router() as router:
            q = router.quotas()["claude_code:*"]
            assert {"burst", "weekly"} <= set(q.windows), q.windows
    status = daemons[2].cli("status")
    assert "via " in status.stdout or "[oauth," in status.stdout
    assert "shared state: " in status.stdout and "other machines:" in status.stdout
    doctor = daemons[0].cli("doctor", "--json")
    shared = next(c for c in json.loads(doctor.stdout)["checks"] if c["name"] == "shared state")
    assert shared["status"] == "pass" and "server-1" in shared["detail"], shared


def test_another_machine_takes_over_polling_when_the_holder_dies(
    fleet: Callable[..., list[DaemonProcess]], claude: FakeServer, redis: RedisServer
) -> None:
    import redis as redis_client

    daemons = fleet()
    client = redis_client.Redis(port=redis.port)
    lease_key = f"bhoga:default:{{{ACCOUNT}}}:poll"
    until(lambda: client.get(lease_key) is not None, "a lease holder")
    holder = client.get(lease_key).decode()
    by_name = dict(zip(("laptop", "server-1", "server-2"), daemons, strict=True))
    by_name[holder].kill()
    lease_s = POLL_S * 1.5
    took = until(
        lambda: (client.get(lease_key) or b"").decode() not in ("", holder), "a new lease holder", lease_s * 3
    )
    assert took <= lease_s * 2
    before = len(claude.to(CLAUDE_USAGE))
    until(lambda: len(claude.to(CLAUDE_USAGE)) > before, "the new holder polls", POLL_S * 3)


def test_traffic_on_two_machines_is_one_burn_rate_on_the_third(
    fleet: Callable[..., list[DaemonProcess]], make_daemon: Any
) -> None:
    a, b, c = fleet("routing:\n  strategy: pace\n")
    alone: DaemonProcess = make_daemon()  # one machine that sees all of the traffic itself
    with a.router() as ra, b.router() as rb, c.router() as rc, alone.router() as rd:
        for _ in range(3):
            for router in (ra, rd):
                router.record_turn("claude_code", OPUS, input_tokens=40_000, output_tokens=2_000, wait=True)
            for router in (rb, rd):
                router.record_turn("claude_code", OPUS, input_tokens=20_000, output_tokens=1_000, wait=True)
        everything = rd.quotas()["claude_code:*"].tokens_per_h
        assert everything > 0

        def close_to_everything(router: Router) -> bool:
            return abs(router.quotas()["claude_code:*"].tokens_per_h - everything) <= 0.02 * everything

        # C sent nothing itself, yet burns at the rate of A's and B's traffic together, as do A and B.
        for router in (rc, ra, rb):
            until(lambda r=router: close_to_everything(r), "the fleet's burn rate")


def test_a_monthly_budget_is_counted_once_across_machines(
    fleet: Callable[..., list[DaemonProcess]],
) -> None:
    a, b, c = fleet("budgets:\n  providers: {anthropic_api: 10}\n")

    def anthropic_api(router: Router) -> Any:
        return next(x for x in router.rank(OPUS).candidates if x.provider_id == "anthropic_api")

    with a.router() as ra, b.router() as rb, c.router() as rc:
        spend(ra, 4.0)
        spend(rb, 4.0)
        time.sleep(1.5)
        assert anthropic_api(rc).eligible, "$8 of $10 spent: still within the budget"
        spend(rc, 3.0)
        for router in (ra, rb, rc):
            until(lambda r=router: not anthropic_api(r).eligible, "the budget is over on every machine")
            assert "over its monthly budget" in anthropic_api(router).reason


def test_an_unreachable_server_changes_nothing_local_and_reconnecting_counts_nothing_twice(
    fleet: Callable[..., list[DaemonProcess]], redis: RedisServer
) -> None:
    import redis as redis_client

    a, b, c = fleet("budgets:\n  providers: {anthropic_api: 10}\n")
    with a.router() as ra, b.router() as rb, c.router() as rc:
        spend(ra, 4.0)
        spend(rb, 4.0)
        redis.stop()
        until(lambda: rc.status().shared is not None and not rc.status().shared.connected, "C sees it down")
        # Every machine keeps routing on what it knows.
        for router in (ra, rb, rc):
            assert best(router) == "claude_code"
        assert "UNREACHABLE" in c.cli("status").stdout
        doctor = c.cli("doctor")
        assert "shared state" in doctor.stdout and "unreachable" in doctor.stdout
        # Meanwhile: a 429 on A, and $3 more on C.
        ra.record_turn("claude_code", OPUS, status_code=429, headers={"retry-after": "600"}, wait=True)
        spend(rc, 3.0)
        redis.start()  # empty: the server kept nothing
        for router in (ra, rb, rc):
            until(lambda r=router: r.status().shared.connected, "reconnected", 35.0)
        until(lambda: best(rb) == best(rc) == "anthropic_api" or best(rb) is None, "A's 429 reaches B and C")
        client = redis_client.Redis(port=redis.port)
        month = time.strftime("%Y-%m", time.gmtime())
        until(lambda: len(client.hgetall(f"bhoga:default:spend:{month}")) == 3, "every machine's spend")
        totals = {k.decode(): float(v) for k, v in client.hgetall(f"bhoga:default:spend:{month}").items()}
        assert sum(totals.values()) == pytest.approx(11.0), totals


def test_nothing_secret_reaches_the_server(
    fleet: Callable[..., list[DaemonProcess]], redis: RedisServer
) -> None:
    import redis as redis_client

    a, b, _ = fleet()
    with a.router() as ra, b.router() as rb:
        for router in (ra, rb):
            router.record_turn(
                "claude_code",
                OPUS,
                input_tokens=100,
                session="planted-session-name",
                agent="planted-agent",
                headers={"anthropic-ratelimit-unified-5h-utilization": "0.5"},
                wait=True,
            )
            router.record_turn("anthropic_api", OPUS, input_tokens=10, status_code=429, wait=True)
    time.sleep(1.5)
    client = redis_client.Redis(port=redis.port)
    dump = b""
    for key in client.scan_iter("*"):
        dump += key
        kind = client.type(key)
        if kind == b"hash":
            for k, v in client.hgetall(key).items():
                dump += k + v
        elif kind == b"set":
            dump += b"".join(client.smembers(key))
        elif kind == b"string":
            dump += client.get(key) or b""
    assert b"claude_code" in dump or ACCOUNT.encode() in dump  # the test reads what was written
    for planted in (CLAUDE_TOKEN, API_KEY, "planted-session-name"):
        assert planted.encode() not in dump, planted


def test_a_password_comes_from_the_environment_and_never_shows(
    make_daemon: Any, tmp_root: Path, claude: FakeServer
) -> None:
    binary = server_binary()
    assert binary is not None
    secret = "PLANTED-redis-password-0000"
    server = RedisServer(tmp_root / "redis-auth", binary, password=secret)
    server.start()
    try:
        cfg = config(server, claude, "laptop", "") + "  password_env: BHOGA_TEST_SHARED_PASSWORD\n"
        right: DaemonProcess = make_daemon(config=cfg, env={"BHOGA_TEST_SHARED_PASSWORD": secret})
        wrong: DaemonProcess = make_daemon(config=cfg, env={"BHOGA_TEST_SHARED_PASSWORD": "not-it"})
        with right.router() as r, wrong.router() as w:
            until(lambda: r.status().shared.connected, "the right password connects")
            until(lambda: w.status().shared.last_error is not None, "the wrong one is refused", 5.0)
            shared = w.status().shared
            assert shared is not None and not shared.connected
        status = wrong.cli("status").stdout + wrong.cli("doctor").stdout
        assert "UNREACHABLE" in status
        for d in (right, wrong):
            assert secret not in d.log_text() and "not-it" not in d.log_text()
        assert secret not in status and "not-it" not in status
    finally:
        server.stop()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl to make a test certificate")
def test_tls_with_a_private_certificate_authority(
    make_daemon: Any, tmp_root: Path, claude: FakeServer
) -> None:
    binary = server_binary()
    assert binary is not None
    tls = make_tls_files(tmp_root / "tls")
    server = RedisServer(tmp_root / "redis-tls", binary, tls=tls)
    server.start()
    try:
        assert server.url.startswith("rediss://")
        cfg = config(server, claude, "laptop", "") + f"  tls_ca_file: {tls.ca}\n"
        d: DaemonProcess = make_daemon(config=cfg)
        with d.router() as router:
            until(lambda: router.status().shared.connected, "connected over TLS")
    finally:
        server.stop()
