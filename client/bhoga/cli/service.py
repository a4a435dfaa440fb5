"""``bhoga service install|uninstall|status``: run bhogad as this user's login service.

Linux gets systemd user units (socket-activated, ``Type=notify``, watchdog); macOS gets a LaunchAgent
with launchd socket activation. Units name the daemon by absolute path, the one installed beside this
``bhoga``, so the service never runs a different version from the client that installed it.
Everything done is printed; ``--dry-run`` prints it and changes nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from bhoga import extras, paths
from bhoga.cli.common import print_json
from bhoga.client import Router
from bhoga.errors import BhogaError
from bhoga.service import units


class ServiceError(Exception):
    """Something that stops an install; the message says what to do."""


@dataclass
class Plan:
    """What installing (or removing) the service means on this machine."""

    manager: str
    files: dict[Path, bytes]
    #: Commands to run after the files are written (install) or before they are removed (uninstall).
    commands: list[list[str]]
    notes: list[str] = field(default_factory=list)
    #: Directories the manager needs to exist before it starts (launchd does not create them).
    directories: list[Path] = field(default_factory=list)


def daemon_argv() -> list[str]:
    """The absolute command that runs the bhogad of this installation."""
    try:
        extras.require_daemon()  # a unit pointing at a bhogad that cannot start helps nobody
    except extras.NotInstalled as exc:
        raise ServiceError(str(exc)) from None
    script = Path(sys.executable).parent / "bhogad"
    if os.access(script, os.X_OK):
        return [str(script)]
    # The interpreter itself, not a shell wrapper: the manager must see the daemon as its main pid.
    return [sys.executable, "-m", "bhogad"]


def _passed_environment() -> dict[str, str]:
    # The config and state locations the user chose, and PATH so the daemon finds the same provider
    # CLIs (codex, gh) the user's shell does; managers start services with a minimal PATH.
    env = {k: os.environ[k] for k in ("BHOGA_CONFIG", "BHOGA_STATE") if os.environ.get(k)}
    if os.environ.get("PATH"):
        env["PATH"] = os.environ["PATH"]
    return env


def unit_dir() -> Path:
    """Where systemd's user manager looks for units an administrator or user wrote."""
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "systemd" / "user"


def plist_path() -> Path:
    return Path.home() / "Library" / "LaunchAgents" / f"{units.LABEL}.plist"


def installed_files(manager: str) -> list[Path]:
    if manager == "launchd":
        return [plist_path()]
    return [unit_dir() / f"{units.UNIT}.service", unit_dir() / f"{units.UNIT}.socket"]


def systemd_plan(socket: Path) -> Plan:
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and socket == Path(runtime) / paths.APP / paths.SOCKET_NAME:
        listen = units.DEFAULT_SOCKET  # follows $XDG_RUNTIME_DIR, as the client's default does
    else:
        listen = units.unit_escape(str(socket.absolute()))
    env = {"BHOGA_SOCKET": listen, **{k: units.unit_escape(v) for k, v in _passed_environment().items()}}
    service, sock = f"{units.UNIT}.service", f"{units.UNIT}.socket"
    systemctl = ["systemctl", "--user"]
    return Plan(
        manager="systemd",
        files={
            unit_dir() / service: units.systemd_service(units.exec_line(daemon_argv()), env).encode(),
            unit_dir() / sock: units.systemd_socket(listen).encode(),
        },
        commands=[
            [*systemctl, "daemon-reload"],
            [*systemctl, "enable", "--now", sock],
            [*systemctl, "enable", service],
            # restart, not start: a reinstall must replace a daemon running the old unit.
            [*systemctl, "restart", service],
        ],
        notes=[
            "user services stop at logout; to keep polling while logged out: loginctl enable-linger $USER",
            f"logs: journalctl --user -u {units.UNIT}",
        ],
    )


def launchd_plan(socket: Path) -> Plan:
    plist = plist_path()
    log = Path.home() / "Library" / "Logs" / paths.APP / "bhogad.log"
    domain = f"gui/{os.getuid()}"
    return Plan(
        manager="launchd",
        files={
            plist: units.launchd_plist(daemon_argv(), str(socket.absolute()), str(log), _passed_environment())
        },
        commands=[
            # bootout first so a reinstall replaces the loaded agent; it fails harmlessly when none is.
            ["launchctl", "bootout", f"{domain}/{units.LABEL}"],
            ["launchctl", "bootstrap", domain, str(plist)],
        ],
        notes=[f"logs: {log}"],
        directories=[socket.parent, log.parent],
    )


def plan_for(manager: str, socket: Path) -> Plan:
    return launchd_plan(socket) if manager == "launchd" else systemd_plan(socket)


def default_manager() -> str:
    return "launchd" if sys.platform == "darwin" else "systemd"


# -- doing it ----------------------------------------------------------------------------------------


