"""``bhoga statusline``: Claude Code's ``statusLine`` command.

Claude Code runs the command on every statusline refresh with a JSON object on stdin (``model``,
``cost``, ``context_window`` and, for subscribers since 2.1.80, ``rate_limits`` with ``five_hour``,
``seven_day`` and per-model ``seven_day_<model>`` buckets of ``{used_percentage, resets_at}``). This
command passes those readings to the daemon as ``claude_code`` windows with source ``statusline`` —
the freshest Claude numbers there are, at no request to Anthropic — asks which provider is best for
the model, and prints one line.

It runs often and must never break the statusline, so the hot path is lean (stdlib ``json`` and
``socket`` only: no argparse, no msgspec, no client), every step is bounded in time and size, and any
failure just leaves its part out: the command always prints what it can and exits 0.
``--install`` (which may be slow) edits Claude Code's settings and lives in ``statusline_install``.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs more than this module
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any, TextIO

PROVIDER = "claude_code"
#: Most bytes read from stdin; Claude Code's payload is a few KiB.
MAX_INPUT = 1 << 20
#: Most bytes read from the daemon's reply.
MAX_REPLY = 1 << 20
#: Default time budget for the whole daemon exchange, in seconds.
DEFAULT_TIMEOUT = 0.5
#: Placeholders a ``--format`` may use; missing values print as ``-``.
FIELDS = ("model", "burst", "burst_reset", "weekly", "weekly_reset", "best", "cost", "context")

#: ``rate_limits`` buckets: name → (window name, scope, length in minutes).
_BUCKETS = {"five_hour": ("burst", "*", 300), "seven_day": ("weekly", "*", 10080)}
_MODEL_BUCKET = "seven_day_"

_RESET = "\033[0m"
_COLOURS = ((95.0, "\033[31m"), (80.0, "\033[33m"), (0.0, "\033[32m"))


def _number(value: object, low: float, high: float) -> float | None:
    """A finite number within ``[low, high]``, or None: nothing from stdin is trusted."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if low <= number <= high else None


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def windows_of(payload: Mapping[str, Any], now: float) -> list[dict[str, Any]]:
    """The ``quota.report`` windows in a statusline payload; [] when it has no ``rate_limits``."""
    return [w for w, _ in _readings(payload, now)]


def _readings(payload: Mapping[str, Any], now: float) -> list[tuple[dict[str, Any], float | None]]:
    """Each window with its reset as epoch seconds (for the line), in payload order."""
    limits = payload.get("rate_limits")
    if not isinstance(limits, dict):
        return []
    windows: list[tuple[dict[str, Any], float | None]] = []
    for key, bucket in list(limits.items())[:32]:
        if not isinstance(key, str) or not isinstance(bucket, dict):
            continue
        if key in _BUCKETS:
            name, scope, minutes = _BUCKETS[key]
        elif key.startswith(_MODEL_BUCKET) and 0 < len(key) - len(_MODEL_BUCKET) <= 32:
            name, scope, minutes = "weekly", key[len(_MODEL_BUCKET) :].lower(), 10080
        else:
            continue
        used = _number(bucket.get("used_percentage"), 0.0, 1000.0)
        if used is None:
            continue
        window: dict[str, Any] = {
            "name": name,
            "scope": scope,
            "pct_used": used,
            "window_min": minutes,
            "updated_at": _iso(now),
            "source": "statusline",
        }
        # A reset in the past or more than a window ahead is a bad value, not a reading.
        resets = _number(bucket.get("resets_at"), now - 60, now + minutes * 60 + 3600)
        if resets is not None:
            window["resets_at"] = _iso(resets)
        windows.append((window, resets))
    return windows


