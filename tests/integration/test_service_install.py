"""``bhoga service``: the files it writes and the manager commands it runs, in order.

No user session manager runs here, so ``systemctl`` and ``launchctl`` are small scripts on PATH that
record how they were called; everything else (file writing, paths, refusal) is the real command.
"""

from __future__ import annotations

import os
import plistlib
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import DaemonProcess

FAKE_MANAGER = """#!/bin/sh
echo "$(basename "$0") $*" >> "$FAKE_MANAGER_LOG"
case "$*" in
  *is-enabled*) echo enabled ;;
  *is-active*) echo active ;;
esac
exit 0
"""


def environment(root: Path, **more: str) -> dict[str, str]:
    bin_dir = root / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name in ("systemctl", "launchctl"):
        (bin_dir / name).write_text(FAKE_MANAGER)
        (bin_dir / name).chmod(0o755)
    runtime = root / "rt"
    runtime.mkdir(mode=0o700, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BHOGA_")}
    env.update(
        PATH=f"{bin_dir}:{env.get('PATH', '/usr/bin:/bin')}",
        HOME=str(root / "home"),
        XDG_CONFIG_HOME=str(root / "config"),
        XDG_RUNTIME_DIR=str(runtime),
        FAKE_MANAGER_LOG=str(root / "manager.log"),
    )
    env.update(more)
    return env


def bhoga(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bhoga", *args], env=env, capture_output=True, text=True, timeout=60
    )


def calls(root: Path) -> list[str]:
    log = root / "manager.log"
    return log.read_text().splitlines() if log.exists() else []


def test_systemd_install_writes_units_then_enables_and_starts(tmp_root: Path) -> None:
    env = environment(tmp_root)
    done = bhoga(env, "service", "install", "--manager", "systemd")
    assert done.returncode == 0, done.stdout + done.stderr
    unit_dir = tmp_root / "config" / "systemd" / "user"
    service = (unit_dir / "bhogad.service").read_text()
    assert "ListenStream=%t/bhoga/bhogad.sock" in (unit_dir / "bhogad.socket").read_text()
    exec_start = next(x for x in service.splitlines() if x.startswith("ExecStart=")).split("=", 1)[1]
    assert os.path.isabs(exec_start.split()[0]) and os.access(exec_start.split()[0], os.X_OK)
    assert f'Environment="PATH={env["PATH"]}"' in service
    assert calls(tmp_root) == [
        "systemctl --user daemon-reload",
        "systemctl --user enable --now bhogad.socket",
        "systemctl --user enable bhogad.service",
        "systemctl --user restart bhogad.service",
    ]
    assert f"wrote {unit_dir / 'bhogad.service'}" in done.stdout
    assert "loginctl enable-linger" in done.stdout

    status = bhoga(env, "service", "status", "--manager", "systemd")
    assert "bhogad.service: enabled, active" in status.stdout
    assert status.returncode == 1 and "not reachable" in status.stdout  # the fake started nothing

    removed = bhoga(env, "service", "uninstall", "--manager", "systemd")
    assert removed.returncode == 0
    assert not (unit_dir / "bhogad.service").exists() and not (unit_dir / "bhogad.socket").exists()
    assert "systemctl --user disable --now bhogad.service bhogad.socket" in calls(tmp_root)


def test_dry_run_prints_and_changes_nothing(tmp_root: Path) -> None:
    env = environment(tmp_root)
    done = bhoga(env, "service", "install", "--manager", "systemd", "--dry-run")
    assert done.returncode == 0
    assert "Type=notify" in done.stdout and "would run: systemctl --user daemon-reload" in done.stdout
    assert not (tmp_root / "config").exists()
    assert calls(tmp_root) == []


def test_a_custom_socket_path_is_written_literally(tmp_root: Path) -> None:
    socket = tmp_root / "sockets" / "b.sock"
    env = environment(tmp_root, BHOGA_SOCKET=str(socket))
    assert bhoga(env, "service", "install", "--manager", "systemd").returncode == 0
    unit_dir = tmp_root / "config" / "systemd" / "user"
    assert f"ListenStream={socket}" in (unit_dir / "bhogad.socket").read_text()
    assert f'Environment="BHOGA_SOCKET={socket}"' in (unit_dir / "bhogad.service").read_text()


def test_launchd_install_writes_the_agent_and_bootstraps_it(tmp_root: Path) -> None:
    env = environment(tmp_root, BHOGA_SOCKET=str(tmp_root / "lrun" / "bhogad.sock"))
    done = bhoga(env, "service", "install", "--manager", "launchd")
    assert done.returncode == 0, done.stdout + done.stderr
    plist = tmp_root / "home" / "Library" / "LaunchAgents" / "io.bhoga.bhogad.plist"
    agent = plistlib.loads(plist.read_bytes())
    assert agent["Sockets"]["Listeners"]["SockPathName"] == str(tmp_root / "lrun" / "bhogad.sock")
    # launchd does not create the socket's directory; the installer does, private.
    assert stat.S_IMODE((tmp_root / "lrun").stat().st_mode) == 0o700
    uid = os.getuid()
    assert calls(tmp_root) == [
        f"launchctl bootout gui/{uid}/io.bhoga.bhogad",
        f"launchctl bootstrap gui/{uid} {plist}",
    ]
    assert bhoga(env, "service", "uninstall", "--manager", "launchd").returncode == 0
    assert not plist.exists()


def test_install_refuses_while_a_hand_started_daemon_holds_the_socket(
    make_daemon: Any, tmp_root: Path
) -> None:
    d: DaemonProcess = make_daemon()
    env = environment(tmp_root, BHOGA_SOCKET=str(d.socket))
    done = bhoga(env, "service", "install", "--manager", "systemd")
    assert done.returncode == 1
    assert f"pid {d.proc.pid if d.proc else '?'}" in done.stdout and "stop it first" in done.stdout
    assert not (tmp_root / "config" / "systemd").exists()
