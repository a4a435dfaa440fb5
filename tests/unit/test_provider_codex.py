"""Codex discovery: the usage endpoint, the app-server fallback over stdio, the rollout fallback."""

from __future__ import annotations

import json
import os
import shutil
import time
from datetime import timedelta
from pathlib import Path

import pytest

from bhogad.discovery.providers.base import CredentialProblem, Kind, ShapeError
from bhogad.discovery.providers.codex import EXPIRED, CodexDriver
from bhogad.discovery.providers.codex_auth import parse_auth, parse_config, usage_url
from bhogad.discovery.providers.codex_parse import (
    newest_readings,
    parse_app_server,
    parse_rollout_line,
    parse_usage,
)
from bhogad.discovery.providers.codex_rollout import read_rollouts
from tests.fakes.clis import FakeCli, pid_alive
from tests.fakes.driving import base_env, poll
from tests.fakes.fixtures import FIXTURE_NOW, FIXTURES, at, load, make_jwt, raw
from tests.fakes.http_server import FakeServer, Reply, Request, refused_url, serving

USAGE = "/backend-api/wham/usage"
ACCOUNT = "7c9e2b1a-0000-4000-8000-00000000d001"
ACCESS = load("codex-auth.json")["tokens"]["access_token"]
REAL_0169 = load("codex-app-server-real-0.169.json")
RATE_LIMITS_RESULT = next(
    e["msg"]["result"]
    for e in REAL_0169["exchange"]
    if e["dir"] == "recv" and "rateLimits" in e["msg"].get("result", {})
)


def keyed(windows: list) -> dict:  # type: ignore[type-arg]
    return {w.key: w for w in windows}


def numbers(windows: list) -> dict:  # type: ignore[type-arg]
    return {
        w.key: (w.pct_used, w.window_min, int(w.resets_at.timestamp()) if w.resets_at else None)
        for w in windows
    }


# --------------------------------------------------------------------------------------------------
# Pure parsing


def test_usage_fixture_classified_by_length() -> None:
    reading = parse_usage(load("codex-wham-usage.json"), FIXTURE_NOW)
    assert numbers(reading.windows) == {
        "burst": (22, 300, 1790262000),
        "weekly": (43, 10080, 1790596800),
        "weekly/limit:code_review": (0, 10080, 1790856000),
        "burst/gpt-5.3-codex-spark": (30, 300, 1790262000),
        "weekly/gpt-5.3-codex-spark": (12, 10080, 1790769600),
    }
    assert reading.plan == "plus"
    assert reading.credits == {"has_credits": "false", "unlimited": "false", "balance": "0"}
    assert all(w.source == "oauth" for w in reading.windows)


def test_weekly_only_plan_has_no_burst_window() -> None:
    reading = parse_usage(load("codex-wham-usage-weekly-only.json"), FIXTURE_NOW)
    # The weekly window arrives in the primary slot: classified by length, not position.
    assert numbers(reading.windows) == {"weekly": (64, 10080, 1790596800)}


def test_limit_reached_shows_a_full_window() -> None:
    reading = parse_usage(load("codex-wham-usage-limit-reached.json"), FIXTURE_NOW)
    w = keyed(reading.windows)
    assert w["burst"].pct_used == 100 and w["burst"].resets_at == at(1790262000)
    assert w["weekly"].pct_used == 71


def test_a_refusing_server_is_believed_over_its_rounded_percentages() -> None:
    body = load("codex-wham-usage-limit-reached.json")
    body["rate_limit"]["primary_window"]["used_percent"] = 99  # rounded down, yet refusing
    w = keyed(parse_usage(body, FIXTURE_NOW).windows)
    assert w["burst"].pct_used == 100 and w["burst"].resets_at == at(1790262000)
    assert w["weekly"].pct_used == 71
    body["rate_limit"]["allowed"], body["rate_limit"]["limit_reached"] = True, False
    assert keyed(parse_usage(body, FIXTURE_NOW).windows)["burst"].pct_used == 99


