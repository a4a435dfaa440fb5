"""OpenRouter discovery: the key's limit and the account's credits, in USD turned into percent."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from bhogad.discovery.providers.api_keys import ApiKeyDriver, detect
from bhogad.discovery.providers.base import Kind, ShapeError
from bhogad.discovery.providers.openrouter import (
    OpenRouterDriver,
    next_period_start,
    parse_credits,
    parse_key,
)
from tests.fakes.driving import base_env, poll, provider_cfg
from tests.fakes.fixtures import FIXTURE_NOW, load
from tests.fakes.http_server import FakeServer, Reply, refused_url, serving

KEY = "sk-or-v1-FIXTUREkey000000000000"


def test_key_fixture() -> None:
    info = parse_key(load("openrouter-key.json"), FIXTURE_NOW)
    w = info.window
    assert w is not None and w.name == "monthly" and w.window_min == 43200
    assert w.pct_used == pytest.approx(25.5)  # 50 - 37.25 = 12.75 of 50
    assert w.source == "api"
    assert w.limit == 50 and w.remaining == 37.25
    assert w.resets_at == datetime(2026, 10, 1, tzinfo=UTC)


def test_credits_fixture() -> None:
    w = parse_credits(load("openrouter-credits.json"), FIXTURE_NOW)
    assert w is not None and w.name == "credits"
    assert w.remaining == pytest.approx(37.6) and w.limit == 150.0
    assert w.pct_used == pytest.approx(112.4 / 150 * 100)


def test_unlimited_and_fallback_usage() -> None:
    body = load("openrouter-key.json")
    body["data"]["limit"] = None
    assert parse_key(body, FIXTURE_NOW).window is None  # unlimited is not "0 % used"
    body = load("openrouter-key.json")
    body["data"].update(limit_remaining=None, limit_reset="weekly")
    w = parse_key(body, FIXTURE_NOW).window
    assert w is not None and w.pct_used == pytest.approx(7.9 / 50 * 100) and w.name == "weekly"
    assert parse_credits({"data": {"total_credits": 0, "total_usage": 0}}, FIXTURE_NOW) is None
    with pytest.raises(ShapeError):
        parse_key({"error": "x"}, FIXTURE_NOW)


def test_period_boundaries() -> None:
    assert next_period_start("daily", FIXTURE_NOW) == datetime(2026, 9, 25, tzinfo=UTC)
    assert next_period_start("weekly", FIXTURE_NOW) == datetime(2026, 9, 28, tzinfo=UTC)  # a Monday
    assert next_period_start("monthly", datetime(2026, 12, 31, 23, tzinfo=UTC)) == datetime(
        2027, 1, 1, tzinfo=UTC
    )


@pytest.fixture
def server() -> FakeServer:
    with serving() as s:
        s.guard = lambda r: (
            None if r.header("authorization") == f"Bearer {KEY}" else Reply(401, {"error": "no"})
        )
        s.route("/api/v1/key", load("openrouter-key.json"))
        s.route("/api/v1/credits", load("openrouter-credits.json"))
        yield s  # type: ignore[misc]


def test_poll(server: FakeServer, tmp_path: Path) -> None:
    out = poll(
        OpenRouterDriver(),
        "openrouter",
        base_env(tmp_path, OPENROUTER_API_KEY=KEY),
        base_url=server.url + "/api/v1",
    )
    assert out.error is None and "$OPENROUTER_API_KEY" in out.availability.reason
    assert {w.name: round(w.pct_used, 2) for w in out.windows} == {"monthly": 25.5, "credits": 74.93}


def test_credits_refused_keeps_the_key_limit(server: FakeServer, tmp_path: Path) -> None:
    server.route("/api/v1/credits", Reply(403, {"error": "management key required"}))
    out = poll(
        OpenRouterDriver(),
        "openrouter",
        base_env(tmp_path, OPENROUTER_API_KEY=KEY),
        base_url=server.url + "/api/v1",
    )
    assert out.error is None and [w.name for w in out.windows] == ["monthly"]


@pytest.mark.parametrize(
    ("reply", "kind", "says"),
    [
        (Reply(500, b""), Kind.TRANSIENT, "HTTP 500"),
        (Reply(429, load("openrouter-429-body.json"), {"retry-after": "30"}), Kind.RATE_LIMITED, "HTTP 429"),
        (Reply(429, load("openrouter-429-body.json")), Kind.RATE_LIMITED, "HTTP 429"),
        (Reply(200, b"]"), Kind.PROTOCOL, "not JSON"),
        (Reply(200, {"data": "nope"}), Kind.PROTOCOL, "unexpected shape"),
        (Reply(401, {"error": "bad key"}), Kind.PROTOCOL, "refused the key in $OPENROUTER_API_KEY"),
    ],
)
def test_faults(server: FakeServer, tmp_path: Path, reply: Reply, kind: Kind, says: str) -> None:
    server.push("/api/v1/key", reply)
    out = poll(
        OpenRouterDriver(),
        "openrouter",
        base_env(tmp_path, OPENROUTER_API_KEY=KEY),
        base_url=server.url + "/api/v1",
    )
    assert out.kind is kind and says in (out.error or "") and out.windows == []
    assert KEY not in (out.error or "")


def test_missing_fields_report_nothing(server: FakeServer, tmp_path: Path) -> None:
    server.route("/api/v1/key", {"data": {}})
    server.route("/api/v1/credits", {"data": {"total_credits": None}})
    env = base_env(tmp_path, OPENROUTER_API_KEY=KEY)
    out = poll(OpenRouterDriver(), "openrouter", env, base_url=server.url + "/api/v1")
    assert out.windows == [] and out.error is None and "no key limit" in out.availability.reason


def test_timeout(tmp_path: Path) -> None:
    with serving() as slow:
        slow.route("/api/v1/key", Reply(body=load("openrouter-key.json"), delay_s=2.0))
        env = base_env(tmp_path, OPENROUTER_API_KEY=KEY)
        out = poll(OpenRouterDriver(), "openrouter", env, base_url=slow.url + "/api/v1", poll_timeout_s=0.3)
    assert out.kind is Kind.TRANSIENT and "timed out" in (out.error or "")


def test_no_key_and_refused_connection(tmp_path: Path) -> None:
    out = poll(OpenRouterDriver(), "openrouter", base_env(tmp_path, OPENROUTER_API_KEY=""))
    assert (
        not out.availability.available and out.availability.reason == "no API key (set $OPENROUTER_API_KEY)"
    )
    out = poll(
        OpenRouterDriver(), "openrouter", base_env(tmp_path, OPENROUTER_API_KEY=KEY), base_url=refused_url()
    )
    assert out.kind is Kind.TRANSIENT and "connection refused" in (out.error or "")


def test_api_keys_are_detected_not_polled(tmp_path: Path) -> None:
    cfg = provider_cfg("anthropic_api")
    assert detect(cfg, {"ANTHROPIC_API_KEY": "sk-ant-api03-x"}).available
    assert not detect(cfg, {"ANTHROPIC_API_KEY": "  "}).available  # empty is no key
    assert detect(cfg, {}).reason == "no API key (set $ANTHROPIC_API_KEY)"
    assert ApiKeyDriver.polls is False
    out = poll(ApiKeyDriver(), "openai_api", base_env(tmp_path, OPENAI_API_KEY="sk-proj-x"))
    assert out.availability.reason == "API key in $OPENAI_API_KEY"
