"""``usage.summary``: spend and tokens from the turn ledger, over a period, grouped as asked.

``resolve_period`` is pure (the clock comes in as ``now``); ``summarise`` runs the SQL aggregates on
a read connection of its own (``Store.read``, from a reader thread), never the writer's.
Periods are calendar periods in UTC, the same calendar the monthly budgets use, so "this month" in
``bhoga usage`` and in a budget receipt mean the same turns.
"""

from __future__ import annotations

import enum
import re
import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from bhoga.protocol import UsageGroup, UsageParams, UsageRow, UsageSummary
from bhogad.domain.budgets import month_start, next_month_start
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


_FIELDS: Final = 9  # turns, errors, 4 token counts, cost, billed, unpriced


def _row(key: list[str | None], values: list[Any]) -> UsageRow:
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
#: The same figures from the ``daily`` rollups, in the same order.
_ROLLUP_AGGREGATES: Final = (
    "sum(turns), sum(errors), sum(input_tokens), sum(output_tokens), sum(cache_read_tokens), "
    "sum(cache_write_tokens), sum(cost_usd), sum(billed_usd), sum(unpriced)"
)
#: Groupings the rollups hold; ``agent`` is '' there for turns without one.
_ROLLUP_COLUMNS: Final = {
    UsageGroup.PROVIDER: "provider",
    UsageGroup.MODEL: "model",
    UsageGroup.AGENT: "nullif(agent, '')",
}


class Source(enum.StrEnum):
    TURNS = "turns"
    DAILY = "daily"
    MONTHLY = "monthly"


def _midnight_after(at: datetime) -> datetime:
    midnight = at.replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight if midnight == at else midnight + timedelta(days=1)


def plan(
    since: datetime | None, until: datetime, rollups: bool, by_day: bool
) -> list[tuple[Source, datetime | None, datetime]]:
    """Where each part of ``[since, until)`` is read from: the partial days at either end from the raw
    turns, whole days from the daily rollups, whole months (unless grouped by day) from the monthly
    ones. ``None`` as a start means from the beginning of the ledger. Pure."""
    first_day = _midnight_after(since) if since is not None else None
    last_day = until.replace(hour=0, minute=0, second=0, microsecond=0)
    if not rollups or (first_day is not None and first_day >= last_day):
        return [(Source.TURNS, since, until)]
    parts: list[tuple[Source, datetime | None, datetime]] = []
    if since is not None and first_day is not None and since < first_day:
        parts.append((Source.TURNS, since, first_day))
    first_month = first_day if first_day is None or first_day.day == 1 else next_month_start(first_day)
    last_month = month_start(last_day)
    if by_day or (first_month is not None and first_month >= last_month):
        parts.append((Source.DAILY, first_day, last_day))
    else:
        if first_day is not None and first_month is not None and first_day < first_month:
            parts.append((Source.DAILY, first_day, first_month))
        parts.append((Source.MONTHLY, first_month, last_month))
        if last_month < last_day:
            parts.append((Source.DAILY, last_month, last_day))
    if last_day < until:
        parts.append((Source.TURNS, last_day, until))
    return parts


def summarise(
    conn: sqlite3.Connection, since: datetime | None, until: datetime, group_by: list[UsageGroup]
) -> UsageSummary:
    """The aggregate over ``[since, until)``; rows ordered by cost, then turns, largest first.

    Whole months and days come from the rollups when the grouping allows (not by session), so a
    summary of all of history reads a few thousand rows, not every turn; the partial days at either
    end come from the raw turns (indexed by time). All parts are read in one transaction, so they agree.
    """
    groups = list(dict.fromkeys(group_by))
    by_day = UsageGroup.DAY in groups
    rollups = all(g in _ROLLUP_COLUMNS or g is UsageGroup.DAY for g in groups)
    parts = plan(since, until, rollups, by_day)
    sums: dict[tuple[str | None, ...], list[Any]] = {}

    def add(sql: str, args: list[str]) -> None:
        for record in conn.execute(sql, args):
            key = tuple(record[: len(groups)])
            values = record[len(groups) :]
            if values[0] is None or values[0] == 0:
                continue  # no turns in this part (an aggregate without GROUP BY still gives a row)
            acc = sums.get(key)
            if acc is None:
                sums[key] = [v or 0 for v in values]
            else:
                for i, v in enumerate(values):
                    acc[i] += v or 0

    conn.execute("BEGIN")  # one snapshot for every part
    try:
        for source, lo, hi in parts:
            if source is Source.TURNS:
                where, args = "at < ?", [hi.isoformat()]
                if lo is not None:
                    where += " AND at >= ?"
                    args.append(lo.isoformat())
                columns = [_COLUMNS[g] for g in groups]
                aggregates = _AGGREGATES
            else:
                key, width = ("day", 10) if source is Source.DAILY else ("month", 7)
                where, args = f"{key} < ?", [hi.isoformat()[:width]]
                if lo is not None:
                    where += f" AND {key} >= ?"
                    args.append(lo.isoformat()[:width])
                columns = ["day" if g is UsageGroup.DAY else _ROLLUP_COLUMNS[g] for g in groups]
                aggregates = _ROLLUP_AGGREGATES
            select = "".join(f"{c}, " for c in columns)
            group = f" GROUP BY {', '.join(columns)}" if columns else ""
            add(f"SELECT {select}{aggregates} FROM {source} WHERE {where}{group}", args)
    finally:
        conn.execute("COMMIT")
    rows = [_row(list(key), values) for key, values in sums.items()] if groups else []
    rows.sort(key=lambda r: (-r.cost_usd, -r.turns, [k or "" for k in r.key]))
    total = [0] * _FIELDS
    for values in sums.values():
        for i, v in enumerate(values):
            total[i] += v
    return UsageSummary(
        since=since,
        until=until,
        group_by=groups,
        rows=rows,
        total=_row([], total),
        from_rollups=any(source is not Source.TURNS for source, _, _ in parts),
    )
