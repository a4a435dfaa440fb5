"""Claude Code discovery: the fixtures' numbers, every fault, and never a token in sight."""

from __future__ import annotations

import json
from datetime import timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest

from bhogad.discovery.providers.base import CredentialProblem, Kind, ShapeError
from bhogad.discovery.providers.claude_code import EXPIRED, ClaudeCodeDriver, keychain_service
from bhogad.discovery.providers.claude_parse import parse_credentials, parse_usage
from tests.fakes.clis import FakeCli
from tests.fakes.driving import base_env, poll
from tests.fakes.fixtures import FIXTURE_NOW, at, load, raw
from tests.fakes.http_server import FakeServer, Reply, Request, refused_url, serving

TOKEN = "sk-ant-oat01-FIXTURE-access-token-not-real"
USAGE = "/api/oauth/usage"


def windows_by_key(windows: list) -> dict:  # type: ignore[type-arg]
    return {w.key: w for w in windows}


# --------------------------------------------------------------------------------------------------
# Pure parsing


def test_usage_fixture_numbers() -> None:
    usage = parse_usage(load("claude-oauth-usage.json"), FIXTURE_NOW)
    w = windows_by_key(usage.windows)
    # utilization is a percent: 37.0 is 37 % used, not 3700 % (the old library's bug).
    assert w["burst"].pct_used == 37.0 and w["burst"].window_min == 300
    assert w["burst"].resets_at.timestamp() == pytest.approx(1790258400, abs=1)
    assert w["weekly"].pct_used == 61.0 and w["weekly"].window_min == 10080
    assert w["weekly"].resets_at.timestamp() == pytest.approx(1790499600, abs=1)
    assert w["weekly/sonnet"].pct_used == 12.0
    # The per-model Opus window is only in the newer limits[] array (flat key is null).
    assert w["weekly/opus"].pct_used == 48.0
    extra = w["extra_usage/limit:extra_usage"]
    assert extra.pct_used == 25.0 and extra.limit == 50.0 and extra.remaining == 37.5
    # Null windows are not reported, never "0 % used".
    assert set(w) == {"burst", "weekly", "weekly/sonnet", "weekly/opus", "extra_usage/limit:extra_usage"}
    assert all(x.source == "oauth" and x.updated_at == FIXTURE_NOW for x in usage.windows)
    assert usage.currency == "USD"


def test_spend_limit_only_account() -> None:
    usage = parse_usage(load("claude-oauth-usage-spend-limit-only.json"), FIXTURE_NOW)
    (spend,) = usage.windows
    # 38.15 %, 7.63 of 20.00 EUR — not 100x too high.
    assert spend.name == "spend" and spend.scope == "*"
    assert spend.pct_used == pytest.approx(38.15)
    assert spend.limit == 20.0 and spend.remaining == pytest.approx(12.37)
    assert usage.currency == "EUR"


def test_null_and_odd_values_are_not_reported() -> None:
    body = {
        "five_hour": {"utilization": None, "resets_at": None},
        "seven_day": {"utilization": "42.5", "resets_at": "2025-12-23T16:00:00.000Z"},
        "seven_day_opus": "garbage",
        "limits": [
            "junk",
            {"kind": "weekly_scoped", "percent": 7, "scope": {"model": {"display_name": "Opus 4.1"}}},
            {"kind": "weekly_scoped", "percent": 9, "scope": {"model": {"id": None, "display_name": None}}},
            {"kind": "mystery", "percent": 50},
        ],
    }
    w = windows_by_key(parse_usage(body, FIXTURE_NOW).windows)
    assert set(w) == {"weekly", "weekly/opus"}
    assert w["weekly"].pct_used == 42.5 and w["weekly"].resets_at.isoformat() == "2025-12-23T16:00:00+00:00"
    assert w["weekly/opus"].pct_used == 7 and w["weekly/opus"].resets_at is None
    assert parse_usage({}, FIXTURE_NOW).windows == []
    with pytest.raises(ShapeError):
        parse_usage(["not", "an", "object"], FIXTURE_NOW)


