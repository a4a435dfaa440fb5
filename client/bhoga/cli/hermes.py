"""``bhoga hermes apply|follow``: write bhoga's routing into Hermes's ``config.yaml``.

``apply`` writes once. ``follow`` keeps the file current for a long-running setup: each new Hermes
run (and a gateway, which re-reads the file when its mtime changes) starts on the provider bhoga
would pick now. Exit codes add one to ``bhoga``'s list:

* 3 — no provider Hermes can use is available for the model (nothing written)
* 6 — the Hermes config could not be edited (not YAML, wrong shape, unwritable); it is left untouched
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TextIO

import msgspec

from bhoga.cli.common import ExitCode
from bhoga.errors import BhogaError, DaemonNotRunning, ShuttingDown

if TYPE_CHECKING:
    from bhoga.hermes import HermesApplyResult, HermesPlan, Rankable

# bhoga.cli.common.ExitCode is the one definition; these names are what tests and scripts used.
EXIT_OK: Final = ExitCode.OK
EXIT_NO_PROVIDER: Final = ExitCode.NO_PROVIDER
EXIT_CONFIG: Final = ExitCode.CONFIG

#: Errors that mean "the daemon is away for now": ``follow`` waits them out instead of exiting.
_TRANSIENT: Final = (DaemonNotRunning, ShuttingDown, TimeoutError, ConnectionError)


_DESCRIPTION: Final = (
    "Write bhoga's provider choice for a model, and its fallback order, into the config of the Hermes "
    "agent (HERMES_HOME/config.yaml, else ~/.hermes/config.yaml). The file is edited in place: comments, "
    "key order and every other key are kept."
)
_HELP: Final = "write the best provider for a model into Hermes's config.yaml"


def register(add: Callable[[str, Any, str], argparse.ArgumentParser]) -> None:
    """``bhoga.cli.main`` extension hook: ``add(name, func, help)`` returns the new subcommand's parser."""
    parser = add("hermes", cmd_hermes, _HELP)
    parser.description = _DESCRIPTION
    _add_actions(parser)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``hermes`` with its ``apply`` and ``follow`` actions to ``bhoga``'s subparsers.

    The handler has ``bhoga.cli.main``'s shape, ``(args, router, out) -> exit code``, set as ``func``.
    """
    parser: argparse.ArgumentParser = subparsers.add_parser("hermes", help=_HELP, description=_DESCRIPTION)
    parser.set_defaults(func=cmd_hermes)
    _add_actions(parser)
    return parser


def cmd_hermes(args: argparse.Namespace, router: Rankable, out: TextIO) -> int:
    handler: Callable[[argparse.Namespace, Rankable, TextIO], int] = args.hermes_func
    return handler(args, router, out)


def _add_actions(hermes: argparse.ArgumentParser) -> None:
    sub = hermes.add_subparsers(dest="hermes_command", required=True, metavar="ACTION")

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("model", help="the model Hermes should run, e.g. claude-sonnet-4.6")
    common.add_argument("--config", dest="hermes_config", metavar="PATH", help="Hermes config file")
    common.add_argument(
        "--aux",
        action="store_true",
        help="also pin Hermes's auxiliary tasks (vision, web_extract, compression, skills_hub, approval, "
        "mcp) to the same provider, with the same fallback order",
    )
    common.add_argument(
        "--aux-task",
        action="append",
        default=[],
        metavar="TASK",
        help="pin this auxiliary task (repeatable; replaces the default list of --aux)",
    )
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output"
    )

    p = sub.add_parser(
        "apply", parents=[common], help="write it once", description="Write the routing for MODEL once."
    )
    p.add_argument("--dry-run", action="store_true", help="print the change as a unified diff; write nothing")
    p.set_defaults(hermes_func=cmd_apply)

    p = sub.add_parser(
        "follow",
        parents=[common],
        help="keep it current as quotas change",
        description="Re-apply whenever the best provider (or the fallback order) for MODEL changes. "
        "Runs until interrupted.",
    )
    p.add_argument("--interval", type=float, default=15.0, help="seconds between checks (default 15)")
    p.add_argument(
        "--min-interval",
        type=float,
        default=60.0,
        help="never rewrite the file more often than this, in seconds (default 60)",
    )
    p.set_defaults(hermes_func=cmd_follow)


def _aux(args: argparse.Namespace) -> tuple[str, ...]:
    from bhoga.hermes import aux_tasks_for

    try:
        return aux_tasks_for(args.aux_task or args.aux)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _report(result: HermesApplyResult, args: argparse.Namespace, out: TextIO) -> None:
    if getattr(args, "json", False):
        out.write(json.dumps(msgspec.to_builtins(result), indent=2) + "\n")
        return
    if getattr(args, "dry_run", False):
        out.write(result.diff or f"{result.path}: no change needed\n")
    if result.ok:
        out.write(f"{result.path}: {result.reason}\n")
    plan = result.plan
    for line in plan.skipped if plan else ():
        out.write(f"  not a fallback: {line}\n")
    if result.removed:
        verb = "would remove" if result.dry_run else "removed"
        out.write(f"  {verb}: {', '.join(result.removed)}\n")
    if result.backup:
        out.write(f"  previous file: {result.backup}\n")
    for warning in result.warnings:
        print(f"bhoga: warning: {warning}", file=sys.stderr)
    if not result.ok:
        print(f"bhoga: {result.reason}", file=sys.stderr)


def _exit_code(result: HermesApplyResult) -> int:
    if result.ok:
        return EXIT_OK
    return EXIT_CONFIG if result.plan is not None else EXIT_NO_PROVIDER


def cmd_apply(args: argparse.Namespace, router: Rankable, out: TextIO) -> int:
    from bhoga.hermes import write_hermes_config

    result = write_hermes_config(
        router, args.model, config_path=args.hermes_config, write_auxiliary=_aux(args), dry_run=args.dry_run
    )
    _report(result, args, out)
    return _exit_code(result)


# --------------------------------------------------------------------------------------------------
# follow


class RewriteGate:
    """When ``follow`` may rewrite: the plan changed, and the last write is ``min_interval`` old.

    A provider that flaps between two states would otherwise rewrite Hermes's config on every check;
    with the gate the file changes at most once per interval, and then to whatever is best by then.
    """

    def __init__(self, min_interval: float) -> None:
        self.min_interval = min_interval
        self.applied: tuple[object, ...] | None = None
        self.last_write = float("-inf")

    def due(self, signature: tuple[object, ...], now: float) -> bool:
        return signature != self.applied and now - self.last_write >= self.min_interval

    def wait_left(self, now: float) -> float:
        return max(0.0, self.min_interval - (now - self.last_write))

    def done(self, signature: tuple[object, ...], now: float, wrote: bool) -> None:
        self.applied = signature
        if wrote:
            self.last_write = now


class _Say:
    """Prints a status line only when it differs from the last one, so a long wait is one line."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.last = ""

    def __call__(self, line: str) -> None:
        if line != self.last:
            self.last = line
            stamp = time.strftime("%H:%M:%S")
            self.out.write(f"{stamp} {line}\n")
            self.out.flush()


