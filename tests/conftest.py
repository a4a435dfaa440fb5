"""Shared fixtures: a real ``bhogad`` process on a real socket in a private temporary directory."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bhoga import DaemonNotRunning, Router

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "data" / "providers"


class DaemonProcess:
    """One bhogad under test. Its socket lives in a short /tmp path (sun_path is 104–108 bytes)."""

    def __init__(self, root: Path, config: str | None = None, env: dict[str, str] | None = None) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.socket = root / "run" / "bhogad.sock"
        self.state = root / "state"
        self.config = root / "config.yaml"
        self.home = root / "home"
        self.home.mkdir(exist_ok=True)
        if config is not None:
            self.config.write_text(config)
        self.log = root / "bhogad.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.extra_env = env or {}

    @property
    def env(self) -> dict[str, str]:
        """The environment a client of this daemon runs with (also used for the daemon itself)."""
        env = {
            k: v
            for k, v in os.environ.items()
            # The machine's own credentials must never leak into a test daemon.
            if not k.endswith(("_API_KEY", "_TOKEN")) and not k.startswith(("BHOGA_", "CLAUDE_", "CODEX_"))
        }
        env.update(
            BHOGA_SOCKET=str(self.socket),
            BHOGA_STATE=str(self.state),
            BHOGA_CONFIG=str(self.config),
            HOME=str(self.home),
            XDG_CONFIG_HOME=str(self.home / ".config"),
            PYTHONUNBUFFERED="1",
        )
        env.update(self.extra_env)
        return env

    def start(self, wait: bool = True, args: list[str] | None = None) -> None:
        (self.root / "run").mkdir(mode=0o700, exist_ok=True)
        with self.log.open("ab") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bhogad", "--log-json", "--log-level", "debug", *(args or [])],
                env=self.env,
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
            )
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"bhogad exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                with self.router(timeout=1.0) as router:
                    router.hello()
                return
            except (DaemonNotRunning, OSError):
                time.sleep(0.02)
        raise RuntimeError(f"bhogad did not become ready:\n{self.log.read_text()}")

    def router(self, **kwargs: Any) -> Router:
        return Router(socket_path=self.socket, **kwargs)

    def cli(
        self, *args: str, input: str | None = None, timeout: float = 30.0
    ) -> subprocess.CompletedProcess[str]:
        """Run the real ``bhoga`` command against this daemon."""
        return subprocess.run(
            [sys.executable, "-m", "bhoga", *args],
            env=self.env,
            capture_output=True,
            text=True,
            input=input,
            timeout=timeout,
        )

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def tmp_root() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="bhg-", dir="/tmp"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def make_daemon(tmp_root: Path) -> Iterator[Any]:
    """Factory for daemons with a given config/environment; every one is stopped at teardown."""
    started: list[DaemonProcess] = []

    def make(
        config: str | None = None, env: dict[str, str] | None = None, start: bool = True
    ) -> DaemonProcess:
        d = DaemonProcess(tmp_root / f"d{len(started)}", config, env)
        started.append(d)
        if start:
            d.start()
        return d

    yield make
    for d in started:
        if d.proc is not None and d.proc.poll() is None:
            d.stop(signal.SIGKILL)


@pytest.fixture
def daemon(make_daemon: Any) -> DaemonProcess:
    d: DaemonProcess = make_daemon()
    return d
