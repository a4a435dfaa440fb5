"""``bhoga cooldown clear PROVIDER [--model M]``: end a cooldown now, on a person's word.

A 429 cools a provider down until the time it named. When that time is wrong (a server's clock, a
retry-after years away, a limit already lifted by an upgrade), a person must not have to wait it out
or edit the store: this lifts it, and the daemon's log records who did and what was lifted.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TextIO

from bhoga import operations as ops
from bhoga.cli.common import ExitCode, print_json
from bhoga.cli.render import render_status
from bhoga.client import Router
from bhoga.protocol import ClearCooldownParams


def cmd_cooldown(args: argparse.Namespace, router: Router, out: TextIO) -> int:
    result = router.call(ops.CLEAR_COOLDOWN, ClearCooldownParams(provider=args.provider, model=args.model))
    if args.json:
        print_json(result, out)
        return ExitCode.OK
    what = args.provider if args.model == "*" else f"{args.provider} for {args.model}"
    if result.cleared:
        out.write(f"{what}: lifted {'; '.join(result.cleared)}\n")
    else:
        out.write(f"{what}: nothing to clear (no cooldown was running)\n")
    out.write(render_status([result.quota], datetime.now(UTC)))
    return ExitCode.OK


def register(add: Callable[..., argparse.ArgumentParser]) -> None:
    p = add("cooldown", cmd_cooldown, "end a provider's cooldown now (recorded in the daemon's log)")
    p.add_argument("action", choices=["clear"], help="what to do (clear: end it now)")
    p.add_argument("provider")
    p.add_argument(
        "--model", default="*", help="only what holds this model back (default: the whole provider)"
    )