def test_credentials_fixture() -> None:
    creds = parse_credentials(raw("claude-credentials.json"), "f")
    assert creds.access_token == TOKEN
    assert creds.expires_at == at(1790269200)
    assert creds.can_read_usage() and creds.plan == "max"
    assert not creds.expired(FIXTURE_NOW) and creds.expired(at(1790269200))


@pytest.mark.parametrize(
    ("payload", "signed_out", "says"),
    [
        (raw("claude-credentials-mcp-only.json"), True, "only MCP server logins"),
        (b"{not json", False, "not valid JSON"),
        (b"[]", True, "does not hold a Claude login"),
        (b'{"claudeAiOauth": {"accessToken": ""}}', True, "no access token"),
    ],
)
def test_unusable_credentials(payload: bytes, signed_out: bool, says: str) -> None:
    with pytest.raises(CredentialProblem) as info:
        parse_credentials(payload, "~/.claude/.credentials.json")
    assert says in str(info.value) and info.value.signed_out is signed_out


def test_keychain_service_name() -> None:
    assert keychain_service(None, None) == "Claude Code-credentials"
    assert (
        keychain_service("/home/u/.claude", None)
        == "Claude Code-credentials-" + __import__("hashlib").sha256(b"/home/u/.claude").hexdigest()[:8]
    )
    assert keychain_service("/x", "") == "Claude Code-credentials"


# --------------------------------------------------------------------------------------------------
# Against a real HTTP server


def claude_guard(request: Request) -> Reply | None:
    """What the real endpoint insists on: the bearer token, the beta header and a claude-code agent
    (without one it answers persistent 429s with retry-after 0)."""
    if request.header("authorization") != f"Bearer {TOKEN}":
        return Reply(401, {"error": {"type": "authentication_error"}})
    if request.header("anthropic-beta") != "oauth-2025-04-20":
        return Reply(400, {"error": {"type": "invalid_request_error"}})
    if not (request.header("user-agent") or "").startswith("claude-code/"):
        return Reply(429, {"error": {"type": "rate_limit_error"}}, {"retry-after": "0"})
    return None


@pytest.fixture
def server() -> FakeServer:
    with serving() as s:
        s.guard = claude_guard
        s.route(USAGE, load("claude-oauth-usage.json"))
        yield s  # type: ignore[misc]


def home_with_credentials(tmp_path: Path, payload: bytes | None = None, where: str = ".claude") -> Path:
    home = tmp_path / "home"
    (home / where).mkdir(parents=True)
    (home / where / ".credentials.json").write_bytes(
        payload if payload is not None else raw("claude-credentials.json")
    )
    return home


def test_poll_reads_every_window(server: FakeServer, tmp_path: Path) -> None:
    home = home_with_credentials(tmp_path)
    out = poll(ClaudeCodeDriver(), "claude_code", base_env(home), base_url=server.url)
    assert out.error is None and out.kind is Kind.OK
    assert out.availability.available and "max plan" in out.availability.reason
    w = windows_by_key(out.windows)
    assert (w["burst"].pct_used, w["weekly"].pct_used, w["weekly/opus"].pct_used) == (37.0, 61.0, 48.0)
    (request,) = server.to(USAGE)
    assert request.header("accept") == "application/json"
    assert request.header("user-agent") == "claude-code/2.1.0"  # no claude CLI here: the fallback
    # Nothing but the usage GET: the token is never refreshed.
    assert [r.path for r in server.requests] == [USAGE]


def test_user_agent_follows_the_installed_claude(server: FakeServer, tmp_path: Path) -> None:
    home = home_with_credentials(tmp_path)
    FakeCli(tmp_path / "bin", "claude", version="2.1.99")
    env = base_env(home, PATH=f"{tmp_path / 'bin'}:/usr/bin:/bin")
    out = poll(ClaudeCodeDriver(), "claude_code", env, base_url=server.url)
    assert out.error is None
    assert server.to(USAGE)[0].header("user-agent") == "claude-code/2.1.99"


