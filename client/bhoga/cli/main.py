"""``bhoga``: the command a person (or a script) uses to ask the daemon.

Exit codes scripts can rely on:

* 0 — done (for ``best``: a provider was found)
* 1 — the daemon answered with an error (bad argument, unknown provider, ...)
* 2 — wrong command-line usage
* 3 — ``best``: no provider can serve the model right now
* 4 — the daemon is not running (or the socket cannot be reached)
* 5 — the daemon's reply could not be understood, or it timed out
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

import msgspec

from bhoga.client import Router
from bhoga.errors import ClientTimeout, DaemonNotRunning, ProtocolError, RemoteError
from bhoga.protocol import ProviderQuota, QuotaWindow, Ranking, SharedStatus, StoredTurn

EXIT_OK, EXIT_REMOTE, EXIT_USAGE, EXIT_NO_PROVIDER, EXIT_NOT_RUNNING, EXIT_PROTOCOL = 0, 1, 2, 3, 4, 5

Command = Callable[[argparse.Namespace, Router, TextIO], int]

#: Modules that add subcommands: each has ``register(add)``, where ``add(name, func, help)`` returns the
#: subcommand's parser. Commands get a Router that connects only when first used, so commands that
#: must work without a daemon (doctor, service install) simply do not call it.
EXTENSIONS: tuple[str, ...] = (
    "bhoga.cli.hermes",
    "bhoga.cli.service",
    "bhoga.cli.doctor",
    "bhoga.cli.metrics",
    "bhoga.cli.usage",
    "bhoga.cli.watch",
)


def _print_json(value: Any, out: TextIO) -> None:
    out.write(json.dumps(msgspec.to_builtins(value), indent=2, sort_keys=False) + "\n")


# -- formatting ----------------------------------------------------------------------------------


def bar(pct_used: float, width: int = 20) -> str:
    filled = round(max(0.0, min(100.0, pct_used)) / 100 * width)
    return "█" * filled + "░" * (width - filled)


def ago(at: datetime | None, now: datetime) -> str:
    if at is None:
        return "never"
    return f"{span((now - at).total_seconds())} ago"


def span(seconds: float) -> str:
    seconds = abs(seconds)
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f}m"
    if seconds < 48 * 3600:
        return f"{seconds // 3600:.0f}h{seconds % 3600 // 60:02.0f}m"
    return f"{seconds // 86400:.0f}d{seconds % 86400 // 3600:.0f}h"


def local_time(at: datetime, now: datetime) -> str:
    """Reset times in the user's own time zone, with how far away they are."""
    local = at.astimezone()
    fmt = "%H:%M" if local.date() == now.astimezone().date() else "%a %d %b %H:%M"
    return f"{local.strftime(fmt)} (in {span((at - now).total_seconds())})"


def render_window(w: QuotaWindow, now: datetime, outlook: str | None = None) -> str:
    reset = f"resets {local_time(w.resets_at, now)}" if w.resets_at else "reset unknown"
    counts = ""
    if w.limit is not None and w.remaining is not None:
        counts = f" {w.remaining:g}/{w.limit:g} left"
    stale = "  STALE" if w.stale else ""
    kind = " (rate)" if w.kind == "rate" else ""
    return (
        f"    {w.key:<22} {bar(w.pct_used)} {w.pct_used:5.1f}% used{counts}{kind}  {reset}  "
        f"[{w.source}{f' via {w.origin}' if w.origin else ''}, {ago(w.updated_at, now)}]{stale}"
        + (f"  → {outlook}" if outlook else "")
    )


def render_shared(shared: SharedStatus, now: datetime) -> str:
    """One line on the link to other machines' daemons."""
    peers = ", ".join(f"{d} ({ago(at, now)})" for d, at in sorted(shared.peers.items())) or "none yet"
    if shared.connected:
        return f"shared state: {shared.server} as {shared.device}; other machines: {peers}\n"
    since = f" since {local_time(shared.unreachable_since, now)}" if shared.unreachable_since else ""
    return (
        f"shared state UNREACHABLE{since} ({shared.last_error}): {shared.server} as {shared.device}; "
        "routing on this machine's readings\n"
    )


