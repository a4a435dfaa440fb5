"""The service definitions: systemd accepts the units, launchd's plist has what launchd needs, and the
copies in the repository are exactly what ``bhoga service install`` writes (less the paths)."""

from __future__ import annotations

import os
import plistlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bhoga.cli import service as cli_service
from bhoga.service import units

REPO = Path(__file__).resolve().parents[2]


def test_repository_copies_match_the_templates() -> None:
    for rel, data in units.repository_files().items():
        assert (REPO / rel).read_bytes() == data, f"{rel} drifted: regenerate it from bhoga.service.units"


def _verify(unit_dir: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    return subprocess.run(
        [
            "systemd-analyze",
            "--user",
            "verify",
            str(unit_dir / "bhogad.socket"),
            str(unit_dir / "bhogad.service"),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)},
        timeout=60,
    )


needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is missing (apt-get install systemd)"
)


@needs_systemd_analyze
@pytest.mark.parametrize("socket_kind", ["default", "custom"])
def test_installed_units_pass_systemd_analyze_verify(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, socket_kind: str
) -> None:
    runtime = tmp_path / "runtime"
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    # A custom path with a '%' proves literal paths are escaped, not read as specifiers.
    socket = runtime / "bhoga" / "bhogad.sock" if socket_kind == "default" else tmp_path / "my 50%" / "b.sock"
    plan = cli_service.systemd_plan(socket)
    for path, data in plan.files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    service = (cli_service.unit_dir() / "bhogad.service").read_text()
    exec_start = next(line for line in service.splitlines() if line.startswith("ExecStart="))
    executable = exec_start.removeprefix("ExecStart=").split()[0]
    assert os.path.isabs(executable) and os.access(executable, os.X_OK)
    listen = (cli_service.unit_dir() / "bhogad.socket").read_text()
    if socket_kind == "default":
        assert f"ListenStream={units.DEFAULT_SOCKET}" in listen
    else:
        assert "50%%" in listen
    done = _verify(cli_service.unit_dir(), tmp_path)
    assert done.returncode == 0, done.stderr
    # verify exits 0 even for settings it ignores; any message at all means something is wrong.
    assert done.stdout.strip() == "" and done.stderr.strip() == "", done.stderr


@needs_systemd_analyze
def test_systemd_analyze_catches_a_broken_unit(tmp_path: Path) -> None:
    """The check above can fail: a unit naming a missing executable is refused."""
    unit_dir = tmp_path / "units"
    unit_dir.mkdir()
    (unit_dir / "bhogad.service").write_text(units.systemd_service("/nonexistent/bhogad", {}))
    (unit_dir / "bhogad.socket").write_text(units.systemd_socket(units.DEFAULT_SOCKET))
    done = _verify(unit_dir, tmp_path)
    assert done.returncode != 0 or done.stderr.strip()


def test_service_unit_has_the_lifecycle_settings() -> None:
    text = units.systemd_service("/usr/bin/bhogad", {})
    for line in (
        "Type=notify",
        "Restart=on-failure",
        "WatchdogSec=30",
        # Reload through the daemon's answer, not a bare signal: it can fail, and it waits.
        "ExecReload=/usr/bin/bhogad --reload",
        # Deny with an error, never kill with SIGSYS (Node's pkey_alloc probe).
        "SystemCallErrorNumber=EPERM",
        "SystemCallFilter=@system-service @pkey",
        "Requires=bhogad.socket",
        "WantedBy=default.target",
        "UMask=0077",
    ):
        assert line in text.splitlines()
    sock = units.systemd_socket(units.DEFAULT_SOCKET).splitlines()
    for line in ("SocketMode=0600", "DirectoryMode=0700", "Accept=no", "FileDescriptorName=rpc"):
        assert line in sock


def test_exec_line_quotes_and_escapes() -> None:
    assert units.exec_line(["/opt/bin/bhogad"]) == "/opt/bin/bhogad"
    assert units.exec_line(["/My Apps/python", "-m", "bhogad"]) == '"/My Apps/python" -m bhogad'
    assert units.exec_line(["/a%b/$x"]) == "/a%%b/$$x"


def test_launchd_plist_has_the_keys_launchd_needs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    socket = tmp_path / "run" / "bhogad.sock"
    plan = cli_service.launchd_plan(socket)
    ((path, data),) = plan.files.items()
    assert path == tmp_path / "Library" / "LaunchAgents" / f"{units.LABEL}.plist"
    agent = plistlib.loads(data)
    assert agent["Label"] == units.LABEL
    program = agent["ProgramArguments"]
    assert os.path.isabs(program[0]) and os.access(program[0], os.X_OK)
    assert agent["RunAtLoad"] is True
    assert agent["KeepAlive"] == {"SuccessfulExit": False}
    listener = agent["Sockets"]["Listeners"]
    assert listener == {"SockPathName": str(socket), "SockPathMode": 384, "SockType": "stream"}
    assert agent["EnvironmentVariables"]["BHOGA_SOCKET"] == str(socket)
    for key in ("StandardOutPath", "StandardErrorPath"):
        assert os.path.isabs(agent[key])
    assert socket.parent in plan.directories  # launchd does not create the socket's directory


def test_repository_plist_template_parses_with_placeholders() -> None:
    (template,) = (REPO / "launchd").glob("*.plist.in")
    agent = plistlib.loads(template.read_bytes())
    assert agent["ProgramArguments"] == [units.PLACEHOLDER_EXEC]
    assert agent["Sockets"]["Listeners"]["SockPathName"] == units.PLACEHOLDER_SOCKET


def test_service_commands_keep_the_client_light() -> None:
    """Registering doctor/service/metrics must not drag the daemon's dependencies into `bhoga`."""
    code = (
        "import sys, bhoga.cli.main\n"
        "bhoga.cli.main.build_parser()\n"
        "heavy = [m for m in ('anyio', 'structlog', 'yaml', 'httpx', 'bhogad') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
