"""A real systemd user manager for one throwaway user, for tests that need systemd itself.

``UserManager.start()`` creates a user, installs this checkout into a virtualenv that user can read,
and starts ``user_manager_holder.py`` in a private mount namespace (see its docstring for what it
sets up). Commands then run in that namespace as that user through ``nsenter`` + ``setpriv``, with
the environment a login session would give: ``systemctl --user``, ``bhoga service install``, the
daemon's own client. ``close()`` (and the holder itself, if this process dies) removes everything.

``unavailable()`` says why this cannot run here (not root, no systemd, no cgroup2, ...), for a skip.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[2]
HOLDER = Path(__file__).with_name("user_manager_holder.py")
SYSTEMD = Path("/lib/systemd/systemd")
JOURNALD = Path("/lib/systemd/systemd-journald")


def unavailable() -> str | None:
    """Why a real user manager cannot run on this machine, or ``None`` when it can."""
    if sys.platform != "linux":
        return "systemd runs on Linux only"
    if os.geteuid() != 0:
        return "needs root (to create a user, a mount namespace and a delegated cgroup)"
    for tool in ("unshare", "nsenter", "setpriv", "useradd", "userdel", "systemctl"):
        if shutil.which(tool) is None:
            return f"{tool} is missing"
    if not (SYSTEMD.exists() and JOURNALD.exists()):
        return "systemd is not installed (apt-get install systemd)"
    if not any(
        (p / "cgroup.procs").exists() for p in (Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup"))
    ):
        return "no cgroup2 hierarchy is mounted"
    if shared_python() is None:
        return f"no Python {sys.version_info.major}.{sys.version_info.minor} that another user may run"
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "--", "mount", "-t", "tmpfs", "tmpfs", "/run"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if probe.returncode != 0:
        return f"cannot make a private mount namespace: {probe.stderr.strip()}"
    return None


def _world_executable(path: Path) -> bool:
    """Whether any user can run ``path``: every directory above it searchable, the file executable."""
    real = path.resolve()
    return real.is_file() and all(p.stat().st_mode & 0o001 for p in (real, *real.parents))


def shared_python() -> str | None:
    """An interpreter of this very version that another user may run (the test's may sit in /root)."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    base = getattr(sys, "_base_executable", sys.executable)
    for candidate in (base, f"/usr/bin/python{version}", f"/usr/local/bin/python{version}"):
        path = Path(candidate)
        if not _world_executable(path):
            continue
        probe = subprocess.run(
            [candidate, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, text=True
        )
        if probe.stdout.strip() == str(tuple(sys.version_info[:2])):
            return candidate
    return None


def _runtime_distributions() -> list[importlib.metadata.Distribution]:
    """bhoga's daemon dependencies and theirs, as installed in this interpreter."""
    wanted = ["msgspec", "platformdirs", "anyio", "structlog", "PyYAML", "httpx"]
    seen: dict[str, importlib.metadata.Distribution] = {}
    while wanted:
        name = wanted.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in seen:
            continue
        dist = importlib.metadata.distribution(name)
        seen[key] = dist
        for spec in dist.requires or []:
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                wanted.append(req.name)
    return list(seen.values())


def build_venv(target: Path) -> Path:
    """A virtualenv at ``target`` holding this checkout and its runtime dependencies, world-readable.

    Copied, not pip-installed: the files are the ones this test run already uses (no network, no
    build backend), and the test's own venv may sit in a directory the test user cannot read.
    """
    python = shared_python()
    assert python is not None, unavailable()
    subprocess.run([python, "-m", "venv", "--without-pip", str(target)], check=True, timeout=120)
    site = next((target / "lib").glob("python3*/site-packages"))
    for dist in _runtime_distributions():
        for rel in dist.files or []:
            if str(rel).startswith(".."):
                continue  # scripts in bin/: not needed
            src = Path(str(dist.locate_file(rel)))
            if src.is_file():
                dst = site / rel
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst)
    for package in (REPO / "client" / "bhoga", REPO / "daemon" / "bhogad"):
        shutil.copytree(package, site / package.name, ignore=shutil.ignore_patterns("__pycache__"))
    python = target / "bin" / "python"
    for command, module in (("bhoga", "bhoga.cli.main"), ("bhogad", "bhogad.__main__")):
        script = target / "bin" / command
        script.write_text(f"#!{python}\nimport sys\nfrom {module} import main\nsys.exit(main())\n")
        script.chmod(0o755)
    subprocess.run(["chmod", "-R", "a+rX", str(target)], check=True)
    return target


class UserManager:
    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="bhoga-sd-", dir="/tmp"))
        self.base.chmod(0o755)
        self.user = f"bhogasd{secrets.token_hex(3)}"
        self.home = self.base / "home"
        self.venv = self.base / "venv"
        self.uid = -1
        self.gid = -1
        self.holder: subprocess.Popen[str] | None = None

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        subprocess.run(
            ["useradd", "--no-create-home", "--home-dir", str(self.home), "--shell", "/bin/sh", self.user],
            check=True,
            capture_output=True,
            timeout=60,
        )
        self.uid = int(subprocess.check_output(["id", "-u", self.user]))
        self.gid = int(subprocess.check_output(["id", "-g", self.user]))
        self.home.mkdir(mode=0o700)
        os.chown(self.home, self.uid, self.gid)
        build_venv(self.venv)
        self.holder = subprocess.Popen(
            [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "--",
                sys.executable,
                str(HOLDER),
                "--user",
                self.user,
                "--home",
                str(self.home),
                "--remove",
                str(self.base),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            # Its own session: a Ctrl-C aimed at pytest must leave it alive to clean up.
            start_new_session=True,
        )
        assert self.holder.stdout is not None
        line = self.holder.stdout.readline().strip()
        if not line.startswith("ready "):
            raise RuntimeError(f"the user manager did not start: {line!r}; {self.manager_output()}")

    def close(self) -> None:
        """Stop everything; the holder removes the user, its cgroups and files."""
        if self.holder is not None:
            if self.holder.stdin is not None:
                self.holder.stdin.close()
            if self.holder.stdout is not None:
                self.holder.stdout.close()
            try:
                self.holder.wait(60)
            except subprocess.TimeoutExpired:
                self.holder.terminate()
                self.holder.wait(30)
            self.holder = None
        # In case the holder never started: nothing else would remove these.
        subprocess.run(["userdel", self.user], capture_output=True, check=False)
        shutil.rmtree(self.base, ignore_errors=True)

    # -- running things as the user ------------------------------------------------------------------

    @property
    def runtime_dir(self) -> str:
        return f"/run/user/{self.uid}"

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = {
            "HOME": str(self.home),
            "USER": self.user,
            "LOGNAME": self.user,
            "PATH": f"{self.venv / 'bin'}:/usr/local/bin:/usr/bin:/bin",
            "XDG_RUNTIME_DIR": self.runtime_dir,
            "LANG": "C.UTF-8",
        }
        env.update(extra or {})
        return env

    def run(
        self,
        *argv: str,
        env: Mapping[str, str] | None = None,
        timeout: float = 60,
        check: bool = False,
        as_root: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        """``argv`` inside the namespace, as the user (or root, for the journal)."""
        assert self.holder is not None
        enter = ["nsenter", "-t", str(self.holder.pid), "-m", "--"]
        if not as_root:
            enter += ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--init-groups", "--"]
        words = [f"{k}={v}" for k, v in self.env(env).items()]
        done = subprocess.run(
            [*enter, "env", "-i", *words, *argv], capture_output=True, text=True, timeout=timeout
        )
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} exited {done.returncode}: {done.stdout}{done.stderr}")
        return done

    def systemctl(
        self, *args: str, check: bool = False, timeout: float = 90
    ) -> subprocess.CompletedProcess[str]:
        return self.run("systemctl", "--user", "--no-pager", *args, check=check, timeout=timeout)

    def show(self, unit: str, *props: str) -> dict[str, str]:
        out = self.systemctl("show", unit, *(f"--property={p}" for p in props), check=True).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def wait_until(self, unit: str, timeout: float, **want: str) -> dict[str, str]:
        """Poll ``systemctl show`` until every property has the wanted value."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.show(unit, *want)
            if all(got.get(k) == v for k, v in want.items()):
                return got
            if time.monotonic() > deadline:
                raise AssertionError(f"{unit}: wanted {want}, got {got}")
            time.sleep(0.05)

    def journal(self, unit: str) -> str:
        """The unit's log lines, read as root from the namespace's own journal."""
        # Not --user-unit=: run as root, that also matches _UID=0. The unit's own output, then what
        # the manager logged about it (watchdog, restarts, reloads).
        return self.run(
            "journalctl", "-D", "/run/log/journal", "--no-pager", "-o", "cat",
            f"_SYSTEMD_USER_UNIT={unit}", "+", f"USER_UNIT={unit}",
            as_root=True,
        ).stdout  # fmt: skip

    def write(self, path: Path, text: str, mode: int = 0o600) -> None:
        """A file owned by the user (written from outside: the home is a plain directory)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        for parent in reversed(path.relative_to(self.home).parents):
            os.chown(self.home / parent, self.uid, self.gid)
        path.write_text(text)
        path.chmod(mode)
        os.chown(path, self.uid, self.gid)

    def manager_output(self) -> str:
        out = self.base / "manager.out"
        return out.read_text(errors="replace")[-4000:] if out.exists() else ""


def bhoga_argv(um: UserManager, *args: str) -> Sequence[str]:
    return [str(um.venv / "bin" / "bhoga"), *args]
