"""``bhoga doctor``: is this machine's bhoga healthy, and if not, what exactly to do about it.

Every check says pass, warn, fail (or info, for a provider that is simply not set up here) and, when
it is not a pass, the fix in words. It works with the daemon stopped: that is when people run it.
The exit code is 1 when any check fails, so scripts and CI can gate on it.
"""

from __future__ import annotations

import argparse
import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TextIO

from bhoga import extras, paths
from bhoga.client import Router
from bhoga.errors import BhogaError, DaemonNotRunning
from bhoga.protocol import PROTOCOL_VERSION, DaemonStatus, Hello, ProviderKind, ProviderQuota, SharedStatus
from bhoga.service import units

PASS, WARN, FAIL, INFO = "pass", "warn", "fail", "info"

#: A subscription provider polled longer ago than this is not being polled (the default is 5 min).
POLL_OVERDUE = timedelta(hours=1)
#: Client and daemon share the machine's clock; a larger gap means one of them is not seeing it.
MAX_SKEW_S = 5.0


@dataclass
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""


def client_version() -> str:
    try:
        return version("bhoga")
    except PackageNotFoundError:
        return "0+unknown"


def _ago(at: datetime, now: datetime) -> str:
    seconds = max(0.0, (now - at).total_seconds())
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.1f}h ago"


# -- checks that need no daemon ------------------------------------------------------------------


def check_directory(directory: Path) -> Check:
    name = "socket directory"
    try:
        st = directory.lstat()
    except FileNotFoundError:
        return Check(name, WARN, f"{directory} does not exist", "bhogad creates it (0700) when it starts")
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        return Check(
            name, FAIL, f"{directory} is not a directory", f"remove it; bhogad recreates it: rm {directory}"
        )
    if st.st_uid != os.getuid():
        return Check(
            name,
            FAIL,
            f"{directory} belongs to uid {st.st_uid}, not you (uid {os.getuid()})",
            "set BHOGA_SOCKET to a path in a directory you own",
        )
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        return Check(
            name,
            FAIL,
            f"{directory} has mode {mode:04o}: others could reach the socket; bhogad refuses to start",
            f"chmod 700 {directory}",
        )
    return Check(name, PASS, f"{directory} is yours, mode {mode:04o}")


def check_socket(socket_path: Path) -> Check:
    name = "socket file"
    try:
        st = socket_path.lstat()
    except FileNotFoundError:
        return Check(name, INFO, f"no socket at {socket_path} (the daemon is not listening there)")
    if not stat.S_ISSOCK(st.st_mode):
        return Check(
            name,
            FAIL,
            f"{socket_path} is not a socket; bhogad will refuse to replace it",
            f"move it away: mv {socket_path} {socket_path}.bak",
        )
    if st.st_uid != os.getuid():
        return Check(
            name, FAIL, f"{socket_path} belongs to uid {st.st_uid}", "set BHOGA_SOCKET to your own path"
        )
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        return Check(name, WARN, f"{socket_path} has mode {mode:04o}", f"chmod 600 {socket_path}")
    return Check(name, PASS, f"{socket_path}, mode {mode:04o}")