def test_usage_leniency_and_shape_errors() -> None:
    body = load("codex-wham-usage.json")
    body["rate_limit"]["primary_window"]["used_percent"] = "22.5"
    body["rate_limit"]["secondary_window"] = None
    body["additional_rate_limits"].insert(0, "junk")
    body["rate_limit"]["primary_window"]["limit_window_seconds"] = 2592000
    w = keyed(parse_usage(body, FIXTURE_NOW).windows)
    assert w["monthly"].pct_used == 22.5 and "weekly" not in w
    assert "burst/gpt-5.3-codex-spark" in w  # the malformed sibling did not discard it
    with pytest.raises(ShapeError):
        parse_usage([], FIXTURE_NOW)
    with pytest.raises(ShapeError):
        parse_usage({"detail": "Unauthorized"}, FIXTURE_NOW)


def test_app_server_fixtures() -> None:
    expected = {
        "burst": (22, 300, 1790262000),
        "weekly": (43, 10080, 1790596800),
        "burst/gpt-5.3-codex-spark": (30, 300, 1790262000),
        "weekly/gpt-5.3-codex-spark": (12, 10080, 1790769600),
    }
    assert numbers(
        parse_app_server(load("codex-app-server-ratelimits.json")["result"], FIXTURE_NOW).windows
    ) == (expected)
    real = parse_app_server(RATE_LIMITS_RESULT, FIXTURE_NOW)
    assert numbers(real.windows) == expected and real.credits["balance"] == "0" and real.plan == "plus"
    assert all(w.source == "cli" for w in real.windows)
    with pytest.raises(ShapeError):
        parse_app_server({"something": "else"}, FIXTURE_NOW)


def test_rollout_fixture_skips_the_null_shutdown_line() -> None:
    lines = raw("codex-rollout-rate-limits.jsonl").splitlines()
    assert parse_rollout_line(lines[-1]) is None  # limit_id "premium", every window null
    readings = newest_readings(lines)
    assert set(readings) == {"codex"}
    codex = readings["codex"]
    assert codex.at.isoformat() == "2026-09-24T11:59:58.045000+00:00"
    assert numbers(codex.windows) == {"burst": (22, 300, 1790262000), "weekly": (43, 10080, 1790596800)}
    assert all(w.source == "local" and w.updated_at == codex.at for w in codex.windows)


def test_rollout_legacy_shapes() -> None:
    newer, older = raw("codex-rollout-rate-limits-legacy.jsonl").splitlines()
    nested = parse_rollout_line(newer)
    assert nested is not None
    # ≈ v0.45: the reset is the line's own time plus resets_in_seconds.
    assert numbers(nested.windows) == {
        "burst": (3, 300, int(nested.at.timestamp()) + 10800),
        "weekly": (40, 10080, int(nested.at.timestamp()) + 345600),
    }
    flat = parse_rollout_line(older)
    assert flat is not None
    assert numbers(flat.windows) == {"burst": (12.5, 300, None), "weekly": (40, 10080, None)}
    # The file is not in time order: the newest line wins by its timestamp.
    assert newest_readings([newer, older])["codex"].at == nested.at


def test_auth_fixture_and_variants() -> None:
    auth = parse_auth(raw("codex-auth.json"), "auth.json")
    assert auth.access_token == ACCESS and auth.account_id == ACCOUNT
    assert auth.expires_at == at(1791115200) and auth.plan == "plus"
    camel = {"tokens": {"accessToken": make_jwt({"exp": 1, "chatgpt_account_id": "acct-1"})}}
    assert parse_auth(json.dumps(camel), "a").account_id == "acct-1"
    assert parse_auth(json.dumps({"OPENAI_API_KEY": "sk-x", "tokens": None}), "a").api_key_mode
    with pytest.raises(CredentialProblem):
        parse_auth(b"{", "a")


def test_usage_url_rules() -> None:
    assert usage_url("https://chatgpt.com/backend-api/") == "https://chatgpt.com/backend-api/wham/usage"
    assert usage_url("https://chatgpt.com") == "https://chatgpt.com/backend-api/wham/usage"
    assert usage_url("http://127.0.0.1:9/proxy") == "http://127.0.0.1:9/proxy/api/codex/usage"
    assert parse_config(b'chatgpt_base_url = "http://x/backend-api/"\nmodel = "gpt-5.5"').model == "gpt-5.5"
    assert parse_config(b"not = [valid").chatgpt_base_url is None


# --------------------------------------------------------------------------------------------------
# The driver, against a real HTTP server and a fake codex on PATH


def codex_guard(request: Request) -> Reply | None:
    if request.header("authorization") != f"Bearer {ACCESS}":
        return Reply(401, {"detail": "Unauthorized"})
    if request.header("chatgpt-account-id") != ACCOUNT:
        return Reply(403, {"detail": "workspace required"})
    return None


@pytest.fixture
def server() -> FakeServer:
    with serving() as s:
        s.guard = codex_guard
        s.route(USAGE, load("codex-wham-usage.json"))
        yield s  # type: ignore[misc]


def codex_home(tmp_path: Path, auth: bytes | None = None) -> Path:
    home = tmp_path / "home"
    (home / ".codex").mkdir(parents=True)
    (home / ".codex" / "auth.json").write_bytes(auth if auth is not None else raw("codex-auth.json"))
    return home


def with_rollout(home: Path) -> None:
    day = home / ".codex" / "sessions" / "2026" / "09" / "24"
    day.mkdir(parents=True)
    shutil.copy(
        FIXTURES / "codex-rollout-rate-limits.jsonl", day / "rollout-2026-09-24T11-40-00-019f95ae.jsonl"
    )


def fake_codex(tmp_path: Path, **config: object) -> tuple[FakeCli, dict[str, str]]:
    cli = FakeCli(tmp_path / "bin", "codex", **{"result": RATE_LIMITS_RESULT, **config})
    return cli, {"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin"}


def test_usage_endpoint(server: FakeServer, tmp_path: Path) -> None:
    home = codex_home(tmp_path)
    out = poll(CodexDriver(), "openai-codex", base_env(home), base_url=server.url + "/backend-api")
    assert out.error is None and out.kind is Kind.OK
    assert "plus plan" in out.availability.reason and "credits balance 0" in out.availability.reason
    assert numbers(out.windows)["weekly"] == (43, 10080, 1790596800)
    (request,) = server.requests
    assert request.path == USAGE and (request.header("user-agent") or "").startswith("bhoga/")


def test_codex_home_and_its_base_url_are_honoured(server: FakeServer, tmp_path: Path) -> None:
    home = tmp_path / "home"
    custom = tmp_path / "elsewhere"
    custom.mkdir(parents=True)
    (custom / "auth.json").write_bytes(raw("codex-auth.json"))
    # Codex's own chatgpt_base_url wins while bhoga's base_url is the default.
    (custom / "config.toml").write_text(f'chatgpt_base_url = "{server.url}/backend-api/"\n')
    out = poll(CodexDriver(), "openai-codex", base_env(home, CODEX_HOME=str(custom)))
    assert out.error is None and len(out.windows) == 5


def test_api_key_mode_and_signed_out(tmp_path: Path) -> None:
    home = codex_home(tmp_path, json.dumps({"OPENAI_API_KEY": "sk-proj-x", "tokens": None}).encode())
    out = poll(CodexDriver(), "openai-codex", base_env(home))
    assert not out.availability.available and "API key" in out.availability.reason
    (home / ".codex" / "auth.json").unlink()
    out = poll(CodexDriver(), "openai-codex", base_env(home))
    assert not out.availability.available and "codex login" in out.availability.reason


