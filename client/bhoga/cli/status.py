"""``bhoga status`` (every provider and window, for a person) and ``bhoga quotas`` (the raw records)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import TextIO

from bhoga.cli.common import Add, ExitCode, print_json
from bhoga.cli.render import render_shared, render_status
from bhoga.client import Router


def cmd_status(args: argparse.Namespace, router: Router, out: TextIO) -> int:
    quotas = list(router.quotas().values())
    if args.json:
        print_json(quotas, out)
    else:
        now = datetime.now(UTC)
        shared = router.status().shared
        if shared is not None:
            out.write(render_shared(shared, now))
        out.write(render_status(quotas, now))
    return ExitCode.OK


def cmd_quotas(args: argparse.Namespace, router: Router, out: TextIO) -> int:
    print_json(router.quotas(), out)
    return ExitCode.OK


def register(add: Add) -> None:
    add("status", cmd_status, "every provider and window, with bars, resets and staleness")
    add("quotas", cmd_quotas, "the raw quota records (always JSON)")
