"""``bhoga metrics``: the daemon's Prometheus text exposition, for a person or a textfile collector.

node_exporter's textfile collector (or any scraper wrapper) can take this output as it is, which is
why the daemon needs no HTTP port of its own to be monitored.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TextIO

from bhoga.cli.common import print_json
from bhoga.client import Router


def cmd_metrics(args: argparse.Namespace, router: Router, out: TextIO) -> int:
    text = router.metrics()
    if args.json:
        # The exposition is already machine-readable; --json wraps it so every command's JSON parses.
        print_json({"format": "prometheus-text-0.0.4", "text": text}, out)
    else:
        out.write(text)
    return 0


def register(add: Callable[..., argparse.ArgumentParser]) -> None:
    add("metrics", cmd_metrics, "the daemon's metrics in Prometheus text format (--json: wrapped)")