def render_status(quotas: Sequence[ProviderQuota], now: datetime) -> str:
    lines: list[str] = []
    for q in sorted(quotas, key=lambda q: (not q.available, q.priority, q.provider_id)):
        left = f"{q.quota_pct * 100:.0f}% left" if q.quota_pct >= 0 else "quota unknown"
        lines.append(f"{q.provider_id:<16} {q.kind:<12} {q.status:<11} {left:<14} {q.reason}")
        if q.account:
            lines.append(f"    account {q.account}")
        if q.cooldown_until is not None:
            lines.append(f"    cooldown until {local_time(q.cooldown_until, now)}: {q.cooldown_reason}")
        if q.health != "healthy":
            lines.append(f"    health: {q.health} ({q.consecutive_failures} failures; {q.last_error})")
        for model, health in sorted(q.model_health.items()):
            lines.append(f"    {model}: {health} (failing for this model while others answer)")
        if q.last_poll_error:
            lines.append(f"    last poll: {q.last_poll_error} ({ago(q.last_poll_at, now)})")
        lines.extend(
            render_window(w, now, q.outlook.get(w.key))
            for w in sorted(q.windows.values(), key=lambda w: w.key)
        )
    return "\n".join(lines) + "\n"


def render_ranking(ranking: Ranking) -> str:
    lines = [f"{ranking.model} (family {ranking.family}, strategy {ranking.strategy}):"]
    for i, c in enumerate(ranking.candidates, 1):
        mark = f"{i}." if c.eligible else " ✗"
        left = f"{c.quota_pct * 100:.0f}%" if c.quota_pct >= 0 else "?"
        score = f"score {c.score:+.2f}  " if c.score is not None else ""
        lines.append(f"  {mark:<3} {c.provider_id:<16} p{c.priority}  {left:>4}  {score}{c.reason}")
    return "\n".join(lines) + "\n"


# -- commands ------------------------------------------------------------------------------------


def cmd_status(args: argparse.Namespace, router: Router, out: TextIO) -> int:
    quotas = list(router.quotas().values())
    if args.json:
        _print_json(quotas, out)
    else:
        now = datetime.now(UTC)
        shared = router.status().shared
        if shared is not None:
            out.write(render_shared(shared, now))
        out.write(render_status(quotas, now))
    return EXIT_OK


def cmd_best(args: argparse.Namespace, router: Router, out: TextIO) -> int:
    ranking = router.rank(args.model, agent=args.agent)
    rec = ranking.recommendation
    if args.json:
        _print_json(ranking if args.explain else rec, out)
    elif args.explain:
        out.write(render_ranking(ranking))
    elif rec is not None:
        left = f"{rec.quota_pct * 100:.0f}% left" if rec.quota_pct >= 0 else "quota unknown"
        out.write(f"{rec.provider_id}\t{rec.hermes_model}\t{left}\n")
    else:
        out.write(f"no provider can serve {args.model} now (bhoga best {args.model} --explain says why)\n")
    return EXIT_OK if rec is not None else EXIT_NO_PROVIDER


def cmd_set_quota(args: argparse.Namespace, router: Router, out: TextIO) -> int:
    q = router.set_quota(args.provider, args.pct_remaining, args.weekly, args.model, resets_at=args.resets_at)
    if args.json:
        _print_json(q, out)
    else:
        out.write(render_status([q], datetime.now(UTC)))
    return EXIT_OK


def cmd_quotas(args: argparse.Namespace, router: Router, out: TextIO) -> int:
    _print_json(router.quotas(), out)
    return EXIT_OK


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
        _print_json({"id": turn_id}, out)
    else:
        out.write(f"stored turn {turn_id}\n")
    return EXIT_OK


