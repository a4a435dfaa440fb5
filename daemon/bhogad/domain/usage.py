"""``usage.summary``: spend and tokens from the turn ledger, over a period, grouped as asked.

``resolve_period`` is pure (the clock comes in as ``now``); ``summarise`` runs one SQL aggregate on
the store's connection and must be called from the writer's thread like every other store call.
Periods are calendar periods in UTC, the same calendar the monthly budgets use, so "this month" in
``bhoga usage`` and in a budget receipt mean the same turns.
"""

from __future__ import annotations

import re
import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from bhoga.protocol import UsageGroup, UsageParams, UsageRow, UsageSummary
from bhogad.domain.budgets import month_start
from bhogad.domain.errors import BadPeriod

__all__ = ["PERIODS", "BadPeriod", "resolve_period", "summarise"]

_ROLLING: Final = re.compile(r"^(\d{1,4})([hd])$")
PERIODS: Final = ("today", "week", "month", "all", "<n>h", "<n>d")

#: SQL for each grouping; ``day`` is the UTC calendar day (``at`` is stored as UTC ISO 8601 text).
_COLUMNS: Final = {
    UsageGroup.PROVIDER: "provider",
    UsageGroup.MODEL: "model",
    UsageGroup.AGENT: "agent",
    UsageGroup.SESSION: "session",
    UsageGroup.DAY: "substr(at, 1, 10)",
}


def resolve_period(params: UsageParams, now: datetime) -> tuple[datetime | None, datetime]:
    """``(since, until)`` for the request; ``since`` is ``None`` for all of history."""
    now = now.astimezone(UTC)
    until = _utc(params.until) if params.until is not None else now
    if params.since is not None:
        since: datetime | None = _utc(params.since)
    else:
        since = _period_start(params.period or "today", now)
    if since is not None and since >= until:
        raise BadPeriod(
            f"the period is empty: since {since.isoformat()} is not before until {until.isoformat()}"
        )
    return since, until


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _period_start(period: str, now: datetime) -> datetime | None:
    name = period.strip().lower()
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if name == "today":
        return midnight
    if name == "week":
        return midnight - timedelta(days=midnight.weekday())  # ISO weeks start on Monday
    if name == "month":
        return month_start(now)
    if name == "all":
        return None
    rolling = _ROLLING.match(name)
    if rolling:
        amount, unit = int(rolling[1]), rolling[2]
        return now - (timedelta(hours=amount) if unit == "h" else timedelta(days=amount))
    raise BadPeriod(f"unknown period {period!r}; use one of {', '.join(PERIODS)}")


def _row(key: list[str | None], values: tuple[Any, ...]) -> UsageRow:
    turns, errors, inp, out, cread, cwrite, cost, billed, unpriced = values
    return UsageRow(
        key=key,
        turns=int(turns or 0),
        errors=int(errors or 0),
        input_tokens=int(inp or 0),
        output_tokens=int(out or 0),
        cache_read_tokens=int(cread or 0),
        cache_write_tokens=int(cwrite or 0),
        cost_usd=float(cost or 0.0),
        billed_usd=float(billed or 0.0),
        unpriced=int(unpriced or 0),
    )


_AGGREGATES: Final = (
    "count(*), sum(status_code NOT BETWEEN 200 AND 399), sum(input_tokens), sum(output_tokens), "
    "sum(cache_read_tokens), sum(cache_write_tokens), sum(cost_usd), "
    "sum(CASE WHEN billed = 1 THEN cost_usd END), sum(cost_usd IS NULL)"
)


def summarise(
    conn: sqlite3.Connection, since: datetime | None, until: datetime, group_by: list[UsageGroup]
) -> UsageSummary:
    """One aggregate over ``[since, until)``; rows ordered by cost, then turns, largest first."""
    where, args = "at < ?", [until.isoformat()]
    if since is not None:
        where += " AND at >= ?"
        args.append(since.isoformat())
    groups = list(dict.fromkeys(group_by))
    columns = [_COLUMNS[g] for g in groups]
    rows: list[UsageRow] = []
    if columns:
        select = ", ".join(columns)
        sql = f"SELECT {select}, {_AGGREGATES} FROM turns WHERE {where} GROUP BY {select}"
        for record in conn.execute(sql, args):
            rows.append(_row(list(record[: len(columns)]), tuple(record[len(columns) :])))
        rows.sort(key=lambda r: (-r.cost_usd, -r.turns, [k or "" for k in r.key]))
    total = _row([], tuple(conn.execute(f"SELECT {_AGGREGATES} FROM turns WHERE {where}", args).fetchone()))
    return UsageSummary(since=since, until=until, group_by=groups, rows=rows, total=total)
