"""What every ``bhoga`` command shares: exit codes, the command signature, JSON output, time parsing.

Command modules import this (and ``render``), never ``bhoga.cli.main``: ``main`` loads them, so an
import back would be a cycle.
"""

from __future__ import annotations

import argparse
import enum
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from bhoga.client import Router


class ExitCode(enum.IntEnum):
    """Exit codes scripts can rely on (README: The ``bhoga`` command)."""

    OK = 0
    #: The daemon answered with an error (bad argument, unknown provider, ...).
    REMOTE = 1
    #: Wrong command-line usage.
    USAGE = 2
    #: ``best``, ``hermes``: no provider can serve the model right now.
    NO_PROVIDER = 3
    #: The daemon is not running (or the socket cannot be reached).
    NOT_RUNNING = 4
    #: The daemon's reply could not be understood, or it timed out.
    PROTOCOL = 5
    #: ``hermes``: the Hermes config could not be edited; it is left untouched.
    CONFIG = 6
    #: A part of bhoga this command needs is not installed here (the message names the extra).
    NOT_INSTALLED = 7


#: A command: parsed arguments, a Router that connects only when first used, where to write.
Command = Callable[[argparse.Namespace, "Router", TextIO], int]
#: ``add(name, func, help)``: what each command module's ``register`` gets; returns the parser.
Add = Callable[[str, Command, str], argparse.ArgumentParser]


def print_json(value: Any, out: TextIO) -> None:
    import json

    import msgspec

    out.write(json.dumps(msgspec.to_builtins(value), indent=2, sort_keys=False) + "\n")


def when(text: str) -> datetime:
    """An ISO 8601 time from the command line; one without an offset is the user's local time."""
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    return at if at.tzinfo else at.astimezone()
