"""Runs as root inside a private mount namespace and hosts a real ``systemd --user`` for a test user.

Started by ``tests/integration/user_manager.py`` as
``unshare --mount --propagation private -- python3 user_manager_holder.py ARGS``. It

* mounts its own tmpfs on ``/run`` (visible only in this namespace) holding ``/run/systemd/system``
  (so the manager believes the machine booted with systemd), ``/run/user/<uid>`` and a journal;
* starts its own ``systemd-journald`` there, so unit output has somewhere to go and can be read back;
* makes the cgroup subtree logind would make (``user.slice/user-<uid>.slice/user@<uid>.service``),
  owned by the user, and starts ``systemd --user`` inside it as that user;
* prints ``ready <manager pid>`` and waits until its stdin closes or it is signalled, reaping every
  orphan as a subreaper;
* then cleans up everything it made, whatever happened to the test process: it kills the user's
  cgroup, stops journald, removes the cgroups, deletes the user and its directory. The mount goes
  with the namespace when this process exits.

Never PID 1 on the host and never the host's /run: systemd's start-up as PID 1 cleans shared
directories, and that is exactly what this avoids.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36
CGROUP_ROOTS = (Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup/systemd"), Path("/sys/fs/cgroup"))


def cgroup_roots() -> list[Path]:
    """Where the user's cgroups go: the unified hierarchy (hybrid or pure v2) and name=systemd (v1)."""
    found = []
    for root in CGROUP_ROOTS:
        if (root / "cgroup.procs").exists() and root not in found:
            if root == Path("/sys/fs/cgroup") and any(r.is_relative_to(root) for r in found):
                continue  # a tmpfs parent of the hybrid hierarchies, not a hierarchy
            found.append(root)
    return found


def user_cgroup(root: Path, uid: int) -> Path:
    return root / "user.slice" / f"user-{uid}.slice" / f"user@{uid}.service"


def wait_for(path: Path, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def kill_cgroup(slice_dir: Path) -> None:
    """Every process of the user, including ones that escaped into new sub-cgroups."""
    kill = slice_dir / "cgroup.kill"
    if kill.exists():
        with contextlib.suppress(OSError):
            kill.write_text("1")
    for procs in sorted(slice_dir.rglob("cgroup.procs")):
        try:
            pids = [int(x) for x in procs.read_text().split()]
        except OSError:
            continue
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def remove_tree(slice_dir: Path) -> None:
    # cgroups are removed leaf first; rmdir fails while a process is still inside, so retry briefly.
    deadline = time.monotonic() + 5
    while slice_dir.exists() and time.monotonic() < deadline:
        for d in sorted((p for p in slice_dir.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):
                d.rmdir()
        try:
            slice_dir.rmdir()
        except OSError:
            reap()
            time.sleep(0.05)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--user", required=True)
    parser.add_argument("--home", required=True)
    parser.add_argument("--remove", required=True, help="directory to delete at the end")
    args = parser.parse_args()
    uid, gid = (
        int(subprocess.check_output(["id", "-u", args.user])),
        int(subprocess.check_output(["id", "-g", args.user])),
    )
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)

    roots = cgroup_roots()
    slices = [user_cgroup(r, uid).parent for r in roots]
    journald: subprocess.Popen[bytes] | None = None
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755,size=64m", "tmpfs", "/run"], check=True)
        for d in ("/run/systemd/system", "/run/log/journal", f"/run/user/{uid}"):
            os.makedirs(d, exist_ok=True)
        os.chown(f"/run/user/{uid}", uid, gid)
        os.chmod(f"/run/user/{uid}", 0o700)
        log = open(Path(args.remove) / "journald.out", "wb")  # noqa: SIM115 - lives until exit
        journald = subprocess.Popen(
            ["/lib/systemd/systemd-journald"], stdout=log, stderr=log, stdin=subprocess.DEVNULL
        )
        if not wait_for(Path("/run/systemd/journal/stdout"), 15):
            print("error journald did not start", flush=True)
            return 1
        for root in roots:
            cg = user_cgroup(root, uid)
            cg.mkdir(parents=True, exist_ok=True)
            # Delegation, as logind does it: the user owns its manager's cgroup and its files.
            for path in [cg, *cg.iterdir()]:
                os.chown(path, uid, gid)

        def enter_cgroup() -> None:
            for root in roots:
                (user_cgroup(root, uid) / "cgroup.procs").write_text(str(os.getpid()))

        env = [
            f"HOME={args.home}",
            f"USER={args.user}",
            f"LOGNAME={args.user}",
            "PATH=/usr/local/bin:/usr/bin:/bin",
            f"XDG_RUNTIME_DIR=/run/user/{uid}",
            "SHELL=/bin/sh",
        ]
        manager_log = open(Path(args.remove) / "manager.out", "wb")  # noqa: SIM115
        manager = subprocess.Popen(
            [
                "setpriv",
                f"--reuid={uid}",
                f"--regid={gid}",
                "--init-groups",
                "--",
                "env",
                "-i",
                *env,
                "/lib/systemd/systemd",
                "--user",
            ],
            preexec_fn=enter_cgroup,  # as root, before the exec: the manager starts in its cgroup
            stdout=manager_log,
            stderr=manager_log,
            stdin=subprocess.DEVNULL,
        )
        if not wait_for(Path(f"/run/user/{uid}/systemd/private"), 30):
            print("error systemd --user did not start", flush=True)
            return 1
        print(f"ready {manager.pid}", flush=True)
        while not stop and manager.poll() is None:
            ready, _, _ = select.select([sys.stdin], [], [], 0.5)
            if ready and not os.read(sys.stdin.fileno(), 4096):
                break  # the test closed our stdin, or died
            reap()
        return 0
    finally:
        for s in slices:
            kill_cgroup(s)
        if journald is not None:
            journald.terminate()
            try:
                journald.wait(5)
            except subprocess.TimeoutExpired:
                journald.kill()
        time.sleep(0.1)
        reap()
        for s in slices:
            remove_tree(s)
            for parent in (s.parent,):  # user.slice, if nothing else lives there
                with contextlib.suppress(OSError):
                    parent.rmdir()
        subprocess.run(["userdel", args.user], capture_output=True, check=False)
        shutil.rmtree(args.remove, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
