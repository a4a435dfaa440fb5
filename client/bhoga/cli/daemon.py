"""``bhoga daemon``: the daemon's own status (version, pid, socket, connections)."""

from __future__ import annotations

import argparse
from typing import TextIO

import msgspec

from bhoga.cli.common import Add, ExitCode, print_json
from bhoga.client import Router


def cmd_daemon_status(args: argparse.Namespace, router: Router, out: TextIO) -> int:
    status = router.status()
    if args.json:
        print_json(status, out)
    else:
        for field in msgspec.structs.fields(status):
            out.write(f"{field.name:<20} {getattr(status, field.name)}\n")
    return ExitCode.OK


def register(add: Add) -> None:
    add("daemon", cmd_daemon_status, "the daemon's own status (version, socket, connections)")
