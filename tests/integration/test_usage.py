"""Cost on every turn and ``usage.summary`` / ``bhoga usage`` against a real daemon and its ledger."""

from __future__ import annotations

import json
import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bhoga import RemoteError
from bhogad.storage.store import Store
from tests.conftest import DaemonProcess

SONNET = "claude-sonnet-4-5"  # $3 in, $15 out, $0.30 cache read, $3.75 cache write per MTok
GPT = "gpt-5.4"  # $2.50 in, $0.25 cached, $15 out


def record(daemon: DaemonProcess, *turns: dict[str, Any]) -> None:
    with daemon.router() as router:
        for t in turns:
            t = dict(t)
            router.record_turn(t.pop("provider"), t.pop("model"), wait=True, **t)


def test_every_turn_is_priced_and_the_summary_adds_it_up(daemon: DaemonProcess) -> None:
    record(
        daemon,
        # 0.0036 + 0.012 + 0.015 + 0.0375 = $0.0681, API-equivalent: claude_code is a subscription.
        dict(
            provider="claude_code",
            model=SONNET,
            input_tokens=1_200,
            output_tokens=800,
            cache_read_tokens=50_000,
            cache_write_tokens=10_000,
            agent="coder",
            session="s1",
        ),
        # 0.025 + 0.0225 + 0.03 = $0.0775, billed: openai_api is an API key.
        dict(
            provider="openai_api",
            model=GPT,
            input_tokens=10_000,
            output_tokens=2_000,
            cache_read_tokens=90_000,
            agent="coder",
            session="s2",
        ),
        dict(provider="openai_api", model="mystery-model", input_tokens=5, agent="reviewer", session="s2"),
        dict(provider="openai_api", model=GPT, status_code=500, agent="reviewer", session="s2"),
    )
    turns = json.loads(daemon.cli("turns", "--json").stdout)
    assert turns[0]["cost_usd"] == pytest.approx(0.0681)
    assert turns[0]["pricing"].endswith("claude-sonnet-4 (API-equivalent; subscription)")
    assert turns[1]["pricing"].endswith(": gpt-5.4") and turns[2]["pricing"] == "unpriced"

    with daemon.router() as router:
        by_provider = router.usage("today")
        rows = {row.key[0]: row for row in by_provider.rows}
        assert rows["claude_code"].cost_usd == pytest.approx(0.0681) and rows["claude_code"].billed_usd == 0
        assert rows["openai_api"].billed_usd == pytest.approx(0.0775)
        assert (rows["openai_api"].turns, rows["openai_api"].errors, rows["openai_api"].unpriced) == (3, 1, 1)
        assert by_provider.total.cost_usd == pytest.approx(0.1456)
        assert by_provider.total.cache_read_tokens == 140_000
        assert [row.key[0] for row in by_provider.rows] == ["openai_api", "claude_code"]  # by cost
        by_agent_model = router.usage("all", group_by=["agent", "model"])
        keys = {tuple(row.key): row.turns for row in by_agent_model.rows}
        assert keys == {
            ("coder", SONNET): 1,
            ("coder", GPT): 1,
            ("reviewer", "mystery-model"): 1,
            ("reviewer", GPT): 1,
        }
        sessions = router.usage("7d", group_by="session")
        assert {row.key[0]: row.turns for row in sessions.rows} == {"s1": 1, "s2": 3}

    table = daemon.cli("usage", "--by", "provider")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[1].split()[:3] == ["provider", "turns", "errors"]
    openai = next(line for line in lines if line.startswith("openai_api"))
    assert openai.split()[1:3] == ["3", "1"] and openai.split()[-2:] == ["0.0775", "0.0775"]
    total = next(line for line in lines if line.startswith("total"))
    assert total.split()[-2:] == ["0.1456", "0.0775"]
    assert "1 turn(s) had no known price" in table.stdout
    as_json = json.loads(daemon.cli("usage", "--json", "--period", "month", "--by", "agent").stdout)
    assert {r["key"][0]: r["turns"] for r in as_json["rows"]} == {"coder": 2, "reviewer": 2}


