"""Monthly USD budgets: what has been spent this calendar month (UTC), and who is over.

Pure: spend in, verdicts out. The daemon keeps one ``Spend`` in memory, adds each priced turn to it
and, at start, rebuilds it from the ledger's monthly rollups (``Store.month_spend``), so budgets
survive restarts without a second copy of the numbers to keep in step. A new month starts from zero
by itself: every reader compares the month the spend belongs to with the month it is now.

Provider budgets count every turn's cost on that provider. For a subscription that cost is the
API-equivalent value, so a budget there caps how much value is drawn from it; for an API key it is
real money. Agent budgets count billed spend only (API-key turns): a subscription costs an agent
nothing more, so an agent over budget is kept off paid providers and may still use subscriptions.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

import msgspec

from bhogad.config import BudgetConfig


class Spend(msgspec.Struct, kw_only=True):
    """USD spent in ``month`` (``YYYY-MM``, UTC) per provider and per agent (billed only)."""

    month: str
    providers: dict[str, float] = msgspec.field(default_factory=dict)
    agents: dict[str, float] = msgspec.field(default_factory=dict)


def month_of(at: datetime) -> str:
    if at.tzinfo is not UTC:  # the daemon's times are UTC already; converting costs more than the rest
        at = at.astimezone(UTC)
    return f"{at.year:04d}-{at.month:02d}"  # strftime costs more, and this runs on every turn


def month_start(now: datetime) -> datetime:
    now = now.astimezone(UTC)
    return datetime(now.year, now.month, 1, tzinfo=UTC)


def next_month_start(now: datetime) -> datetime:
    now = now.astimezone(UTC)
    return datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=UTC)


def current(spend: Spend, now: datetime) -> Spend:
    """``spend`` if it is this month's, else an empty one: budgets reset on the 1st, 00:00 UTC."""
    month = month_of(now)
    return spend if spend.month == month else Spend(month=month)


def add(
    spend: Spend, now: datetime, at: datetime, provider: str, agent: str | None, cost: float, billed: bool
) -> Spend:
    """``spend`` with one turn's cost added, if the turn happened this month (late reports of last
    month's turns belong to last month's budget, which is closed)."""
    spend = current(spend, now)
    if cost <= 0 or month_of(at) != spend.month:
        return spend
    spend.providers[provider] = spend.providers.get(provider, 0.0) + cost
    if agent is not None and billed:
        spend.agents[agent] = spend.agents.get(agent, 0.0) + cost
    return spend


def combined(own: Spend, others: Spend, now: datetime) -> Spend:
    """This machine's spend plus what other machines report for this month (shared state)."""
    own, others = current(own, now), current(others, now)
    total = Spend(month=own.month, providers=dict(own.providers), agents=dict(own.agents))
    for mine, theirs in ((total.providers, others.providers), (total.agents, others.agents)):
        for key, value in theirs.items():
            mine[key] = mine.get(key, 0.0) + value
    return total


def _over(spent: float, limit: float) -> bool:
    # A zero budget means "never": even an unpriced (free) turn should not go there.
    return spent >= limit


def blocked(
    spend: Spend,
    budgets: BudgetConfig,
    now: datetime,
    paid: Iterable[str],
    agent: str | None = None,
) -> dict[str, str]:
    """Providers to skip now, each with the reason a receipt shows.

    ``paid`` names the API-key providers, which an agent over its own budget must not use.
    """
    spend = current(spend, now)
    resets = next_month_start(now).strftime("%Y-%m-%d")
    skip: dict[str, str] = {}
    for pid, limit in budgets.providers.items():
        spent = spend.providers.get(pid, 0.0)
        if _over(spent, limit):
            skip[pid] = f"over its monthly budget: ${spent:.2f} of ${limit:.2f} spent (resets {resets} UTC)"
    if agent is not None and agent in budgets.agents:
        limit = budgets.agents[agent]
        spent = spend.agents.get(agent, 0.0)
        if _over(spent, limit):
            for pid in paid:
                skip.setdefault(
                    pid,
                    f"agent {agent!r} is over its monthly budget (${spent:.2f} of ${limit:.2f} billed; "
                    f"resets {resets} UTC): paid providers are off limits, subscriptions are not",
                )
    return skip


def agent_over(spend: Spend, budgets: BudgetConfig, now: datetime, agent: str | None) -> bool:
    if agent is None or agent not in budgets.agents:
        return False
    return _over(current(spend, now).agents.get(agent, 0.0), budgets.agents[agent])