def check_config(config_path: Path) -> Check:
    """Validated by bhogad itself, in the same Python, so the answer is the daemon's own."""
    name = "config"
    absent = extras.missing(extras.DAEMON_MODULES)
    if absent:
        # Not a config error: this Python cannot run bhogad to ask it (bhogad itself says the same).
        return Check(
            name,
            WARN,
            f"not checked: {extras.DAEMON_NOT_INSTALLED} (missing: {', '.join(absent)})",
            "pip install 'bhoga[daemon]' (or check it with the Python that runs bhogad)",
        )
    try:
        done = subprocess.run(
            [sys.executable, "-m", "bhogad", "--check-config", "--config", str(config_path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return Check(name, WARN, "bhogad --check-config did not finish in 60 s", "run it by hand to see why")
    if done.returncode != 0:
        reason = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or ["no message"]
        return Check(
            name,
            FAIL,
            reason[0].removeprefix("bhogad: "),
            f"fix {config_path} where the message says; then `kill -HUP` bhogad (or restart it)",
        )
    return Check(name, PASS, done.stdout.strip().removeprefix("bhogad: "))


def check_clock(now: datetime, status: DaemonStatus | None) -> Check:
    name = "clock"
    if now.year < 2024:
        return Check(name, FAIL, f"the system clock says {now:%Y-%m-%d}", "set the clock (enable NTP)")
    if status is not None:
        daemon_now = status.started_at + timedelta(seconds=status.uptime_s)
        skew = abs((daemon_now - now).total_seconds())
        if skew > MAX_SKEW_S:
            return Check(
                name,
                WARN,
                f"bhogad's clock is {skew:.0f}s away from this one",
                "restart bhogad; if it persists, its time namespace or container clock is wrong",
            )
    return Check(name, PASS, f"{now:%Y-%m-%d %H:%M:%S} UTC")


# -- checks that need the daemon -------------------------------------------------------------------


def check_versions(hello: Hello) -> Check:
    name = "versions"
    mine = client_version()
    if hello.protocol != PROTOCOL_VERSION:
        return Check(
            name,
            FAIL,
            f"bhogad speaks protocol {hello.protocol}, this client {PROTOCOL_VERSION}",
            "upgrade the older of the two and restart bhogad",
        )
    if hello.daemon_version != mine:
        return Check(
            name,
            WARN,
            f"bhogad is {hello.daemon_version}, the client is {mine}",
            "restart bhogad so it runs the installed version (systemctl --user restart bhogad)",
        )
    return Check(name, PASS, f"client and daemon are both {mine}, protocol {PROTOCOL_VERSION}")


def check_provider(q: ProviderQuota, now: datetime) -> Check:
    name = f"provider {q.provider_id}"
    polled = ""
    if q.last_poll_at is not None:
        polled = f"; last poll {'failed' if q.last_poll_error else 'ok'} {_ago(q.last_poll_at, now)}"
    if not q.available:
        if q.last_poll_error:
            # Set up once (it was polled) but broken now: expired or revoked credentials, a missing CLI.
            return Check(name, FAIL, f"unavailable: {q.reason}{polled}", q.last_poll_error)
        return Check(name, INFO, f"not set up here: {q.reason}")
    if q.last_poll_error:
        return Check(name, WARN, f"{q.reason}{polled}", q.last_poll_error)
    overdue = q.last_poll_at is not None and now - q.last_poll_at > POLL_OVERDUE
    if q.kind is ProviderKind.SUBSCRIPTION and overdue:
        return Check(
            name,
            WARN,
            f"{q.reason}{polled}: quota data is going stale",
            "check bhogad's log for the poller; `bhoga call quota.refresh` polls now",
        )
    cooling = f"; cooling down: {q.cooldown_reason}" if q.cooldown_until else ""
    return Check(name, PASS, f"{q.reason}{polled}{cooling}")


#: Machines sharing state disagree about "now" by more than this: reset times and cooldowns shift.
MAX_SKEW_S = 5.0


def check_shared(shared: SharedStatus | None, now: datetime) -> Check | None:
    """The link to the shared-state server, when one is configured."""
    name = "shared state"
    if shared is None:
        return None
    if not shared.connected:
        since = f" since {_ago(shared.unreachable_since, now)}" if shared.unreachable_since else ""
        return Check(
            name,
            FAIL,
            f"{shared.server} unreachable{since} ({shared.last_error}); routing on this machine's state",
            "check that the server runs and is reachable from here (redis-cli -u URL ping), and "
            "shared.password_env / shared.password_file",
        )
    peers = ", ".join(sorted(shared.peers)) or "no other machine seen yet"
    detail = f"{shared.server} ({shared.server_version}) as {shared.device}; other machines: {peers}"
    if shared.clock_skew_s is not None and abs(shared.clock_skew_s) > MAX_SKEW_S:
        return Check(
            name,
            WARN,
            f"{detail}; this clock is {abs(shared.clock_skew_s):.1f} s "
            f"{'behind' if shared.clock_skew_s > 0 else 'ahead of'} the server's",
            "enable NTP on every machine: resets and cooldowns are compared across them",
        )
    return Check(name, PASS, detail)


def daemon_checks(router: Router, now: datetime) -> tuple[list[Check], DaemonStatus | None]:
    try:
        hello = router.hello()
    except DaemonNotRunning:
        absent = extras.missing(extras.DAEMON_MODULES)
        if absent:
            # Starting it cannot work from this install: say what is missing, not how to start it.
            return [
                Check(
                    "daemon",
                    FAIL,
                    f"bhogad is not running at {router.socket_path}, and {extras.DAEMON_NOT_INSTALLED} "
                    f"(missing: {', '.join(absent)})",
                    "pip install 'bhoga[daemon]', then `bhoga service install` (or run `bhogad`)",
                )
            ], None
        manager = (
            f"launchctl kickstart gui/{os.getuid()}/{units.LABEL}"
            if sys.platform == "darwin"
            else f"systemctl --user start {units.UNIT}.socket"
        )
        return [
            Check(
                "daemon",
                FAIL,
                f"bhogad is not running at {router.socket_path}",
                f"start it: `bhogad &` for now, or `bhoga service install` to run it at login "
                f"(if installed: {manager})",
            )
        ], None
    except (BhogaError, OSError) as exc:
        return [
            Check("daemon", FAIL, f"bhogad at {router.socket_path} did not answer: {exc}", "restart bhogad")
        ], None
    checks = [
        Check("daemon", PASS, f"bhogad {hello.daemon_version}, pid {hello.pid}, at {router.socket_path}")
    ]
    checks.append(check_versions(hello))
    try:
        status = router.status()
        quotas = sorted(router.quotas().values(), key=lambda q: q.provider_id)
    except (BhogaError, OSError) as exc:
        checks.append(Check("providers", FAIL, f"bhogad did not list providers: {exc}", "restart bhogad"))
        return checks, None
    checks.extend(check_provider(q, now) for q in quotas)
    shared = check_shared(status.shared, now)
    if shared is not None:
        checks.append(shared)
    if not any(q.available for q in quotas):
        checks.append(
            Check(
                "providers",
                WARN,
                "no provider is available here, so every `best` answers none",
                "sign in to a CLI (`claude`, `codex login`, `gh auth login`), export an API key the "
                "daemon can see, or set a quota by hand: bhoga set-quota PROVIDER PCT",
            )
        )
    return checks, status


def run_checks(router: Router) -> list[Check]:
    now = datetime.now(UTC)
    socket_path = router.socket_path
    checks = [check_directory(socket_path.parent), check_socket(socket_path)]
    found, status = daemon_checks(router, now)
    checks.extend(found)
    checks.append(check_clock(now, status))
    # The running daemon's config is the one that matters; without a daemon, the one it would read.
    config = Path(status.config_path) if status is not None and status.config_path else paths.config_path()
    checks.append(check_config(config))
    return checks


def render(checks: Sequence[Check]) -> str:
    lines = []
    for c in checks:
        lines.append(f"{c.status.upper():<5} {c.name:<24} {c.detail}")
        if c.fix and c.status != PASS:
            lines.append(f"{'':<5} {'':<24} fix: {c.fix}")
    counts = {s: sum(c.status == s for c in checks) for s in (PASS, WARN, FAIL)}
    lines.append(f"\n{counts[PASS]} passed, {counts[WARN]} warnings, {counts[FAIL]} failed")
    return "\n".join(lines) + "\n"


def cmd_doctor(args: argparse.Namespace, router: Router, out: TextIO) -> int:
    checks = run_checks(router)
    failed = any(c.status == FAIL for c in checks)
    if args.json:
        out.write(json.dumps({"ok": not failed, "checks": [asdict(c) for c in checks]}, indent=2) + "\n")
    else:
        out.write(render(checks))
    return 1 if failed else 0


def register(add: Callable[..., argparse.ArgumentParser]) -> None:
    add("doctor", cmd_doctor, "check the daemon, socket, providers, clock and config; say how to fix each")
