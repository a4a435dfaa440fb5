"""Monthly budgets: the pure bookkeeping, then a real QuotaKeeper and store with a movable clock for the
skip in the receipt, survival across a restart, and the rollover at the month's turn (UTC)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest

from bhoga.protocol import Turn
from bhogad import config
from bhogad.domain import budgets
from bhogad.domain.keeper import QuotaKeeper
from bhogad.storage.store import Store

SEPT = datetime(2026, 9, 24, 12, 0, tzinfo=UTC)
LIMITS = config.BudgetConfig(providers={"anthropic_api": 10.0}, agents={"nightly": 2.0})


def test_spend_adds_up_per_provider_and_billed_spend_per_agent() -> None:
    spend = budgets.Spend(month="2026-09")
    spend = budgets.add(spend, SEPT, SEPT, "anthropic_api", "nightly", 1.5, billed=True)
    spend = budgets.add(spend, SEPT, SEPT, "claude_code", "nightly", 4.0, billed=False)
    assert spend.providers == {"anthropic_api": 1.5, "claude_code": 4.0}
    # Subscription turns cost the agent nothing more: only the billed 1.5 counts against it.
    assert spend.agents == {"nightly": 1.5}


def test_a_new_month_starts_from_zero_and_late_turns_of_the_last_one_are_not_counted() -> None:
    spend = budgets.add(budgets.Spend(month="2026-09"), SEPT, SEPT, "anthropic_api", None, 12.0, True)
    october = datetime(2026, 10, 1, 0, 0, tzinfo=UTC)
    assert budgets.blocked(spend, LIMITS, october - timedelta(seconds=1), ["anthropic_api"])
    assert budgets.blocked(spend, LIMITS, october, ["anthropic_api"]) == {}
    spend = budgets.add(spend, october, SEPT, "anthropic_api", None, 5.0, True)  # reported late
    assert spend.month == "2026-10" and spend.providers == {}


def test_month_boundaries_are_utc_calendar_months() -> None:
    assert budgets.next_month_start(datetime(2026, 12, 31, 23, 59, tzinfo=UTC)) == datetime(
        2027, 1, 1, tzinfo=UTC
    )
    # 23:30 on 30 September in UTC-5 is already October in UTC.
    late = datetime(2026, 9, 30, 23, 30, tzinfo=UTC) + timedelta(hours=5)
    assert budgets.month_of(late) == "2026-10"
    assert budgets.month_start(SEPT) == datetime(2026, 9, 1, tzinfo=UTC)


def test_receipt_reasons() -> None:
    spend = budgets.Spend(month="2026-09", providers={"anthropic_api": 10.25}, agents={"nightly": 2.5})
    skip = budgets.blocked(spend, LIMITS, SEPT, ["anthropic_api", "openai_api"], agent="nightly")
    assert skip["anthropic_api"] == (
        "over its monthly budget: $10.25 of $10.00 spent (resets 2026-10-01 UTC)"
    )
    assert skip["openai_api"].startswith("agent 'nightly' is over its monthly budget ($2.50 of $2.00 billed")
    assert "subscriptions are not" in skip["openai_api"]
    assert budgets.blocked(spend, LIMITS, SEPT, ["openai_api"], agent="someone-else") == {
        "anthropic_api": skip["anthropic_api"]
    }


def test_a_zero_budget_means_never() -> None:
    zero = config.BudgetConfig(providers={"openrouter": 0.0})
    assert "openrouter" in budgets.blocked(budgets.Spend(month="2026-09"), zero, SEPT, [])


# --------------------------------------------------------------------------------------------------
# Through the daemon

CFG = config.build(
    {
        "budgets": {"providers": {"anthropic_api": 1.0}, "agents": {"nightly": 0.5}},
        "providers": {"anthropic_api": {"key_env": []}, "openai_api": {"key_env": []}},
    }
)
OPUS = "claude-opus-4-5"  # $5 / MTok input


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _with_daemon(state: Path, clock: Clock, body: object) -> None:
    async def main() -> None:
        store = Store.open(state)
        try:
            daemon = QuotaKeeper(CFG, store, clock)
            daemon.load()
            await body(daemon)  # type: ignore[operator]
            await daemon.writer.flush()
        finally:
            store.close()

    anyio.run(main)


def _chosen(daemon: QuotaKeeper, model: str = OPUS, agent: str | None = None) -> str | None:
    rec = daemon.rank(model, agent).recommendation
    return rec.provider_id if rec is not None else None


def test_over_budget_provider_is_skipped_survives_a_restart_and_returns_next_month(tmp_path: Path) -> None:
    clock = Clock(SEPT)

    async def spend(daemon: QuotaKeeper) -> None:
        daemon.record_turn(Turn(provider="anthropic_api", model=OPUS, input_tokens=100_000))  # $0.50
        assert _chosen(daemon) == "anthropic_api"
        daemon.record_turn(Turn(provider="anthropic_api", model=OPUS, input_tokens=100_000))  # $1.00
        ranking = daemon.rank(OPUS)
        assert ranking.recommendation is None or ranking.recommendation.provider_id != "anthropic_api"
        reason = next(c.reason for c in ranking.candidates if c.provider_id == "anthropic_api")
        assert reason == "over its monthly budget: $1.00 of $1.00 spent (resets 2026-10-01 UTC)"

    _with_daemon(tmp_path, clock, spend)

    async def after_restart(daemon: QuotaKeeper) -> None:
        assert daemon.spend.providers == {"anthropic_api": pytest.approx(1.0)}
        assert _chosen(daemon) != "anthropic_api"
        clock.now = datetime(2026, 10, 1, 0, 0, tzinfo=UTC)
        assert _chosen(daemon) == "anthropic_api"  # the cached ranking expired at the month's turn

    clock.now = SEPT + timedelta(hours=1)
    _with_daemon(tmp_path, clock, after_restart)


def test_an_agent_over_budget_keeps_to_subscriptions(tmp_path: Path) -> None:
    clock = Clock(SEPT)

    async def body(daemon: QuotaKeeper) -> None:
        # Billed: $0.50 on the API key for "nightly". Its subscription turns do not count.
        daemon.record_turn(Turn(provider="anthropic_api", model=OPUS, input_tokens=100_000, agent="nightly"))
        daemon.record_turn(Turn(provider="claude_code", model=OPUS, input_tokens=10_000_000, agent="nightly"))
        assert daemon.spend.agents == {"nightly": pytest.approx(0.5)}
        claude = daemon.providers["claude_code"]
        claude.cooldown_until, claude.cooldown_reason = SEPT + timedelta(minutes=5), "429"
        daemon.version += 1
        assert _chosen(daemon) == "anthropic_api"
        assert _chosen(daemon, agent="nightly") is None  # no subscription free: nothing, not a paid key
        ranking = daemon.rank(OPUS, "nightly")
        api = next(c for c in ranking.candidates if c.provider_id == "anthropic_api")
        assert "agent 'nightly' is over its monthly budget" in api.reason
        clock.now = SEPT + timedelta(minutes=6)
        assert _chosen(daemon, agent="nightly") == "claude_code"

    _with_daemon(tmp_path, clock, body)
