"""``bhoga alerts``: show quota alerts as they fire, on the desktop too; ``--history`` lists past ones.

The foreground command subscribes to the daemon's events and, for each ``quota.alert``, prints a line
and calls ``notify-send`` (Linux) or ``osascript`` (macOS) when present. It pings the daemon now and
then so the connection is not closed as idle, and follows a daemon restart by reconnecting.
Run it at login (a user service, or your desktop's autostart) to be told before a limit is hit.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import socket
import subprocess
import sys
import time
from typing import Any, TextIO

import msgspec

from bhoga import codec, paths
from bhoga.client import Router
from bhoga.protocol import MAX_REPLY_BYTES, QUOTA_ALERT, Alert, Method

_PING_S = 60.0
_alert_decoder = msgspec.json.Decoder(Alert)


def render(alert: Alert) -> str:
    return f"{alert.at.astimezone():%Y-%m-%d %H:%M:%S}  {alert.kind.value:<21} {alert.message}"


def desktop_command(alert: Alert, platform: str = sys.platform) -> list[str] | None:
    """The desktop notifier for this platform, if installed; the alert is passed as arguments only."""
    title = f"bhoga: {alert.provider}"
    if platform == "darwin":
        exe = shutil.which("osascript")
        if exe is None:
            return None
        script = f"display notification {json.dumps(alert.message)} with title {json.dumps(title)}"
        return [exe, "-e", script]
    exe = shutil.which("notify-send")
    if exe is None:
        return None
    urgency = "critical" if (alert.threshold or 0) >= 100 or alert.kind == "unavailable" else "normal"
    return [exe, "--app-name=bhoga", f"--urgency={urgency}", title, alert.message]


def notify_desktop(alert: Alert) -> None:
    command = desktop_command(alert)
    if command is None:
        return
    # A desktop without a notification daemon: the printed line is still there.
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run(command, timeout=10, check=False, capture_output=True)


def follow(sock_path: str, out: TextIO, desktop: bool, as_json: bool, once: bool = False) -> int:
    """Print alerts until interrupted; reconnect after a daemon restart."""
    waiting_said = False
    while True:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.connect(sock_path)
                sock.sendall(codec.request_line(Method.SUBSCRIBE, msgspec.UNSET, 1))
                waiting_said = False
                _read(sock, out, desktop, as_json)
        except (FileNotFoundError, ConnectionRefusedError):
            if once:
                return 4
            if not waiting_said:
                print(f"bhoga: waiting for the daemon at {sock_path}", file=sys.stderr)
                waiting_said = True
        except (ConnectionError, OSError):
            if once:
                return 4
        time.sleep(2.0)


def _read(sock: socket.socket, out: TextIO, desktop: bool, as_json: bool) -> None:
    buffer = b""
    last_ping = time.monotonic()
    sock.settimeout(_PING_S / 4)
    ids = 2
    while True:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            chunk = None
        if chunk == b"":
            return  # the daemon went away
        if chunk:
            buffer += chunk
            if len(buffer) > MAX_REPLY_BYTES:
                return
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            try:
                reply = codec.decode_response(line)
            except msgspec.DecodeError:
                continue
            if reply.method != QUOTA_ALERT or reply.params is msgspec.UNSET:
                continue
            alert = _alert_decoder.decode(reply.params)
            out.write((codec.encode(alert).decode() if as_json else render(alert)) + "\n")
            out.flush()
            if desktop:
                notify_desktop(alert)
        if time.monotonic() - last_ping > _PING_S:
            sock.sendall(codec.request_line(Method.HELLO, msgspec.UNSET, ids))
            ids += 1
            last_ping = time.monotonic()


def cmd_alerts(args: argparse.Namespace, router: Router, out: TextIO) -> int:
    if args.history:
        params: dict[str, Any] = {"limit": args.limit}
        if args.provider:
            params["provider"] = args.provider
        alerts: list[Alert] = router.call(Method.ALERT_HISTORY, params, list[Alert])
        if args.json:
            out.write(json.dumps(msgspec.to_builtins(alerts), indent=2) + "\n")
        elif not alerts:
            out.write("no alerts yet\n")
        else:
            out.writelines(render(a) + "\n" for a in alerts)
        return 0
    sock_path = str(paths.socket_path(args.socket))
    try:
        return follow(sock_path, out, desktop=not args.no_desktop, as_json=args.json)
    except KeyboardInterrupt:
        return 0


def register(add: Any) -> None:
    p = add(
        "alerts", cmd_alerts, "print quota alerts as they fire (and notify the desktop); --history lists them"
    )
    p.add_argument("--history", action="store_true", help="list alerts that fired, oldest first")
    p.add_argument("--limit", type=int, default=100, help="with --history: at most this many (newest)")
    p.add_argument("--provider", help="with --history: only this provider's")
    p.add_argument("--no-desktop", action="store_true", help="print only; no notify-send / osascript")
