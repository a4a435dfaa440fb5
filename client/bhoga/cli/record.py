"""``bhoga record PROVIDER MODEL``: report one model call and wait until it is stored."""

from __future__ import annotations

import argparse
from typing import TextIO

from bhoga.cli.common import Add, ExitCode, print_json
from bhoga.client import Router


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME:VALUE, got {text!r}")
    return name.strip(), value.strip()


def cmd_record(args: argparse.Namespace, router: Router, out: TextIO) -> int:
    turn_id = router.record_turn(
        args.provider,
        args.model,
        args.input,
        args.output,
        dict(args.header),
        args.status,
        cache_read_tokens=args.cache_read,
        cache_write_tokens=args.cache_write,
        session=args.session,
        agent=args.agent,
        wait=True,
    )
    if args.json:
        print_json({"id": turn_id}, out)
    else:
        out.write(f"stored turn {turn_id}\n")
    return ExitCode.OK


def register(add: Add) -> None:
    p = add("record", cmd_record, "record one model call (waits until it is stored)")
    p.add_argument("provider")
    p.add_argument("model")
    p.add_argument("--input", type=int, default=0, help="input tokens")
    p.add_argument("--output", type=int, default=0, help="output tokens")
    p.add_argument("--cache-read", type=int, default=0)
    p.add_argument("--cache-write", type=int, default=0)
    p.add_argument("--status", type=int, default=200, help="HTTP status of the response")
    p.add_argument("--header", type=_header, action="append", default=[], metavar="NAME:VALUE")
    p.add_argument("--session")
    p.add_argument("--agent")
