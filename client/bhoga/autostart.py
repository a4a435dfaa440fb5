"""Starting ``bhogad`` for ``autostart=True``, and saying exactly why when it cannot start.

The daemon is started detached: a short-lived launcher process starts it in its own session with its
output appended to ``<state dir>/bhogad.log`` and waits until it either answers on the socket or
exits. The daemon is therefore not our child (no zombie when it exits, nothing for a harness to reap),
yet its start-up error reaches the caller: the launcher's exit status says the daemon died, and the
log holds its own words. Several starters may race; the daemon's instance lock lets exactly one
serve, and the others' "already running" exit is not a failure.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from bhoga import extras, paths
from bhoga.errors import DaemonNotInstalled, DaemonStartFailed

if TYPE_CHECKING:
    from pathlib import Path

#: The launcher's own exit status when the daemon exited with an error before it answered.
_DIED = 3
#: How long the launcher waits for a daemon that neither answers nor exits.
START_TIMEOUT_S = 20.0
#: A log past this size is rotated to ``bhogad.log.1`` before the next start.
MAX_LOG_BYTES = 1 << 20

_LAUNCHER = """
import os, socket, subprocess, sys, time
DIED = int(sys.argv[1])
log_path, sock_path, timeout, *argv = sys.argv[2:]
with open(log_path, "ab") as log:
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                            start_new_session=True, close_fds=True)
deadline = time.monotonic() + float(timeout)
while time.monotonic() < deadline:
    code = proc.poll()
    if code is not None:
        sys.exit(0 if code == 0 else DIED)
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(sock_path)
        sys.exit(0)
    except OSError:
        time.sleep(0.02)
    finally:
        probe.close()
sys.exit(0)
"""


def log_path() -> Path:
    return paths.state_dir() / "bhogad.log"


def _prepare_log(log: Path) -> int:
    """Make the state directory, rotate a big log; return the offset this start's output begins at."""
    log.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        size = log.stat().st_size
    except FileNotFoundError:
        return 0
    if size > MAX_LOG_BYTES:
        os.replace(log, log.with_name(log.name + ".1"))
        return 0
    return size


def _reason(log: Path, offset: int) -> str:
    """The daemon's own last word from this start: its ``bhogad: ...`` line, else its last line."""
    try:
        with log.open("rb") as f:
            f.seek(offset)
            text = f.read(64 << 10).decode("utf-8", "replace")
    except OSError:
        return "it exited with an error"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    own = [line for line in lines if line.startswith("bhogad:")]
    return (own or lines or ["it exited without a message"])[-1].removeprefix("bhogad: ")


def start(socket_path: Path) -> None:
    """Start bhogad for ``socket_path`` and wait until it answers, exits, or the timeout passes.

    :raises DaemonNotInstalled: when this Python has only the client.
    :raises DaemonStartFailed: when the daemon exited with an error; names its log.
    """
    import subprocess

    try:
        extras.require_daemon()
    except extras.NotInstalled as exc:
        raise DaemonNotInstalled(os.fspath(socket_path), str(exc)) from None
    log = log_path()
    try:
        offset = _prepare_log(log)
    except OSError as exc:
        raise DaemonStartFailed(os.fspath(socket_path), f"cannot write {log}: {exc.strerror}", log) from None
    sock = os.fspath(socket_path)
    daemon = [sys.executable, "-m", "bhogad", "--socket", sock]
    launcher = [sys.executable, "-c", _LAUNCHER, str(_DIED), os.fspath(log), sock, str(START_TIMEOUT_S)]
    try:
        done = subprocess.run(
            [*launcher, *daemon], stdin=subprocess.DEVNULL, check=False, timeout=START_TIMEOUT_S + 10
        )
    except subprocess.TimeoutExpired:
        return  # the caller's connection attempts decide; the daemon may still be coming up
    if done.returncode == _DIED:
        raise DaemonStartFailed(sock, _reason(log, offset), log)
