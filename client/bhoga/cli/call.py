"""``bhoga call METHOD [JSON]``: any JSON-RPC method by name, its result printed as JSON."""

from __future__ import annotations

import argparse
import json
from typing import TextIO

from bhoga.cli.common import Add, ExitCode, print_json
from bhoga.client import Router


def cmd_call(args: argparse.Namespace, router: Router, out: TextIO) -> int:
    try:
        params = json.loads(args.params) if args.params else None
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"params are not JSON: {exc}") from None
    print_json(router.call(args.method, params), out)
    return ExitCode.OK


def register(add: Add) -> None:
    p = add("call", cmd_call, "call any JSON-RPC method; params as a JSON object")
    p.add_argument("method")
    p.add_argument("params", nargs="?")