def _span(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 3600:
        return f"{seconds // 60:.0f}m"
    if seconds < 48 * 3600:
        return f"{seconds // 3600:.0f}h{seconds % 3600 // 60:02.0f}m"
    return f"{seconds // 86400:.0f}d{seconds % 86400 // 3600:.0f}h"


def socket_path(explicit: str | None) -> str:
    """The daemon's socket: as ``bhoga.paths`` resolves it, without importing platformdirs in the
    common cases (an explicit path, ``BHOGA_SOCKET``, or ``XDG_RUNTIME_DIR`` on Linux)."""
    if explicit:
        return os.path.expanduser(explicit)
    env = os.environ.get("BHOGA_SOCKET")
    if env:
        return os.path.expanduser(env)
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and sys.platform.startswith("linux"):
        return os.path.join(runtime, "bhoga", "bhogad.sock")
    from bhoga import paths

    return str(paths.socket_path())


def exchange(path: str, requests: list[dict[str, Any]], timeout: float) -> dict[int, Any]:
    """Send a JSON-RPC batch and return each reply's result by id; {} on any failure."""
    deadline = time.monotonic() + timeout
    expected = sum(1 for r in requests if "id" in r)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(json.dumps(requests, separators=(",", ":")).encode() + b"\n")
        if not expected:
            return {}
        data = b""
        while not data.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or len(data) > MAX_REPLY:
                return {}
            sock.settimeout(left)
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    replies = json.loads(data)
    if isinstance(replies, dict):
        replies = [replies]
    return {
        r["id"]: r.get("result") for r in replies if isinstance(r, dict) and "id" in r and "error" not in r
    }


def _values(
    payload: Mapping[str, Any],
    readings: list[tuple[dict[str, Any], float | None]],
    best: str | None,
    now: float,
) -> dict[str, str]:
    values: dict[str, str] = {}
    model = payload.get("model")
    if isinstance(model, dict):
        name = model.get("display_name") or model.get("id")
        if isinstance(name, str) and name:
            values["model"] = name[:40].lower()
    for w, resets in readings:
        if w["scope"] != "*":
            continue
        values[w["name"]] = f"{w['pct_used']:.0f}%"
        if resets is not None:
            values[f"{w['name']}_reset"] = _span(resets - now)
    if best is not None:
        values["best"] = best
    cost = payload.get("cost")
    if isinstance(cost, dict):
        usd = _number(cost.get("total_cost_usd"), 0.0, 1e6)
        if usd is not None:
            values["cost"] = f"${usd:.2f}"
    context = payload.get("context_window")
    if isinstance(context, dict):
        used = _number(context.get("used_percentage"), 0.0, 100.0)
        if used is not None:
            values["context"] = f"{used:.0f}%"
    return values


def _paint(text: str, pct_text: str | None, colour: bool) -> str:
    if not colour or pct_text is None:
        return text
    pct = float(pct_text.rstrip("%"))
    code = next(c for floor, c in _COLOURS if pct >= floor)
    return f"{code}{text}{_RESET}"


def render(values: Mapping[str, str], fmt: str | None, colour: bool) -> str:
    """One line. The default leaves out what it does not know; a custom ``fmt`` shows ``-``."""
    if fmt is not None:
        filled = {name: values.get(name, "-") for name in FIELDS}
        try:
            return fmt.format_map(filled)
        except (KeyError, ValueError, IndexError, AttributeError):
            return "bhoga: bad --format (fields: " + ", ".join(FIELDS) + ")"
    parts: list[str] = []
    if "model" in values:
        parts.append(values["model"])
    if "burst" in values:
        reset = f" ({values['burst_reset']})" if "burst_reset" in values else ""
        parts.append(_paint(f"5h {values['burst']}{reset}", values["burst"], colour))
    if "weekly" in values:
        parts.append(_paint(f"wk {values['weekly']}", values["weekly"], colour))
    if "best" in values:
        parts.append(f"best: {values['best']}")
    if not parts and "cost" in values:
        parts.append(values["cost"])
    return " · ".join(parts) if parts else "bhoga"


def _wants_colour(mode: str, out: TextIO) -> bool:
    if mode == "always":
        return True
    if mode == "never" or os.environ.get("NO_COLOR"):
        return False
    try:
        tty = out.isatty()
    except (AttributeError, ValueError):
        tty = False
    return tty and os.environ.get("TERM", "dumb") != "dumb"


class _Args:
    __slots__ = ("chain_to", "colour", "fmt", "socket", "timeout")

    def __init__(self) -> None:
        self.socket: str | None = None
        self.timeout = DEFAULT_TIMEOUT
        self.fmt: str | None = os.environ.get("BHOGA_STATUSLINE_FORMAT") or None
        self.colour = "auto"
        self.chain_to: str | None = None


def _parse(argv: Sequence[str]) -> _Args:
    """The hot path's options, parsed by hand; unknown ones are ignored (never fail a statusline)."""
    args = _Args()
    items = list(argv)
    while items:
        item = items.pop(0)
        name, eq, inline = item.partition("=")
        if name not in ("--socket", "--timeout", "--format", "--color", "--chain-to"):
            continue
        value = inline if eq else (items.pop(0) if items else "")
        if name == "--socket":
            args.socket = value
        elif name == "--timeout":
            args.timeout = _number(_float(value), 0.01, 10.0) or DEFAULT_TIMEOUT
        elif name == "--format":
            args.fmt = value
        elif name == "--color":
            args.colour = value
        else:
            args.chain_to = value
    return args


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _chained(command: str, raw: bytes, timeout: float) -> str:
    """The output of the statusline command that was configured before bhoga's, if any."""
    import subprocess

    try:
        done = subprocess.run(
            command, shell=True, input=raw, capture_output=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.decode(errors="replace").strip().splitlines()[0] if done.stdout.strip() else ""


def run(argv: Sequence[str], stdin: Any, out: TextIO) -> int:
    args = _parse(argv)
    now = time.time()
    raw = b""
    payload: dict[str, Any] = {}
    try:
        if not stdin.isatty():
            raw = stdin.buffer.read(MAX_INPUT) if hasattr(stdin, "buffer") else stdin.read(MAX_INPUT).encode()
        decoded = json.loads(raw) if raw.strip() else {}
        payload = decoded if isinstance(decoded, dict) else {}
    except (ValueError, OSError, UnicodeError):
        payload = {}
    readings = _readings(payload, now)
    windows = [w for w, _ in readings]
    best: str | None = None
    model = payload.get("model")
    model_id = model.get("id") if isinstance(model, dict) else None
    requests: list[dict[str, Any]] = []
    if windows:
        # A notification: the daemon applies it before the next entry of the batch, without a reply.
        requests.append(
            {"jsonrpc": "2.0", "method": "quota.report", "params": {"provider": PROVIDER, "windows": windows}}
        )
    if isinstance(model_id, str) and 0 < len(model_id) <= 200:
        requests.append(
            {"jsonrpc": "2.0", "method": "router.best_for", "params": {"model": model_id}, "id": 1}
        )
    if requests:
        try:
            results = exchange(socket_path(args.socket), requests, args.timeout)
            rec = results.get(1)
            if isinstance(rec, dict) and isinstance(rec.get("provider_id"), str):
                best = rec["provider_id"]
            elif 1 in results:
                best = "none"
        except (OSError, ValueError, TypeError, KeyError, ImportError):
            pass  # daemon down, slow or odd: the line goes without its ``best`` part
    line = render(_values(payload, readings, best, now), args.fmt, _wants_colour(args.colour, out))
    if args.chain_to:
        other = _chained(args.chain_to, raw, max(args.timeout, 2.0))
        if other:
            line = f"{line} │ {other}"
    out.write(line + "\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[2:] if argv is None else argv
    if "--install" in argv or "--uninstall" in argv:
        from bhoga.cli import statusline_install

        return statusline_install.main(argv)
    try:
        return run(argv, sys.stdin, sys.stdout)
    except BrokenPipeError:
        return 0
    except Exception:  # never fail a statusline: print something and succeed
        try:  # noqa: SIM105 - contextlib would cost this hot path an import
            sys.stdout.write("bhoga\n")
        except OSError:
            pass
        return 0


def register(add: Any) -> None:
    """Lists ``statusline`` in ``bhoga --help``; the console script runs it before argparse."""
    p = add("statusline", _cmd, "Claude Code's statusLine command: reads its JSON on stdin, prints one line")
    p.add_argument("--install", action="store_true", help="add it to Claude Code's settings.json")
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("--chain", action="store_true")
    p.add_argument("--settings")
    p.add_argument(
        "--format",
        help="e.g. '{model} {burst} {weekly} {best}'; fields: model, burst, "
        "burst_reset, weekly, weekly_reset, best, cost, context",
    )
    p.add_argument("--color", choices=("auto", "always", "never"), default="auto")
    p.add_argument("--chain-to", help="another statusline command whose output follows bhoga's")


def _cmd(args: Any, router: Any, out: TextIO) -> int:
    # Reached only through ``bhoga --socket S statusline`` (or bhoga.cli.main.main): the console
    # script sends the plain ``bhoga statusline`` straight to ``main`` above.
    if args.install:
        from bhoga.cli import statusline_install

        argv = ["--install"] + (["--dry-run"] if args.dry_run else []) + (["--chain"] if args.chain else [])
        argv += ["--settings", args.settings] if args.settings else []
        return statusline_install.main(argv, out)
    argv = ["--color", args.color, "--timeout", str(min(args.timeout, 10.0))]
    argv += ["--socket", str(args.socket)] if args.socket else []
    argv += ["--format", args.format] if args.format else []
    argv += ["--chain-to", args.chain_to] if args.chain_to else []
    return run(argv, sys.stdin, out)
