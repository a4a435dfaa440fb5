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
        status = router.status()
        if status.shared is not None:
            out.write(render_shared(status.shared, now))
        out.write(render_status(quotas, now))
        ingest = status.ingest
        if ingest is not None and (ingest.scanning or ingest.last_error):
            state = (
                f"reading, {ingest.bytes_pending / 1e6:.1f} MB to go, {ingest.turns_ingested} turns so far"
                if ingest.scanning
                else f"last pass failed: {ingest.last_error}"
            )
            out.write(f"harness logs ({', '.join(ingest.sources)}): {state}\n")
    return ExitCode.OK


def cmd_quotas(args: argparse.Namespace, router: Router, out: TextIO) -> int:
    print_json(router.quotas(), out)
    return ExitCode.OK


def register(add: Add) -> None:
    add("status", cmd_status, "every provider and window, with bars, resets and staleness")
    add("quotas", cmd_quotas, "the raw quota records (always JSON)")
