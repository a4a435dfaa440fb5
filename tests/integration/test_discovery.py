"""End to end: a daemon with a fake home holding Claude and Codex logins, pointed (by config.yaml) at
local servers serving the fixtures, routes by what it discovered — with no set_quota anywhere."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import bhoga
from bhoga import Router
from tests.conftest import DaemonProcess
from tests.fakes.clis import FakeCli, path_with
from tests.fakes.fixtures import load, to_now
from tests.fakes.http_server import FakeServer, Reply, Request, serving

CLAUDE_TOKEN = load("claude-credentials.json")["claudeAiOauth"]["accessToken"]
CLAUDE_USAGE = "/api/oauth/usage"
CODEX_USAGE = "/backend-api/wham/usage"
COPILOT_USER = "/copilot_internal/user"
GH_TOKEN = "gho_FIXTUREendToEnd0000000000000000000"


def now_fixture(name: str) -> Any:
    """The fixture as if FIXTURE_NOW were now: the daemon runs on the wall clock."""
    return to_now(load(name))


def write_logins(home: Path) -> dict[str, str]:
    """Claude's and Codex's credential files, as their CLIs leave them; returns the tokens."""
    (home / ".claude").mkdir(parents=True, exist_ok=True)
    (home / ".claude" / ".credentials.json").write_text(json.dumps(now_fixture("claude-credentials.json")))
    (home / ".codex").mkdir(parents=True, exist_ok=True)
    auth = now_fixture("codex-auth.json")
    (home / ".codex" / "auth.json").write_text(json.dumps(auth))
    return {"claude": CLAUDE_TOKEN, "codex": auth["tokens"]["access_token"]}


def bearer_guard(token: Callable[[], str]) -> Callable[[Request], Reply | None]:
    def guard(request: Request) -> Reply | None:
        if request.header("authorization") not in (f"Bearer {token()}", f"token {token()}"):
            return Reply(401, {"error": "unauthorized"})
        return None

    return guard


@pytest.fixture
def claude() -> Iterator[FakeServer]:
    with serving() as s:
        s.guard = bearer_guard(lambda: CLAUDE_TOKEN)
        s.route(CLAUDE_USAGE, now_fixture("claude-oauth-usage.json"))
        yield s


@pytest.fixture
def codex() -> Iterator[FakeServer]:
    with serving() as s:
        s.route(CODEX_USAGE, now_fixture("codex-wham-usage.json"))
        yield s


def config_for(claude: FakeServer, codex: FakeServer, **more: str) -> str:
    extra = "".join(f"  {pid}:\n    {setting}\n" for pid, setting in more.items())
    return (
        "providers:\n"
        f"  claude_code:\n    base_url: {claude.url}\n"
        f"  openai-codex:\n    base_url: {codex.url}/backend-api\n    options: {{app_server: never}}\n"
        + extra
    )


def wait_for(
    router: Router, check: Callable[[dict[str, bhoga.ProviderQuota]], bool], within: float = 20.0
) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if check(router.quotas()):
            return
        time.sleep(0.1)
    raise AssertionError(f"discovery did not finish: {router.quotas()}")


def polled(*pids: str) -> Callable[[dict[str, bhoga.ProviderQuota]], bool]:
    return lambda q: all(q[f"{pid}:*"].last_poll_at is not None for pid in pids)


def test_best_picks_what_the_fixtures_say(make_daemon: Any, claude: FakeServer, codex: FakeServer) -> None:
    d: DaemonProcess = make_daemon(config=config_for(claude, codex), start=False)
    tokens = write_logins(d.home)
    d.start()
    with d.router() as router:
        wait_for(router, polled("claude_code", "openai-codex"))

    best = d.cli("best", "claude-opus-4")
    # Claude: burst 37 %, weekly 61 %, weekly Opus 48 % used → 39 % left in the tightest window.
    assert best.returncode == 0, best.stderr
    assert best.stdout.split("\t")[0] == "claude_code" and best.stdout.strip().endswith("39% left")
    explain = d.cli("best", "claude-opus-4", "--explain")
    assert "39% left in 'weekly' (tightest)" in explain.stdout
    # Codex: 5h 22 %, weekly 43 % → 57 % left; the Spark model's own weekly 12 % does not apply.
    gpt = d.cli("best", "gpt-5.5")
    assert gpt.stdout.split("\t")[0] == "openai-codex" and gpt.stdout.strip().endswith("57% left")
    spark = d.cli("best", "--explain", "gpt-5.3-codex-spark")
    assert "57% left in 'weekly' (tightest)" in spark.stdout  # Spark's 70 % left is looser

    status = d.cli("status")
    assert status.returncode == 0
    assert "weekly/opus" in status.stdout and "[oauth," in status.stdout
    assert "signed in to Claude Code (max plan" in status.stdout and "last poll:" not in status.stdout
    # What was sent: the headers each endpoint needs, and never a refresh.
    (claude_request,) = claude.to(CLAUDE_USAGE)
    assert (claude_request.header("user-agent") or "").startswith("claude-code/")
    assert claude_request.header("anthropic-beta") == "oauth-2025-04-20"
    (codex_request,) = codex.to(CODEX_USAGE)
    assert codex_request.header("chatgpt-account-id") == "7c9e2b1a-0000-4000-8000-00000000d001"
    assert [r.path for r in claude.requests + codex.requests] == [CLAUDE_USAGE, CODEX_USAGE]
    # Nothing secret in the log.
    log = d.log_text()
    assert all(token not in log for token in tokens.values())


def test_more_headroom_on_copilot_wins(make_daemon: Any, claude: FakeServer, codex: FakeServer) -> None:
    with serving() as copilot:
        copilot.guard = bearer_guard(lambda: GH_TOKEN)
        copilot.route(COPILOT_USER, now_fixture("copilot-internal-user.json"))
        config = config_for(claude, codex, **{"github-copilot": f"base_url: {copilot.url}"})
        d: DaemonProcess = make_daemon(config=config, env={"GH_TOKEN": GH_TOKEN}, start=False)
        write_logins(d.home)
        d.start()
        with d.router() as router:
            wait_for(router, polled("claude_code", "openai-codex", "github-copilot"))
            quotas = router.quotas()
        assert quotas["github-copilot:*"].windows["monthly"].pct_used == 43.0
        # Copilot has 57 % of its premium requests left, Claude 39 % of its week.
        best = d.cli("best", "claude-opus-4")
        assert best.stdout.split("\t")[0] == "github-copilot" and "57% left" in best.stdout


def test_faults_are_reported_and_the_daemon_keeps_answering(
    make_daemon: Any, claude: FakeServer, codex: FakeServer, tmp_path: Path
) -> None:
    claude.route(CLAUDE_USAGE, Reply(500, b"internal error"))
    bin_dir = tmp_path / "bin"
    fake_codex = FakeCli(bin_dir, "codex", result=load("codex-app-server-ratelimits.json")["result"])
    config = (
        "providers:\n"
        f"  claude_code:\n    base_url: {claude.url}\n"
        f"  openai-codex:\n    base_url: {codex.url}/backend-api\n"
    )
    d: DaemonProcess = make_daemon(config=config, env={"PATH": path_with(bin_dir)}, start=False)
    write_logins(d.home)
    # Codex's token has expired: it is not sent, the app-server (Codex itself) is asked instead.
    auth = json.loads((d.home / ".codex" / "auth.json").read_text())
    expired = load("codex-auth.json")  # the fixture's own exp is long past on the wall clock
    auth["tokens"]["access_token"] = expired["tokens"]["access_token"]
    (d.home / ".codex" / "auth.json").write_text(json.dumps(auth))
    d.start()
    with d.router() as router:
        wait_for(router, polled("claude_code", "openai-codex"))
        quotas = router.quotas()
        assert "HTTP 500" in (quotas["claude_code:*"].last_poll_error or "")
        assert quotas["claude_code:*"].windows == {} and quotas["claude_code:*"].quota_pct == -1.0
        codex_q = quotas["openai-codex:*"]
        assert (codex_q.last_poll_error or "").startswith("Codex token expired — run `codex` to refresh it")
        assert codex_q.windows["weekly"].source == "cli" and fake_codex.starts() == 1
        assert codex.requests == []
        # The daemon keeps answering, and recommends nothing it cannot vouch for.
        assert router.best_for("claude-opus-4") is not None  # available, quota unknown
        status = d.cli("status")
        assert "last poll: the Claude usage endpoint answered HTTP 500: internal error" in status.stdout

        # The endpoint recovers; a refresh reads it now (a 500 backoff does not gate a refresh).
        claude.route(CLAUDE_USAGE, now_fixture("claude-oauth-usage.json"))
        refreshed = bhoga.check_quota("claude_code", socket_path=d.socket)
        assert refreshed is not None and refreshed.last_poll_error is None
        assert refreshed.windows["weekly/opus"].pct_used == 48.0

        # A 429 gates the endpoint: refreshes during the gate send nothing.
        claude.route(CLAUDE_USAGE, Reply(429, {"error": {"type": "rate_limit_error"}}, {"retry-after": "0"}))
        router.refresh("claude_code")
        sent = len(claude.to(CLAUDE_USAGE))
        again = d.cli("call", "quota.refresh", '{"provider": "claude_code"}')
        assert again.returncode == 0 and len(claude.to(CLAUDE_USAGE)) == sent
        q = router.quotas()["claude_code:*"]
        assert "HTTP 429" in (q.last_poll_error or "") and q.windows["weekly"].pct_used == 61.0


def test_signing_in_while_running(make_daemon: Any, claude: FakeServer, codex: FakeServer) -> None:
    # Local state is re-read every minute by default; this daemon looks every half second.
    config = config_for(claude, codex).replace(
        f"base_url: {claude.url}\n", f"base_url: {claude.url}\n    options: {{recheck_s: '0.5'}}\n"
    )
    d: DaemonProcess = make_daemon(config=config)
    with d.router() as router:
        first = router.quotas()["claude_code:*"]
        assert not first.available
        time.sleep(1.5)
        assert "not signed in to Claude Code" in router.quotas()["claude_code:*"].reason
        write_logins(d.home)
        wait_for(router, polled("claude_code"), within=10)
        assert router.quotas()["claude_code:*"].available
    assert d.cli("best", "claude-opus-4").stdout.startswith("claude_code\t")
