"""The runtime directory's safety checks and the one-daemon-per-socket lock."""

from __future__ import annotations

import fcntl
import os
import stat
from pathlib import Path


class UnsafeDirectory(Exception):
    pass


class AlreadyRunning(Exception):
    def __init__(self, pid: str) -> None:
        super().__init__(pid)
        self.pid = pid


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` 0700 if missing; refuse it if a symlink, someone else's, or open to others.

    The directory, not the socket's own mode, is the real guard: a socket's mode is set only after
    bind, and on some systems connecting ignores it altogether.
    """
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    st = path.lstat()
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise UnsafeDirectory(f"{path} is not a directory (a symlink?); refusing to put the socket there")
    if st.st_uid != os.getuid():
        raise UnsafeDirectory(f"{path} belongs to uid {st.st_uid}, not to you (uid {os.getuid()})")
    if st.st_mode & 0o077:
        raise UnsafeDirectory(
            f"{path} has mode {stat.S_IMODE(st.st_mode):04o}; other users could reach the socket. "
            f"Fix it with: chmod 700 {path}"
        )


def acquire(lock_path: Path) -> int:
    """Take the instance lock or raise ``AlreadyRunning`` naming the holder's pid.

    flock belongs to the open file: it dies with the process, so a crash never leaves a stale lock.
    """
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise AlreadyRunning(holder) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd
