"""Copilot discovery: token sources in order, the quota shapes, and the endpoint's faults."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from bhogad.discovery.providers.base import Kind, ShapeError
from bhogad.discovery.providers.copilot import CopilotDriver, parse_user
from tests.fakes.clis import FakeCli
from tests.fakes.driving import base_env, poll
from tests.fakes.fixtures import FIXTURE_NOW, at, load, raw
from tests.fakes.http_server import FakeServer, Reply, Request, refused_url, serving

USER = "/copilot_internal/user"
APPS_TOKEN = "gho_FIXTUREtokenNotReal0000000000000000"


def keyed(windows: list) -> dict:  # type: ignore[type-arg]
    return {w.key: w for w in windows}


def test_paid_plan_fixture() -> None:
    usage = parse_user(load("copilot-internal-user.json"), FIXTURE_NOW)
    (premium,) = usage.windows  # chat and completions are unlimited: no quota, not "0 % used"
    assert premium.name == "monthly" and premium.scope == "*" and premium.window_min == 43200
    assert premium.pct_used == 43.0  # 100 - 57 percent remaining
    assert premium.source == "api"  # read from the account API with a token, not an OAuth usage endpoint
    assert premium.limit == 300 and premium.remaining == 171
    assert premium.resets_at == at(1790812800)  # 2026-10-01T00:00Z
    assert usage.plan == "individual"


def test_overage_stays_visible() -> None:
    (premium,) = parse_user(load("copilot-internal-user-overage.json"), FIXTURE_NOW).windows
    assert premium.pct_used == pytest.approx(101.33, abs=0.01) and premium.remaining == -4


def test_free_plan_fixture() -> None:
    w = keyed(parse_user(load("copilot-internal-user-free.json"), FIXTURE_NOW).windows)
    assert w["chat"].pct_used == pytest.approx(24.0)
    assert w["completions/limit:completions"].pct_used == pytest.approx(29.4)
    assert w["chat"].resets_at == at(1790812800)


def test_placeholders_missing_sides_and_shapes() -> None:
    body = load("copilot-internal-user.json")
    body["quota_snapshots"]["premium_interactions"].update(entitlement=0, remaining=0, unlimited=False)
    del body["quota_snapshots"]["premium_interactions"]["percent_remaining"]
    assert parse_user(body, FIXTURE_NOW).windows == []  # a business-seat placeholder
    free = load("copilot-internal-user-free.json")
    del free["limited_user_quotas"]
    assert parse_user(free, FIXTURE_NOW).windows == []  # never assume a full quota
    strings = load("copilot-internal-user-free.json")
    strings["limited_user_quotas"] = {"chat": "38", "completions": "x"}
    assert [w.name for w in parse_user(strings, FIXTURE_NOW).windows] == ["chat"]
    with pytest.raises(ShapeError):
        parse_user({"message": "Not Found"}, FIXTURE_NOW)
    with pytest.raises(ShapeError):
        parse_user("text", FIXTURE_NOW)


def guard_for(token: str):  # type: ignore[no-untyped-def]
    def guard(request: Request) -> Reply | None:
        if request.header("authorization") != f"token {token}":
            return Reply(401, {"message": "Bad credentials"})
        if not request.header("user-agent"):
            return Reply(403, {"message": "User-Agent required"})
        return None

    return guard


@pytest.fixture
def server() -> FakeServer:
    with serving() as s:
        s.route(USER, load("copilot-internal-user.json"))
        yield s  # type: ignore[misc]


def test_env_token_first(server: FakeServer, tmp_path: Path) -> None:
    server.guard = guard_for("gho_fromenv")
    gh = FakeCli(tmp_path / "bin", "gh", token="gho_fromgh")
    env = base_env(
        tmp_path, GH_TOKEN="gho_fromenv", GITHUB_TOKEN="gho_other", PATH=f"{tmp_path / 'bin'}:/usr/bin:/bin"
    )
    out = poll(CopilotDriver(), "github-copilot", env, base_url=server.url)
    assert gh.starts() == 0  # a usable token was already at hand
    assert (
        out.error is None
        and "$GH_TOKEN" in out.availability.reason
        and "individual" in out.availability.reason
    )
    assert keyed(out.windows)["monthly"].pct_used == 43.0


def test_classic_pat_is_skipped_for_gh(server: FakeServer, tmp_path: Path) -> None:
    server.guard = guard_for("gho_fromgh")
    FakeCli(tmp_path / "bin", "gh", token="gho_fromgh")
    env = base_env(tmp_path, GITHUB_TOKEN="ghp_classic000000", PATH=f"{tmp_path / 'bin'}:/usr/bin:/bin")
    out = poll(CopilotDriver(), "github-copilot", env, base_url=server.url)
    assert out.error is None and "`gh auth token`" in out.availability.reason


def test_only_a_classic_pat_says_so(tmp_path: Path) -> None:
    out = poll(CopilotDriver(), "github-copilot", base_env(tmp_path, GITHUB_TOKEN="ghp_classic000000"))
    assert not out.availability.available and "classic personal access token" in out.availability.reason
    assert "ghp_classic000000" not in out.availability.reason


def test_plugin_apps_json_last(server: FakeServer, tmp_path: Path) -> None:
    server.guard = guard_for(APPS_TOKEN)
    FakeCli(tmp_path / "bin", "gh", token=None)  # gh installed but logged out
    (tmp_path / ".config" / "github-copilot").mkdir(parents=True)
    (tmp_path / ".config" / "github-copilot" / "apps.json").write_bytes(raw("copilot-apps.json"))
    env = base_env(tmp_path, PATH=f"{tmp_path / 'bin'}:/usr/bin:/bin")
    out = poll(CopilotDriver(), "github-copilot", env, base_url=server.url)
    assert out.error is None and "apps.json" in out.availability.reason


def test_no_token_anywhere(tmp_path: Path) -> None:
    out = poll(CopilotDriver(), "github-copilot", base_env(tmp_path))
    assert not out.availability.available and "gh auth login" in out.availability.reason
    assert out.kind is Kind.LOCAL


@pytest.mark.parametrize(
    ("reply", "kind", "says"),
    [
        (Reply(500, b"boom"), Kind.TRANSIENT, "HTTP 500"),
        (Reply(200, b"nope"), Kind.PROTOCOL, "not JSON"),
        (Reply(200, {"message": "hello"}), Kind.PROTOCOL, "unexpected shape"),
        (Reply(429, {}, {}), Kind.RATE_LIMITED, "HTTP 429"),
        (Reply(429, {}, {"retry-after": "7200"}), Kind.RATE_LIMITED, "HTTP 429"),
    ],
)
def test_endpoint_faults(server: FakeServer, tmp_path: Path, reply: Reply, kind: Kind, says: str) -> None:
    server.push(USER, reply)
    out = poll(CopilotDriver(), "github-copilot", base_env(tmp_path, GH_TOKEN="gho_x"), base_url=server.url)
    assert out.kind is kind and says in (out.error or "") and out.windows == []
    if kind is Kind.RATE_LIMITED:
        wait = timedelta(seconds=float(reply.headers.get("retry-after", 300)))
        assert out.not_before == FIXTURE_NOW + wait


def test_refused_and_no_copilot(server: FakeServer, tmp_path: Path) -> None:
    driver = CopilotDriver()
    server.push(USER, Reply(401, {"message": "Bad credentials"}))
    out = poll(driver, "github-copilot", base_env(tmp_path, GH_TOKEN="gho_revoked"), base_url=server.url)
    assert (
        "refused the token from $GH_TOKEN (HTTP 401)" in (out.error or "") and "gho_revoked" not in out.error
    )  # type: ignore[operator]
    poll(driver, "github-copilot", base_env(tmp_path, GH_TOKEN="gho_revoked"), base_url=server.url)
    assert len(server.to(USER)) == 1  # not resent
    server.push(USER, Reply(404, {"message": "Not Found"}))
    out = poll(driver, "github-copilot", base_env(tmp_path, GH_TOKEN="gho_nocopilot"), base_url=server.url)
    assert not out.availability.available and "no Copilot access" in out.availability.reason


def test_connection_refused_and_timeout(tmp_path: Path) -> None:
    env = base_env(tmp_path, GH_TOKEN="gho_x")
    out = poll(CopilotDriver(), "github-copilot", env, base_url=refused_url())
    assert out.kind is Kind.TRANSIENT and "connection refused" in (out.error or "")
    with serving() as slow:
        slow.route(USER, Reply(body=load("copilot-internal-user.json"), delay_s=2.0))
        out = poll(CopilotDriver(), "github-copilot", env, base_url=slow.url, poll_timeout_s=0.3)
    assert out.kind is Kind.TRANSIENT and "timed out" in (out.error or "")


def test_unreadable_apps_json_is_skipped(tmp_path: Path) -> None:
    (tmp_path / ".config" / "github-copilot").mkdir(parents=True)
    (tmp_path / ".config" / "github-copilot" / "apps.json").write_text("{broken")
    (tmp_path / ".config" / "github-copilot" / "hosts.json").write_text(
        json.dumps({"github.com": {"oauth_token": 1}})
    )
    out = poll(CopilotDriver(), "github-copilot", base_env(tmp_path))
    assert not out.availability.available