def cmd_turns(args: argparse.Namespace, router: Router, out: TextIO) -> int:
    turns: list[StoredTurn] = router.turns(args.after, args.limit, args.session, args.agent)
    if args.json:
        _print_json(turns, out)
        return EXIT_OK
    for t in turns:
        out.write(
            f"{t.id:>8} {t.at.astimezone():%Y-%m-%d %H:%M:%S} {t.provider:<16} {t.model:<24} "
            f"in {t.input_tokens:>7} out {t.output_tokens:>7} HTTP {t.status_code}"
            f"{'  ' + t.agent if t.agent else ''}\n"
        )
    return EXIT_OK


def cmd_daemon_status(args: argparse.Namespace, router: Router, out: TextIO) -> int:
    status = router.status()
    if args.json:
        _print_json(status, out)
    else:
        for field in msgspec.structs.fields(status):
            out.write(f"{field.name:<20} {getattr(status, field.name)}\n")
    return EXIT_OK


def cmd_call(args: argparse.Namespace, router: Router, out: TextIO) -> int:
    try:
        params = json.loads(args.params) if args.params else None
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"params are not JSON: {exc}") from None
    _print_json(router.call(args.method, params), out)
    return EXIT_OK


# -- parser --------------------------------------------------------------------------------------


def _pct(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


def _when(text: str) -> datetime:
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    return at if at.tzinfo else at.astimezone()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bhoga", description="Ask bhogad which provider to use, and tell it what was spent."
    )
    parser.add_argument("--socket", help="the daemon's socket (env BHOGA_SOCKET)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for a reply")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="machine-readable output")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Command, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=help, description=help)
        p.set_defaults(func=func)
        return p

    add("status", cmd_status, "every provider and window, with bars, resets and staleness")
    p = add("best", cmd_best, "the best provider for a model (exit 3 when there is none)")
    p.add_argument("model")
    p.add_argument("--explain", action="store_true", help="show every candidate and why")
    p.add_argument("--agent", help="ask as this agent (an agent over its budget avoids paid providers)")
    p = add("rank", cmd_best, "every candidate for a model, best first, with reasons")
    p.add_argument("model")
    p.add_argument("--agent", help="ask as this agent (an agent over its budget avoids paid providers)")
    p.set_defaults(explain=True)
    p = add("set-quota", cmd_set_quota, "set a provider's remaining quota by hand (percent)")
    p.add_argument("provider")
    p.add_argument("pct_remaining", type=_pct)
    p.add_argument("--weekly", type=_pct, help="weekly window remaining percent (default: the same)")
    p.add_argument("--model", default="*", help="limit to one model (default: all models)")
    p.add_argument("--resets-at", type=_when, help="when this quota resets (ISO 8601)")
    add("quotas", cmd_quotas, "the raw quota records (always JSON)")
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
    p = add("turns", cmd_turns, "list stored turns from the ledger")
    p.add_argument("--after", type=int, default=0, help="only turns with a larger id")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--session")
    p.add_argument("--agent")
    add("daemon", cmd_daemon_status, "the daemon's own status (version, socket, connections)")
    p = add("call", cmd_call, "call any JSON-RPC method; params as a JSON object")
    p.add_argument("method")
    p.add_argument("params", nargs="?")
    for module in EXTENSIONS:
        importlib.import_module(module).register(add)
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with Router(socket_path=args.socket, timeout=args.timeout) as router:
            code: int = args.func(args, router, out)
            return code
    except DaemonNotRunning as exc:
        print(f"bhoga: {exc}", file=sys.stderr)
        return EXIT_NOT_RUNNING
    except RemoteError as exc:
        print(f"bhoga: {exc.message}", file=sys.stderr)
        return EXIT_REMOTE
    except (ProtocolError, ClientTimeout) as exc:
        print(f"bhoga: {exc}", file=sys.stderr)
        return EXIT_PROTOCOL
    except argparse.ArgumentTypeError as exc:
        parser.print_usage(sys.stderr)
        print(f"bhoga: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        return EXIT_OK
