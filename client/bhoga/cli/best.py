"""``bhoga best MODEL`` (the provider to use; exit 3 when there is none) and ``bhoga rank MODEL``."""

from __future__ import annotations

import argparse
from typing import TextIO

from bhoga.cli.common import Add, ExitCode, print_json
from bhoga.cli.render import render_ranking
from bhoga.client import Router


def cmd_best(args: argparse.Namespace, router: Router, out: TextIO) -> int:
    ranking = router.rank(args.model, agent=args.agent)
    rec = ranking.recommendation
    if args.json:
        print_json(ranking if args.explain else rec, out)
    elif args.explain:
        out.write(render_ranking(ranking))
    elif rec is not None:
        left = f"{rec.quota_pct * 100:.0f}% left" if rec.quota_pct >= 0 else "quota unknown"
        out.write(f"{rec.provider_id}\t{rec.hermes_model}\t{left}\n")
    else:
        out.write(f"no provider can serve {args.model} now (bhoga best {args.model} --explain says why)\n")
    return ExitCode.OK if rec is not None else ExitCode.NO_PROVIDER


_AGENT_HELP = "ask as this agent (an agent over its budget avoids paid providers)"


def register(add: Add) -> None:
    p = add("best", cmd_best, "the best provider for a model (exit 3 when there is none)")
    p.add_argument("model")
    p.add_argument("--explain", action="store_true", help="show every candidate and why")
    p.add_argument("--agent", help=_AGENT_HELP)
    p = add("rank", cmd_best, "every candidate for a model, best first, with reasons")
    p.add_argument("model")
    p.add_argument("--agent", help=_AGENT_HELP)
    p.set_defaults(explain=True)