def test_expired_token_falls_back_to_the_app_server(server: FakeServer, tmp_path: Path) -> None:
    home = codex_home(tmp_path)
    cli, path = fake_codex(tmp_path)
    later = at(1791115200)
    out = poll(
        CodexDriver(), "openai-codex", base_env(home, **path), now=later, base_url=server.url + "/backend-api"
    )
    assert server.requests == []  # an expired token is not sent, and not refreshed
    assert out.error is not None and out.error.startswith(EXPIRED) and "codex app-server" in out.error
    assert numbers(out.windows)["weekly/gpt-5.3-codex-spark"] == (12, 10080, 1790769600)
    assert all(w.source == "cli" for w in out.windows)
    # The exchange: initialize (with client info), the initialized notification, then the read.
    methods = [m.get("method") for m in cli.received()]
    assert methods == ["initialize", "initialized", "account/rateLimits/read"]
    assert cli.received()[0]["params"]["clientInfo"]["name"] == "bhoga"
    assert all("jsonrpc" not in m for m in cli.received())
    (start,) = [e for e in cli.log() if e["kind"] == "start"]
    assert start["argv"] == ["-s", "read-only", "-a", "never", "app-server"]
    assert start["codex_home"] == str(home / ".codex")


def test_server_error_falls_back_to_app_server_then_rollout(server: FakeServer, tmp_path: Path) -> None:
    home = codex_home(tmp_path)
    with_rollout(home)
    _cli, path = fake_codex(tmp_path, mode="exit", code=2)
    server.route(USAGE, Reply(500, b"oops"))
    out = poll(CodexDriver(), "openai-codex", base_env(home, **path), base_url=server.url + "/backend-api")
    assert out.kind is Kind.OK and out.error is not None
    assert "HTTP 500" in out.error and "closed its output" in out.error and "session logs" in out.error
    assert numbers(out.windows) == {"burst": (22, 300, 1790262000), "weekly": (43, 10080, 1790596800)}
    assert all(w.source == "local" for w in out.windows)


@pytest.mark.parametrize(("headers", "wait"), [({"retry-after": "900"}, 900), ({}, 300)])
def test_rate_limited_skips_the_app_server(
    server: FakeServer, tmp_path: Path, headers: dict[str, str], wait: int
) -> None:
    home = codex_home(tmp_path)
    cli, path = fake_codex(tmp_path)
    server.route(USAGE, Reply(429, {"error": "slow down"}, headers))
    out = poll(CodexDriver(), "openai-codex", base_env(home, **path), base_url=server.url + "/backend-api")
    assert out.kind is Kind.RATE_LIMITED and out.not_before == FIXTURE_NOW + timedelta(seconds=wait)
    assert cli.starts() == 0  # it would only call the same endpoint again


@pytest.mark.parametrize(
    ("reply", "says"),
    [
        (Reply(200, b"{{{"), "not JSON"),
        (Reply(200, ["wrong"]), "unexpected shape"),
        (Reply(200, {"plan_type": "plus"}), "unexpected shape"),
        (Reply(503, b""), "HTTP 503"),
    ],
)
def test_endpoint_faults_without_fallbacks(
    server: FakeServer, tmp_path: Path, reply: Reply, says: str
) -> None:
    home = codex_home(tmp_path)
    server.route(USAGE, reply)
    out = poll(CodexDriver(), "openai-codex", base_env(home), base_url=server.url + "/backend-api")
    assert out.windows == [] and says in (out.error or "")
    assert "no rate limits in the Codex session logs" in (out.error or "")
    assert out.kind in (Kind.PROTOCOL, Kind.TRANSIENT)


def test_connection_refused_and_timeout(tmp_path: Path) -> None:
    home = codex_home(tmp_path)
    out = poll(CodexDriver(), "openai-codex", base_env(home), base_url=refused_url() + "/backend-api")
    assert out.kind is Kind.TRANSIENT and "connection refused" in (out.error or "")
    with serving() as slow:
        slow.route(USAGE, Reply(body=load("codex-wham-usage.json"), delay_s=2.0))
        out = poll(
            CodexDriver(),
            "openai-codex",
            base_env(home),
            base_url=slow.url + "/backend-api",
            poll_timeout_s=0.3,
        )
    assert out.kind is Kind.TRANSIENT and "timed out" in (out.error or "")