def test_claude_config_dir_is_honoured(server: FakeServer, tmp_path: Path) -> None:
    home = home_with_credentials(tmp_path, where="work-claude")
    env = base_env(home, CLAUDE_CONFIG_DIR=str(home / "work-claude"))
    out = poll(ClaudeCodeDriver(), "claude_code", env, base_url=server.url)
    assert out.error is None and len(out.windows) == 5
    # Without it, the default place is empty: not signed in.
    out = poll(ClaudeCodeDriver(), "claude_code", base_env(home), base_url=server.url)
    assert not out.availability.available and "not signed in to Claude Code" in out.availability.reason


def test_keychain_on_request(server: FakeServer, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    FakeCli(
        tmp_path / "bin",
        "security",
        items={"Claude Code-credentials": raw("claude-credentials.json").decode()},
    )
    env = base_env(home, PATH=f"{tmp_path / 'bin'}:/usr/bin:/bin")
    out = poll(ClaudeCodeDriver(), "claude_code", env, base_url=server.url, options={"keychain": "always"})
    assert out.error is None and "macOS Keychain" in out.availability.reason
    never = poll(ClaudeCodeDriver(), "claude_code", env, base_url=server.url, options={"keychain": "never"})
    assert not never.availability.available


def test_not_signed_in_and_inference_only_token(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    out = poll(ClaudeCodeDriver(), "claude_code", base_env(home))
    assert not out.availability.available and out.kind is Kind.LOCAL and out.error is None
    env = base_env(home, CLAUDE_CODE_OAUTH_TOKEN="sk-ant-oat01-inference-only")
    out = poll(ClaudeCodeDriver(), "claude_code", env)
    assert out.availability.available and "inference-only" in out.availability.reason
    assert out.windows == [] and out.error is None


def test_expired_token_is_reported_not_refreshed(server: FakeServer, tmp_path: Path) -> None:
    home = home_with_credentials(tmp_path)
    out = poll(ClaudeCodeDriver(), "claude_code", base_env(home), now=at(1790269200), base_url=server.url)
    assert out.error == EXPIRED == "Claude Code token expired — run `claude` to refresh it"
    assert out.kind is Kind.LOCAL and out.availability.available and out.windows == []
    assert server.requests == []  # neither the usage endpoint nor a token endpoint


def test_token_without_profile_scope_is_not_sent(server: FakeServer, tmp_path: Path) -> None:
    creds = load("claude-credentials.json")
    creds["claudeAiOauth"]["scopes"] = ["user:inference"]
    home = home_with_credentials(tmp_path, json.dumps(creds).encode())
    out = poll(ClaudeCodeDriver(), "claude_code", base_env(home), base_url=server.url)
    assert "user:profile" in (out.error or "") and server.requests == []


def test_mcp_only_and_unreadable_credentials(tmp_path: Path) -> None:
    home = home_with_credentials(tmp_path, raw("claude-credentials-mcp-only.json"))
    out = poll(ClaudeCodeDriver(), "claude_code", base_env(home))
    assert not out.availability.available and "MCP" in out.availability.reason

    (home / ".claude" / ".credentials.json").write_bytes(b'{"claudeAiOauth": {"accessTo')
    out = poll(ClaudeCodeDriver(), "claude_code", base_env(home))
    assert out.availability.available and "not valid JSON" in (out.error or "") and out.kind is Kind.LOCAL

    # A path that cannot be read as a file (works even as root, unlike chmod 000).
    (home / ".claude" / ".credentials.json").unlink()
    (home / ".claude" / ".credentials.json").mkdir()
    out = poll(ClaudeCodeDriver(), "claude_code", base_env(home))
    assert "cannot read ~/.claude/.credentials.json" in (out.error or "") and out.kind is Kind.LOCAL


@pytest.mark.parametrize(
    ("reply", "kind", "says"),
    [
        (Reply(500, b"upstream exploded"), Kind.TRANSIENT, "HTTP 500: upstream exploded"),
        (Reply(502, b""), Kind.TRANSIENT, "HTTP 502"),
        (Reply(200, b"<html>not json</html>"), Kind.PROTOCOL, "not JSON"),
        (Reply(200, [1, 2, 3]), Kind.PROTOCOL, "unexpected shape"),
        (Reply(200, {"unrelated": True}), Kind.PROTOCOL, "no usage windows"),
        (Reply(403, {"error": "forbidden"}), Kind.PROTOCOL, "HTTP 403"),
        (Reply(404, b"nope"), Kind.PROTOCOL, "HTTP 404"),
    ],
)
def test_endpoint_faults(server: FakeServer, tmp_path: Path, reply: Reply, kind: Kind, says: str) -> None:
    home = home_with_credentials(tmp_path)
    server.push(USAGE, reply)
    out = poll(ClaudeCodeDriver(), "claude_code", base_env(home), base_url=server.url)
    assert out.kind is kind and says in (out.error or "")
    assert out.windows == [] and out.availability.available


def test_429_gates_for_at_least_five_minutes(server: FakeServer, tmp_path: Path) -> None:
    home = home_with_credentials(tmp_path)
    fixture = load("claude-oauth-usage-429.json")
    cases = [
        ({}, timedelta(minutes=5)),
        (fixture["headers"], timedelta(minutes=5)),  # retry-after: 0, the wrong-agent symptom
        ({"retry-after": "60"}, timedelta(minutes=5)),
        ({"retry-after": "3600"}, timedelta(hours=1)),
        ({"retry-after": format_datetime(FIXTURE_NOW + timedelta(hours=2), usegmt=True)}, timedelta(hours=2)),
    ]
    for headers, wait in cases:
        server.push(USAGE, Reply(429, fixture["body"], headers))
        out = poll(ClaudeCodeDriver(), "claude_code", base_env(home), base_url=server.url)
        assert out.kind is Kind.RATE_LIMITED and "HTTP 429" in (out.error or ""), headers
        assert out.not_before == FIXTURE_NOW + wait, headers
        # A 429 is not a credentials problem.
        assert out.availability.available


def test_connection_refused_and_timeout(tmp_path: Path) -> None:
    home = home_with_credentials(tmp_path)
    out = poll(ClaudeCodeDriver(), "claude_code", base_env(home), base_url=refused_url())
    assert out.kind is Kind.TRANSIENT and "connection refused" in (out.error or "")
    with serving() as slow:
        slow.route(USAGE, Reply(body=load("claude-oauth-usage.json"), delay_s=2.0))
        out = poll(ClaudeCodeDriver(), "claude_code", base_env(home), base_url=slow.url, poll_timeout_s=0.3)
    assert out.kind is Kind.TRANSIENT and "timed out" in (out.error or "")


def test_refused_token_is_not_retried_until_it_changes(server: FakeServer, tmp_path: Path) -> None:
    creds = load("claude-credentials.json")
    creds["claudeAiOauth"]["accessToken"] = "sk-ant-oat01-REVOKED-token-0000"
    home = home_with_credentials(tmp_path, json.dumps(creds).encode())
    driver = ClaudeCodeDriver()
    first = poll(driver, "claude_code", base_env(home), base_url=server.url)
    assert first.error == "Claude Code token was refused (HTTP 401) — run `claude` to sign in again"
    second = poll(driver, "claude_code", base_env(home), base_url=server.url)
    assert second.error == first.error and len(server.to(USAGE)) == 1
    # Claude Code stored a new token: it is used at once.
    (home / ".claude" / ".credentials.json").write_bytes(raw("claude-credentials.json"))
    third = poll(driver, "claude_code", base_env(home), base_url=server.url)
    assert third.error is None and len(third.windows) == 5


def test_no_token_in_errors_even_when_the_server_echoes_it(tmp_path: Path) -> None:
    home = home_with_credentials(tmp_path)
    with serving() as echo:
        echo.guard = lambda r: Reply(500, f"bad request with {r.header('authorization')}".encode())
        out = poll(ClaudeCodeDriver(), "claude_code", base_env(home), base_url=echo.url)
    assert out.error is not None and "HTTP 500" in out.error
    assert TOKEN not in out.error and "FIXTURE-access" not in out.error
