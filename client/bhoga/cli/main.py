"""``bhoga``: the command a person (or a script) uses to ask the daemon.

Each command lives in its own module here with a ``register(add)`` function, where
``add(name, func, help)`` returns the subcommand's parser. ``main`` imports only the module of the
command being run (a statusline or prompt runs ``bhoga`` often; it should pay for one command, not
all of them); ``--help``, or a command it does not know, loads them all so argparse can list them.
Command modules import ``bhoga.cli.common`` and ``bhoga.cli.render``, never this module.

Exit codes scripts can rely on are ``bhoga.cli.common.ExitCode``:

* 0 — done (for ``best``: a provider was found)
* 1 — the daemon answered with an error (bad argument, unknown provider, ...)
* 2 — wrong command-line usage
* 3 — ``best``: no provider can serve the model right now
* 4 — the daemon is not running (or the socket cannot be reached)
* 5 — the daemon's reply could not be understood, or it timed out
* 7 — a part of bhoga the command needs is not installed here (the message names the extra)
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from bhoga.cli.common import Command, ExitCode, print_json
from bhoga.cli.render import (  # re-exported for command modules written against the old layout
    ago as ago,
    bar as bar,
    local_time as local_time,
    render_ranking as render_ranking,
    render_shared as render_shared,
    render_status as render_status,
    render_window as render_window,
    span as span,
)
from bhoga.client import Router
from bhoga.errors import ClientTimeout, DaemonNotRunning, ProtocolError, RemoteError
from bhoga.extras import NotInstalled

# The names scripts and older command modules used; ExitCode is the one definition. New modules
# import from bhoga.cli.common and bhoga.cli.render instead.
_print_json = print_json
EXIT_OK, EXIT_REMOTE, EXIT_USAGE = ExitCode.OK, ExitCode.REMOTE, ExitCode.USAGE
EXIT_NO_PROVIDER, EXIT_NOT_RUNNING = ExitCode.NO_PROVIDER, ExitCode.NOT_RUNNING
EXIT_PROTOCOL = ExitCode.PROTOCOL

#: The core commands, by name, and the module that registers each.
COMMANDS: dict[str, str] = {
    "status": "bhoga.cli.status",
    "quotas": "bhoga.cli.status",
    "best": "bhoga.cli.best",
    "rank": "bhoga.cli.best",
    "set-quota": "bhoga.cli.set_quota",
    "record": "bhoga.cli.record",
    "turns": "bhoga.cli.turns",
    "daemon": "bhoga.cli.daemon",
    "call": "bhoga.cli.call",
}

#: More command modules, each registering the command named like the module (``bhoga.cli.doctor``
#: registers ``doctor``; ``_`` in a module name is ``-`` in the command's). To add a command, add its
#: module here.
EXTENSIONS: tuple[str, ...] = (
    "bhoga.cli.hermes",
    "bhoga.cli.service",
    "bhoga.cli.doctor",
    "bhoga.cli.metrics",
    "bhoga.cli.usage",
    "bhoga.cli.watch",
    "bhoga.cli.cooldown",
)

#: Options of ``bhoga`` itself that take a value, so the command can be found before parsing.
_VALUED = ("--socket", "--timeout")


def modules_for(argv: Sequence[str]) -> list[str]:
    """The command modules to load for ``argv``: only the named command's, or all of them."""
    everything = [*dict.fromkeys(COMMANDS.values()), *EXTENSIONS]
    args = iter(argv)
    for arg in args:
        if arg in _VALUED:
            next(args, None)
        elif arg.startswith("-"):
            if arg in ("-h", "--help", "--version"):
                return everything
        else:
            if arg in COMMANDS:
                return [COMMANDS[arg]]
            by_name = [m for m in EXTENSIONS if m.rpartition(".")[2].replace("_", "-") == arg]
            return by_name or everything
    return everything


class _Formatter(argparse.HelpFormatter):
    """argparse's formatter with the terminal width found without ``shutil``.

    argparse builds a formatter for every ``add_argument`` and, without a width, imports shutil
    (with zlib, bz2 and lzma) to ask the terminal's size: most of a short command's parsing cost.
    """

    def __init__(
        self, prog: str, indent_increment: int = 2, max_help_position: int = 24, width: int | None = None
    ) -> None:
        if width is None:
            width = _columns() - 2
        super().__init__(prog, indent_increment, max_help_position, width)


def _columns() -> int:
    """What ``shutil.get_terminal_size().columns`` answers: $COLUMNS, the terminal, else 80."""
    try:
        return int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        pass
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns or 80  # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):
        return 80


class _Version(argparse.Action):
    """``--version``: read from the installed package's metadata only when asked."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print bhoga's version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        import bhoga

        print(f"bhoga {bhoga.__version__}")
        parser.exit()


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser for ``argv``'s command (every command when ``argv`` is ``None``)."""
    parser = argparse.ArgumentParser(
        prog="bhoga",
        description="Ask bhogad which provider to use, and tell it what was spent.",
        formatter_class=_Formatter,
    )
    parser.add_argument("--socket", help="the daemon's socket (env BHOGA_SOCKET)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for a reply")
    parser.add_argument("--version", action=_Version)
    common = argparse.ArgumentParser(add_help=False, formatter_class=_Formatter)
    common.add_argument("--json", action="store_true", help="machine-readable output")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Command, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=help, description=help, formatter_class=_Formatter)
        p.set_defaults(func=func)
        return p

    for module in modules_for(["--help"] if argv is None else argv):
        importlib.import_module(module).register(add)
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    try:
        with Router(socket_path=args.socket, timeout=args.timeout) as router:
            code: int = args.func(args, router, out)
            return code
    except DaemonNotRunning as exc:
        print(f"bhoga: {exc}", file=sys.stderr)
        return ExitCode.NOT_RUNNING
    except RemoteError as exc:
        print(f"bhoga: {exc.message}", file=sys.stderr)
        return ExitCode.REMOTE
    except (ProtocolError, ClientTimeout) as exc:
        print(f"bhoga: {exc}", file=sys.stderr)
        return ExitCode.PROTOCOL
    except NotInstalled as exc:
        print(f"bhoga: {exc}", file=sys.stderr)
        return ExitCode.NOT_INSTALLED
    except argparse.ArgumentTypeError as exc:
        parser.print_usage(sys.stderr)
        print(f"bhoga: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    except BrokenPipeError:
        return ExitCode.OK
