"""``bhoga metrics``: the daemon's Prometheus text exposition, for a person or a textfile collector.

node_exporter's textfile collector (or any scraper wrapper) can take this output as it is, which is
why the daemon needs no HTTP port of its own to be monitored.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TextIO

from bhoga.client import Router
from bhoga.protocol import Method


def cmd_metrics(args: argparse.Namespace, router: Router, out: TextIO) -> int:
    text: str = router.call(Method.METRICS, None, str)
    out.write(text)
    return 0


def register(add: Callable[..., argparse.ArgumentParser]) -> None:
    add("metrics", cmd_metrics, "the daemon's metrics in Prometheus text format")