def test_periods_and_explicit_times(daemon: DaemonProcess) -> None:
    now = datetime.now(UTC)
    record(
        daemon,
        dict(provider="openai_api", model=GPT, input_tokens=1_000_000, at=now - timedelta(days=3)),
        dict(provider="openai_api", model=GPT, input_tokens=1_000_000, at=now - timedelta(minutes=1)),
    )
    with daemon.router() as router:
        assert router.usage("24h").total.cost_usd == pytest.approx(2.5)
        assert router.usage("7d").total.cost_usd == pytest.approx(5.0)
        window = router.usage(None, since=now - timedelta(days=4), until=now - timedelta(days=2))
        assert window.total.turns == 1
        with pytest.raises(RemoteError, match="unknown period 'fortnight'"):
            router.usage("fortnight")
    bad = daemon.cli("usage", "--period", "fortnight")
    assert bad.returncode == 1 and "unknown period" in bad.stderr


def test_config_prices_win_and_costs_survive_a_restart(make_daemon: Any) -> None:
    daemon: DaemonProcess = make_daemon(config="pricing:\n  gpt-5.4:\n    input: 1.0\n    output: 2.0\n")
    record(daemon, dict(provider="openai_api", model=GPT, input_tokens=1_000_000, output_tokens=1_000_000))
    daemon.restart()
    with daemon.router() as router:
        summary = router.usage("today")
        assert summary.total.cost_usd == pytest.approx(3.0)
        assert router.turns()[0].pricing == "config: gpt-5.4"


def test_a_ledger_from_before_pricing_is_upgraded_in_place(tmp_path: Path) -> None:
    """Schema 1 had no pricing or billed columns; its turns must survive the upgrade."""
    state = tmp_path / "state"
    state.mkdir()
    conn = sqlite3.connect(state / "state.db")
    conn.executescript(
        """
        CREATE TABLE turns (id INTEGER PRIMARY KEY, at TEXT NOT NULL, provider TEXT NOT NULL,
            model TEXT NOT NULL, input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL,
            cache_read_tokens INTEGER NOT NULL, cache_write_tokens INTEGER NOT NULL,
            status_code INTEGER NOT NULL, session TEXT, agent TEXT, latency_ms REAL, cost_usd REAL);
        CREATE TABLE providers (id TEXT PRIMARY KEY, record BLOB NOT NULL);
        INSERT INTO turns VALUES (7, '2026-09-24T12:00:00+00:00', 'claude_code', 'claude-opus-4', 1, 2,
            0, 0, 200, NULL, NULL, NULL, NULL);
        PRAGMA user_version = 1;
        """
    )
    conn.close()
    store = Store.open(state)
    try:
        assert store.quarantine is None
        [old] = store.list_turns(0, 10)
        assert (old.id, old.output_tokens, old.cost_usd, old.pricing) == (7, 2, None, None)
        assert store.last_turn_id() == 7
    finally:
        store.close()


def test_retention_prunes_old_turns_while_usage_and_the_budget_month_keep_them(make_daemon: Any) -> None:
    daemon: DaemonProcess = make_daemon(config="store:\n  keep_turns_days: 1\n")
    now = datetime.now(UTC)
    old = now - timedelta(days=35)  # always before this month began
    record(
        daemon,
        dict(provider="openai_api", model=GPT, input_tokens=1_000_000, at=old),
        dict(provider="openai_api", model=GPT, input_tokens=1_000_000, at=now - timedelta(minutes=1)),
    )
    with daemon.router() as router:
        ids = [t.id for t in router.turns()]
        assert len(ids) == 2
        for _ in range(300):  # the daemon prunes a few seconds after it starts
            if len(router.turns()) == 1:
                break
            threading.Event().wait(0.1)
        kept = router.turns()
        assert [t.at.date() for t in kept] == [(now - timedelta(minutes=1)).date()]
        summary = router.usage("all")
        assert summary.from_rollups
        assert summary.total.turns == 2 and summary.total.input_tokens == 2_000_000
        assert router.status().turns_stored == 2
        # A new turn continues the ids: pruning never lets one be reused.
        assert router.record_turn("openai_api", GPT, 1, wait=True) == max(ids) + 1
    table = daemon.cli("usage", "--period", "all")
    assert "daily rollups" in table.stdout
