"""The LaunchAgent, checked against launchd.plist(5) since no launchd runs here: what ``plutil -lint``
does (a well-formed XML property list), plus every key documented and of its documented type, and
``bhoga service install --manager launchd --dry-run`` printing the agent and changing nothing."""

from __future__ import annotations

import os
import plistlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bhoga.cli import service as cli_service
from bhoga.service import units
from tests.integration.test_service_install import calls, environment

REPO = Path(__file__).resolve().parents[2]

# launchd.plist(5): the top-level keys bhoga may use, with their types.
TOP_LEVEL: dict[str, type | tuple[type, ...]] = {
    "Label": str,
    "ProgramArguments": list,
    "RunAtLoad": bool,
    "KeepAlive": (bool, dict),
    "ThrottleInterval": int,
    "ExitTimeOut": int,
    "ProcessType": str,
    "Umask": int,
    "EnvironmentVariables": dict,
    "Sockets": dict,
    "StandardOutPath": str,
    "StandardErrorPath": str,
    "WorkingDirectory": str,
}
KEEP_ALIVE = {"SuccessfulExit": bool, "Crashed": bool, "NetworkState": bool, "PathState": dict}
SOCKET: dict[str, type | tuple[type, ...]] = {
    "SockType": str,
    "SockPassive": bool,
    "SockPathName": str,
    "SockPathMode": int,
    "SockPathOwner": int,
    "SockPathGroup": int,
    "SockFamily": str,
}
PROCESS_TYPES = {"Background", "Standard", "Adaptive", "Interactive"}


def problems(agent: dict[str, Any]) -> list[str]:
    """What launchd would reject or ignore in ``agent``; empty when it is sound."""
    found = []
    for key, value in agent.items():
        want = TOP_LEVEL.get(key)
        if want is None:
            found.append(f"{key}: not a launchd key bhoga means to use")
        elif not isinstance(value, want):
            found.append(f"{key}: {type(value).__name__}, launchd wants {want}")
    for key in ("Label", "ProgramArguments"):
        if key not in agent:
            found.append(f"{key}: required")
    if agent.get("ProcessType", "Background") not in PROCESS_TYPES:
        found.append(f"ProcessType: {agent['ProcessType']!r} is not one of {sorted(PROCESS_TYPES)}")
    keep_alive = agent.get("KeepAlive")
    if isinstance(keep_alive, dict):
        found += [f"KeepAlive.{k}: unknown" for k in keep_alive if k not in KEEP_ALIVE]
    for name, listener in agent.get("Sockets", {}).items():
        for key, value in listener.items():
            want = SOCKET.get(key)
            if want is None or not isinstance(value, want):
                found.append(f"Sockets.{name}.{key}: unknown or of the wrong type")
        if listener.get("SockType") not in ("stream", "dgram", "seqpacket"):
            found.append(f"Sockets.{name}.SockType: {listener.get('SockType')!r}")
    if not all(isinstance(a, str) and a for a in agent.get("ProgramArguments", [])):
        found.append("ProgramArguments: every argument must be a non-empty string")
    for key in ("StandardOutPath", "StandardErrorPath"):
        if key in agent and not agent[key].startswith("/"):
            found.append(f"{key}: launchd expands nothing, so the path must be absolute")
    return found


def lint(data: bytes) -> dict[str, Any]:
    """``plutil -lint``: an XML property list with the Apple DOCTYPE, whose root is a dictionary."""
    assert data.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE plist PUBLIC')
    agent = plistlib.loads(data, fmt=plistlib.FMT_XML)
    assert isinstance(agent, dict)
    return agent


def test_rendered_agent_uses_only_documented_keys_with_their_types(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    plan = cli_service.launchd_plan(tmp_path / "run" / "bhogad.sock")
    ((_, data),) = plan.files.items()
    agent = lint(data)
    assert problems(agent) == []
    assert agent["ThrottleInterval"] == 10 and agent["ExitTimeOut"] == 15 and agent["Umask"] == 0o077


def test_repository_template_is_a_valid_plist() -> None:
    template = (REPO / "launchd" / f"{units.LABEL}.plist.in").read_bytes()
    assert problems(lint(template)) == [  # the @LOG@ placeholder is caught ...
        f"{k}: launchd expands nothing, so the path must be absolute"
        for k in ("StandardOutPath", "StandardErrorPath")
    ]
    # ... and once a packager fills the placeholders in, the agent is sound.
    filled = template.replace(units.PLACEHOLDER_LOG.encode(), b"/Users/me/Library/Logs/bhoga/bhogad.log")
    filled = filled.replace(units.PLACEHOLDER_EXEC.encode(), b"/usr/local/bin/bhogad")
    filled = filled.replace(units.PLACEHOLDER_SOCKET.encode(), b"/Users/me/.bhoga/bhogad.sock")
    assert problems(lint(filled)) == []


def test_the_checker_catches_what_launchd_would_not_accept() -> None:
    bad = {
        "Label": units.LABEL,
        "ProgramArguments": ["/bin/bhogad", ""],
        "KeepAlive": {"SucessfulExit": False},  # the misspelling launchd silently ignores
        "ThrottleInterval": "10",
        "ProcessType": "Daemon",
        "Sockets": {"Listeners": {"SockPathName": "/tmp/s", "SockType": "unix"}},
        "StandardOutPath": "~/Library/Logs/bhogad.log",
        "Nice": 5,
    }
    found = problems(bad)
    for fragment in (
        "KeepAlive.SucessfulExit",
        "ThrottleInterval: str",
        "ProcessType: 'Daemon'",
        "SockType: 'unix'",
        "StandardOutPath: launchd expands nothing",
        "Nice: not a launchd key",
        "ProgramArguments: every argument",
    ):
        assert any(fragment in p for p in found), (fragment, found)


def test_launchd_dry_run_prints_the_agent_and_changes_nothing(tmp_root: Path) -> None:
    env = environment(tmp_root, BHOGA_SOCKET=str(tmp_root / "lrun" / "bhogad.sock"))
    done = subprocess.run(
        [sys.executable, "-m", "bhoga", "service", "install", "--manager", "launchd", "--dry-run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    start = done.stdout.index("<?xml")
    agent = lint(done.stdout[start : done.stdout.index("</plist>") + len("</plist>")].encode() + b"\n")
    assert problems(agent) == []
    assert agent["Sockets"]["Listeners"]["SockPathName"] == str(tmp_root / "lrun" / "bhogad.sock")
    uid = os.getuid()
    assert f"would run: launchctl bootstrap gui/{uid}" in done.stdout
    assert not (tmp_root / "home" / "Library").exists() and not (tmp_root / "lrun").exists()
    assert calls(tmp_root) == []