def _run(cmd: Sequence[str], out: TextIO, dry_run: bool, may_fail: bool = False) -> bool:
    out.write(f"{'would run' if dry_run else 'ran'}: {' '.join(cmd)}\n")
    if dry_run:
        return True
    if shutil.which(cmd[0]) is None:
        out.write(f"  {cmd[0]} is not on PATH\n")
        return may_fail
    done = subprocess.run(list(cmd), capture_output=True, text=True, check=False)
    if done.returncode != 0 and not may_fail:
        out.write(f"  failed ({done.returncode}): {(done.stderr or done.stdout).strip()}\n")
        return False
    return True


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _foreign_daemon(router: Router, manager: str) -> str | None:
    """A bhogad already serving the socket outside the manager would keep the lock and starve it."""
    try:
        pid = router.hello().pid
    except (BhogaError, OSError):
        return None
    if manager == "systemd" and shutil.which("systemctl"):
        main_pid = subprocess.run(
            ["systemctl", "--user", "show", "--value", "-p", "MainPID", f"{units.UNIT}.service"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        if main_pid == str(pid):
            return None
    if manager == "launchd" and shutil.which("launchctl"):
        loaded = subprocess.run(
            ["launchctl", "print", f"gui/{os.getuid()}/{units.LABEL}"], capture_output=True, text=True
        )
        if f"pid = {pid}" in loaded.stdout:
            return None
    return (
        f"a bhogad (pid {pid}) already serves {router.socket_path} outside {manager}; "
        f"stop it first (kill {pid}) and run this again"
    )


def cmd_install(args: argparse.Namespace, router: Router, out: TextIO) -> int:
    try:
        plan = plan_for(args.manager, router.socket_path)
    except ServiceError as exc:
        out.write(f"cannot install: {exc}\n")
        return 1
    foreign = _foreign_daemon(router, plan.manager)
    if foreign is not None and not args.dry_run:
        out.write(f"cannot install: {foreign}\n")
        return 1
    for directory in plan.directories:
        out.write(f"{'would create' if args.dry_run else 'created'} directory {directory} (0700)\n")
        if not args.dry_run:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    for path, data in plan.files.items():
        if args.dry_run:
            out.write(f"would write {path}:\n{data.decode()}\n")
        else:
            _write(path, data)
            out.write(f"wrote {path}\n")
    for i, cmd in enumerate(plan.commands):
        if not _run(cmd, out, args.dry_run, may_fail=plan.manager == "launchd" and i == 0):
            out.write(f"the {plan.manager} service was not started; the files above are in place\n")
            return 1
    for note in plan.notes:
        out.write(f"note: {note}\n")
    return 0


def cmd_uninstall(args: argparse.Namespace, router: Router, out: TextIO) -> int:
    # Needs no bhogad: removing a service must work after the daemon's package is gone.
    if args.manager == "systemd":
        service, sock = f"{units.UNIT}.service", f"{units.UNIT}.socket"
        _run(["systemctl", "--user", "disable", "--now", service, sock], out, args.dry_run, may_fail=True)
    else:
        _run(["launchctl", "bootout", f"gui/{os.getuid()}/{units.LABEL}"], out, args.dry_run, may_fail=True)
    for path in installed_files(args.manager):
        if path.exists():
            out.write(f"{'would remove' if args.dry_run else 'removed'} {path}\n")
            if not args.dry_run:
                path.unlink()
    if args.manager == "systemd":
        _run(["systemctl", "--user", "daemon-reload"], out, args.dry_run, may_fail=True)
    return 0


def cmd_status(args: argparse.Namespace, router: Router, out: TextIO) -> int:
    report: dict[str, Any] = {
        "manager": args.manager,
        "files": {str(path): path.exists() for path in installed_files(args.manager)},
        "units": {},
    }
    if args.manager == "systemd" and shutil.which("systemctl"):
        for unit in (f"{units.UNIT}.socket", f"{units.UNIT}.service"):
            enabled, active = (
                subprocess.run(
                    ["systemctl", "--user", verb, unit], capture_output=True, text=True, check=False
                ).stdout.strip()
                or "unknown"
                for verb in ("is-enabled", "is-active")
            )
            report["units"][unit] = {"enabled": enabled, "active": active}
    elif args.manager == "launchd" and shutil.which("launchctl"):
        shown = subprocess.run(
            ["launchctl", "print", f"gui/{os.getuid()}/{units.LABEL}"], capture_output=True, text=True
        )
        report["units"][units.LABEL] = {"loaded": shown.returncode == 0}
    try:
        hello = router.hello()
        where = str(router.socket_path)
        report["daemon"] = {"version": hello.daemon_version, "pid": hello.pid, "socket": where}
    except (BhogaError, OSError) as exc:
        report["daemon"] = None
        report["daemon_error"] = f"not reachable at {router.socket_path} ({exc})"
    if args.json:
        print_json(report, out)
        return 0 if report["daemon"] else 1
    for path, exists in report["files"].items():
        out.write(f"{path}: {'installed' if exists else 'not installed'}\n")
    for unit, state in report["units"].items():
        if "loaded" in state:
            out.write(f"{unit}: {'loaded' if state['loaded'] else 'not loaded'}\n")
        else:
            out.write(f"{unit}: {state['enabled']}, {state['active']}\n")
    if report["daemon"] is None:
        out.write(f"daemon: {report['daemon_error']}\n")
        return 1
    daemon = report["daemon"]
    out.write(f"daemon: bhogad {daemon['version']}, pid {daemon['pid']}, on {daemon['socket']}\n")
    return 0


def register(add: Callable[..., argparse.ArgumentParser]) -> None:
    p = add("service", lambda *_: 2, "install, remove or inspect bhogad as this user's login service")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, func, text in (
        ("install", cmd_install, "write the service files, enable and start them"),
        ("uninstall", cmd_uninstall, "stop and disable the service and remove its files"),
        ("status", cmd_status, "what is installed, enabled and running"),
    ):
        a = actions.add_parser(name, help=text, description=text)
        a.set_defaults(func=func)
        a.add_argument("--dry-run", action="store_true", help="print the files and commands; change nothing")
        a.add_argument("--json", action="store_true", help="machine-readable output (status)")
        a.add_argument(
            "--manager",
            choices=["systemd", "launchd"],
            default=default_manager(),
            help="service manager (default: this platform's)",
        )