def follow(
    router: Rankable,
    model: str,
    path: Path,
    *,
    aux_tasks: Sequence[str] = (),
    interval: float = 15.0,
    min_interval: float = 60.0,
    out: TextIO = sys.stdout,
    stop: threading.Event | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Re-apply until ``stop`` is set; returns the exit code."""
    from bhoga.hermes import plan_hermes, write_plan

    stop = stop or threading.Event()
    gate = RewriteGate(min_interval)
    say = _Say(out)
    backoff = interval
    while not stop.is_set():
        try:
            plan: HermesPlan | str = plan_hermes(router, model, aux_tasks)
        except _TRANSIENT as exc:
            # The daemon restarts (upgrade, crash): keep the last good config and wait for it.
            say(f"waiting for bhogad: {exc}")
            stop.wait(backoff)
            backoff = min(backoff * 2, max(interval, 300.0))
            continue
        backoff = interval
        now = clock()
        if isinstance(plan, str):
            # Keep the last written routing: Hermes still fails over within it.
            say(f"unchanged: {plan}")
        elif gate.due(plan.signature(), now):
            result = write_plan(path, plan)
            if result.ok:
                gate.done(plan.signature(), now, wrote=result.changed)
                say(f"{path}: {result.reason}")
            else:
                say(f"cannot update: {result.reason}")
        elif plan.signature() != gate.applied:
            # Said once per new routing, not once per check.
            chain = " → ".join(f"{r.provider}:{r.model}" for r in (plan.main, *plan.fallbacks))
            say(f"routing changed to {chain}; held back by --min-interval ({min_interval:g}s)")
            stop.wait(min(interval, gate.wait_left(now)))
            continue
        stop.wait(interval)
    return EXIT_OK


def cmd_follow(args: argparse.Namespace, router: Rankable, out: TextIO) -> int:
    from bhoga.hermes import hermes_config_path

    if args.interval <= 0 or args.min_interval < 0:
        raise argparse.ArgumentTypeError("--interval must be positive and --min-interval not negative")
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        # A service manager stops us with SIGTERM: finish the current step, exit 0.
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        return follow(
            router,
            args.model,
            hermes_config_path(args.hermes_config),
            aux_tasks=_aux(args),
            interval=args.interval,
            min_interval=args.min_interval,
            out=out,
            stop=stop,
        )
    except KeyboardInterrupt:
        return EXIT_OK
    except BhogaError as exc:
        print(f"bhoga: {exc}", file=sys.stderr)
        return 1
