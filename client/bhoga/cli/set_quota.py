"""``bhoga set-quota PROVIDER PCT``: a quota known by hand, held until a newer reading arrives."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import TextIO

from bhoga.cli.common import Add, ExitCode, print_json, when
from bhoga.cli.render import render_status
from bhoga.client import Router


def _pct(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


def cmd_set_quota(args: argparse.Namespace, router: Router, out: TextIO) -> int:
    q = router.set_quota(args.provider, args.pct_remaining, args.weekly, args.model, resets_at=args.resets_at)
    if args.json:
        print_json(q, out)
    else:
        out.write(render_status([q], datetime.now(UTC)))
    return ExitCode.OK


def register(add: Add) -> None:
    p = add("set-quota", cmd_set_quota, "set a provider's remaining quota by hand (percent)")
    p.add_argument("provider")
    p.add_argument("pct_remaining", type=_pct)
    p.add_argument("--weekly", type=_pct, help="weekly window remaining percent (default: the same)")
    p.add_argument("--model", default="*", help="limit to one model (default: all models)")
    p.add_argument("--resets-at", type=when, help="when this quota resets (ISO 8601)")
