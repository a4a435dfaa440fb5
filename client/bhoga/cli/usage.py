"""``bhoga usage``: what was spent, in tokens and dollars, per provider, model, agent or session.

The daemon sums its ledger (``usage.summary``); this module only asks and lays the answer out.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import TextIO

import msgspec

from bhoga.cli.common import when
from bhoga.client import Router
from bhoga.protocol import UsageGroup, UsageRow, UsageSummary

_GROUPS = [g.value for g in UsageGroup]


def _groups(text: str) -> list[str]:
    groups = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [g for g in groups if g not in _GROUPS]
    if unknown or not groups:
        raise argparse.ArgumentTypeError(f"--by takes {', '.join(_GROUPS)} (comma-separated), got {text!r}")
    return groups


def _tokens(n: int) -> str:
    if n >= 10_000_000:
        return f"{n / 1e6:.0f}M"
    if n >= 100_000:
        return f"{n / 1e3:.0f}k"
    return f"{n:,}"


def _usd(x: float) -> str:
    return f"{x:,.2f}" if x >= 1 or x == 0 else f"{x:.4f}"


_HEADINGS = ("turns", "errors", "input", "output", "cache rd", "cache wr", "cost $", "billed $")


def _cells(row: UsageRow) -> list[str]:
    return [
        f"{row.turns:,}",
        f"{row.errors:,}",
        _tokens(row.input_tokens),
        _tokens(row.output_tokens),
        _tokens(row.cache_read_tokens),
        _tokens(row.cache_write_tokens),
        _usd(row.cost_usd),
        _usd(row.billed_usd),
    ]


def render_usage(summary: UsageSummary) -> str:
    since = f"{summary.since:%Y-%m-%d %H:%M} UTC" if summary.since else "the first turn"
    by = ", ".join(summary.group_by)
    lines = [f"usage from {since} to {summary.until:%Y-%m-%d %H:%M} UTC, by {by}"]
    labels = [" / ".join(k if k is not None else "-" for k in row.key) for row in summary.rows]
    width = max([len(label) for label in labels] + [len(by), 5])
    table = [[by, *_HEADINGS]]
    table += [[label, *_cells(row)] for label, row in zip(labels, summary.rows, strict=True)]
    table.append(["total", *_cells(summary.total)])
    widths = [width] + [max(len(r[i]) for r in table) for i in range(1, len(table[0]))]
    for i, row in enumerate(table):
        if i == len(table) - 1:
            lines.append("-" * (sum(widths) + 2 * (len(widths) - 1)))
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells).rstrip())
    lines.append("cost $ is API prices; for subscriptions that is the API-equivalent value, not a charge.")
    lines.append("billed $ is what API keys were charged.")
    if summary.from_rollups:
        lines.append("whole days came from the ledger's daily rollups, which keep pruned turns' totals.")
    if summary.total.unpriced:
        lines.append(
            f"{summary.total.unpriced} turn(s) had no known price and are not in the cost; "
            "add the model under `pricing:` in config.yaml."
        )
    return "\n".join(lines) + "\n"


def cmd_usage(args: argparse.Namespace, router: Router, out: TextIO) -> int:
    # Without --period the daemon shows today, unless --since says where to start.
    summary = router.usage(args.period, since=args.since, until=args.until, group_by=args.by)
    if args.json:
        out.write(json.dumps(msgspec.to_builtins(summary), indent=2) + "\n")
    else:
        out.write(render_usage(summary))
    return 0


def register(add: Callable[..., argparse.ArgumentParser]) -> None:
    p = add("usage", cmd_usage, "tokens and spend from the ledger, per provider, model, agent or session")
    p.add_argument(
        "--period",
        help="today, week, month (calendar, UTC), all, or rolling 24h / 7d (default: today)",
    )
    p.add_argument("--since", type=when, help="start (ISO 8601; local time if no offset)")
    p.add_argument("--until", type=when, help="end (ISO 8601; default: now)")
    p.add_argument(
        "--by", type=_groups, default=["provider"], metavar="GROUPS", help=f"any of {', '.join(_GROUPS)}"
    )
