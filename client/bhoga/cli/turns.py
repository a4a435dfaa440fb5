"""``bhoga turns``: the turn ledger, oldest first."""

from __future__ import annotations

import argparse
from typing import TextIO

from bhoga.cli.common import Add, ExitCode, print_json
from bhoga.client import Router


def cmd_turns(args: argparse.Namespace, router: Router, out: TextIO) -> int:
    turns = router.turns(args.after, args.limit, args.session, args.agent)
    if args.json:
        print_json(turns, out)
        return ExitCode.OK
    for t in turns:
        out.write(
            f"{t.id:>8} {t.at.astimezone():%Y-%m-%d %H:%M:%S} {t.provider:<16} {t.model:<24} "
            f"in {t.input_tokens:>7} out {t.output_tokens:>7} HTTP {t.status_code}"
            f"{'  ' + t.agent if t.agent else ''}\n"
        )
    return ExitCode.OK


def register(add: Add) -> None:
    p = add("turns", cmd_turns, "list stored turns from the ledger")
    p.add_argument("--after", type=int, default=0, help="only turns with a larger id")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--session")
    p.add_argument("--agent")
