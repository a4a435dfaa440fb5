"""The install story, as a newcomer lives it: build the wheel, install it into fresh virtual
environments (client only; with the daemon extra), and run the commands the README names.

Slow (two venvs, dependencies from the package index) but part of every CI run: it is the only test
that sees the package as installed rather than as the editable checkout.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bhoga import extras
from tests.conftest import REPO

pytestmark = pytest.mark.slow

SENTENCE = "the daemon is not installed here: install bhoga[daemon]"
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


def run(
    *argv: str | Path, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    built = run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", out, REPO)
    assert built.returncode == 0, built.stderr
    (found,) = out.glob("bhoga-*.whl")
    return found


def venv(root: Path, wheel: Path, extra: str) -> Path:
    made = run(sys.executable, "-m", "venv", root)
    assert made.returncode == 0, made.stderr
    spec = f"bhoga{extra} @ {wheel.as_uri()}"
    installed = run(root / "bin" / "python", "-m", "pip", "install", "--quiet", spec)
    assert installed.returncode == 0, installed.stderr
    return root / "bin"


def clean_env(root: Path) -> dict[str, str]:
    """No BHOGA_* or credentials from the machine; everything the commands touch is under ``root``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("BHOGA_", "VIRTUAL_ENV")) and not k.endswith(("_API_KEY", "_TOKEN"))
    }
    (root / "run").mkdir(mode=0o700, exist_ok=True)
    env.update(
        BHOGA_SOCKET=str(root / "run" / "bhogad.sock"),
        BHOGA_STATE=str(root / "state"),
        BHOGA_CONFIG=str(root / "config.yaml"),
        HOME=str(root / "home"),
        XDG_CONFIG_HOME=str(root / "home" / ".config"),
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env


def test_the_wheel_carries_both_packages_and_the_license(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert "bhoga/__init__.py" in names and "bhogad/__init__.py" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    text = zipfile.ZipFile(wheel).read(metadata).decode()
    assert "License-Expression: MIT" in text
    assert "Provides-Extra: daemon" in text and "Provides-Extra: hermes" in text


def test_client_only_install_says_what_is_missing(wheel: Path, tmp_path: Path) -> None:
    bin_ = venv(tmp_path / "venv", wheel, "")
    env = clean_env(tmp_path)

    version = run(bin_ / "bhoga", "--version", env=env)
    assert (version.returncode, version.stdout.strip()) == (0, f"bhoga {VERSION}")
    imported = run(bin_ / "python", "-c", "import bhoga; print(bhoga.__version__)", env=env)
    assert imported.stdout.strip() == VERSION, imported.stderr

    daemon = run(bin_ / "bhogad", env=env)
    assert daemon.returncode == 1 and SENTENCE in daemon.stderr
    assert "Traceback" not in daemon.stderr and len(daemon.stderr.strip().splitlines()) == 1

    doctor = run(bin_ / "bhoga", "doctor", env=env)
    assert SENTENCE in doctor.stdout and "Traceback" not in doctor.stdout + doctor.stderr
    assert "`bhogad &`" not in doctor.stdout  # the wrong fix: bhogad cannot run here

    service = run(bin_ / "bhoga", "service", "install", "--dry-run", env=env)
    assert service.returncode == 1 and SENTENCE in service.stdout
    assert "would write" not in service.stdout  # no unit pointing at a bhogad that cannot start

    autostart = run(
        bin_ / "python",
        "-c",
        "import bhoga\ntry:\n    bhoga.Router(autostart=True).best_for('gpt-5.4')\n"
        "except bhoga.DaemonNotRunning as e:\n    print(type(e).__name__, e)",
        env=env,
    )
    assert autostart.stdout.startswith("DaemonNotInstalled ") and SENTENCE in autostart.stdout

    hermes = run(bin_ / "bhoga", "hermes", "apply", "gpt-5.4", "--config", tmp_path / "h.yaml", env=env)
    assert hermes.returncode == 7 and "install bhoga[hermes]" in hermes.stderr, hermes.stderr
    assert "Traceback" not in hermes.stderr and not (tmp_path / "h.yaml").exists()


@pytest.fixture
def daemon_install(wheel: Path, tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    bin_ = venv(tmp_path / "venv", wheel, "[daemon]")
    env = clean_env(tmp_path)
    log = tmp_path / "bhogad.log"
    with log.open("wb") as out:  # the child keeps its own descriptor
        proc = subprocess.Popen(
            [bin_ / "bhogad"], env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 60
        while not Path(env["BHOGA_SOCKET"]).exists():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "bhogad did not start"
            time.sleep(0.1)
        yield bin_, env
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def test_daemon_install_runs_every_command(
    daemon_install: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    bin_, env = daemon_install

    def bhoga(*args: Any) -> subprocess.CompletedProcess[str]:
        done = run(bin_ / "bhoga", *args, env=env)
        assert "Traceback" not in done.stderr, done.stderr
        return done

    assert bhoga("set-quota", "openai-codex", "60").returncode == 0
    assert bhoga("status").returncode == 0
    best = bhoga("best", "gpt-5.4")
    assert best.returncode == 0 and best.stdout.startswith("openai-codex\t")
    assert bhoga("daemon", "--json").returncode == 0
    assert bhoga("metrics").stdout.startswith("# HELP")
    doctor = bhoga("doctor", "--json")
    assert '"name": "daemon"' in doctor.stdout and SENTENCE not in doctor.stdout
    # Hermes editing comes with the daemon extra: nothing more to install.
    config = tmp_path / "hermes.yaml"
    assert bhoga("hermes", "apply", "gpt-5.4", "--config", config).returncode == 0
    assert "openai-codex" in config.read_text()
    check = run(bin_ / "bhogad", "--check-config", env=env)
    assert check.returncode == 0, check.stderr


def test_extras_name_what_pyproject_installs() -> None:
    """bhoga/extras.py's module lists and pyproject's extras describe the same dependencies."""
    extras_table = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    import_name = {"pyyaml": "yaml", "ruamel.yaml": "ruamel.yaml"}

    def modules(extra: str) -> set[str]:
        names = {dep.split(">")[0].split("=")[0].split("[")[0].strip().lower() for dep in extras_table[extra]}
        return {import_name.get(n, n) for n in names}

    assert modules("daemon") == {*extras.DAEMON_MODULES, *extras.HERMES_MODULES}
    assert modules("hermes") == set(extras.HERMES_MODULES)