def test_refused_token_is_not_resent(server: FakeServer, tmp_path: Path) -> None:
    auth = load("codex-auth.json")
    auth["tokens"]["account_id"] = "someone-else"
    home = codex_home(tmp_path, json.dumps(auth).encode())
    driver = CodexDriver()
    out = poll(driver, "openai-codex", base_env(home), base_url=server.url + "/backend-api")
    assert (out.error or "").startswith("Codex token was refused (HTTP 403)")
    poll(driver, "openai-codex", base_env(home), base_url=server.url + "/backend-api")
    assert len(server.requests) == 1


def test_unreadable_auth_file_still_tries_the_app_server(tmp_path: Path) -> None:
    home = codex_home(tmp_path)
    (home / ".codex" / "auth.json").unlink()
    (home / ".codex" / "auth.json").mkdir()
    cli, path = fake_codex(tmp_path)
    out = poll(CodexDriver(), "openai-codex", base_env(home, **path))
    assert out.availability.available and "cannot read ~/.codex/auth.json" in (out.error or "")
    assert len(out.windows) == 4 and cli.starts() == 1


# -- the app-server's own faults -------------------------------------------------------------------


def app_server_only(tmp_path: Path, **config: object) -> tuple[FakeCli, dict[str, str], Path]:
    home = tmp_path / "home"
    (home / ".codex").mkdir(parents=True)
    (home / ".codex" / "config.toml").write_text('cli_auth_credentials_store = "keyring"\n')
    cli, path = fake_codex(tmp_path, **config)
    return cli, base_env(home, **path), home


def test_keyring_login_reads_through_the_app_server(tmp_path: Path) -> None:
    _cli, env, _ = app_server_only(tmp_path, mode="junk", delay_s=0.5)
    out = poll(CodexDriver(), "openai-codex", env, options={"app_server_timeout_s": "10"})
    assert (
        out.error is None and "keyring" in out.availability.reason and "plus plan" in out.availability.reason
    )
    assert numbers(out.windows)["weekly"] == (43, 10080, 1790596800)


@pytest.mark.parametrize(
    ("config", "says"),
    [
        ({"mode": "overloaded"}, "Server overloaded"),
        ({"mode": "close"}, "closed its output before answering (exit code 3)"),
        ({"mode": "exit", "code": 2}, "closed its output"),
        ({"result": "not an object"}, "unexpected shape"),
    ],
)
def test_app_server_faults(tmp_path: Path, config: dict[str, object], says: str) -> None:
    _, env, _ = app_server_only(tmp_path, **config)
    out = poll(CodexDriver(), "openai-codex", env)
    assert out.windows == [] and says in (out.error or "") and out.availability.available


def test_app_server_timeout_leaves_no_process_behind(tmp_path: Path) -> None:
    cli, env, _ = app_server_only(tmp_path, mode="hang", ignore_term=True)
    started = time.monotonic()
    driver = CodexDriver()
    out = poll(driver, "openai-codex", env, options={"app_server_timeout_s": "1"})
    assert "did not answer within 1 s (timeout)" in (out.error or "")
    assert time.monotonic() - started < 10
    pid = int((tmp_path / "bin" / "codex.hung").read_text())
    assert not pid_alive(pid)
    # A failed app-server is left alone for a while instead of being relaunched every poll.
    again = poll(driver, "openai-codex", env, options={"app_server_timeout_s": "1"})
    assert "failed earlier" in (again.error or "") and cli.starts() == 1


def test_rollout_fallback_reads_newest_files(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with_rollout(home)
    older = home / ".codex" / "archived_sessions"
    older.mkdir(parents=True)
    shutil.copy(FIXTURES / "codex-rollout-rate-limits-legacy.jsonl", older / "rollout-old.jsonl")
    os.utime(older / "rollout-old.jsonl", (0, 0))
    reading = read_rollouts(home / ".codex")
    assert reading is not None and reading.as_of is not None
    assert numbers(reading.windows)["weekly"] == (43, 10080, 1790596800)
    assert read_rollouts(tmp_path / "nothing") is None
