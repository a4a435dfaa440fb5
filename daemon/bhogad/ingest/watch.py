"""Filesystem notifications for the log folders: Linux inotify through libc, nothing elsewhere.

Notifications only make a scan pass come sooner; the pass itself (identity, offset, size) decides
what to read, so a missed or coalesced event costs latency, never a call. Without inotify (macOS,
a libc without it, the watch limit reached) the slow poll does everything.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Final

import anyio
import structlog

log = structlog.get_logger("bhogad.ingest.watch")

_IN_MODIFY: Final = 0x002
_IN_CLOSE_WRITE: Final = 0x008
_IN_MOVED_TO: Final = 0x080
_IN_CREATE: Final = 0x100
_IN_DELETE: Final = 0x200
_IN_ONLYDIR: Final = 0x01000000
_MASK: Final = _IN_MODIFY | _IN_CLOSE_WRITE | _IN_MOVED_TO | _IN_CREATE | _IN_DELETE | _IN_ONLYDIR
_IN_NONBLOCK: Final = os.O_NONBLOCK
_IN_CLOEXEC: Final = os.O_CLOEXEC
#: Most folders watched; past this the slow poll covers the rest.
MAX_WATCHES: Final = 4096


class Watcher:
    def __init__(self, libc: ctypes.CDLL, fd: int) -> None:
        self._libc = libc
        self.fd = fd
        self.watched: set[str] = set()
        self._full = False

    @classmethod
    def create(cls) -> Watcher | None:
        """An inotify watcher, or None where there is none."""
        if not sys.platform.startswith("linux"):
            return None
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
            fd = int(libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC))
        except (OSError, AttributeError):
            return None
        if fd < 0:
            log.info("no inotify; polling the log folders", error=os.strerror(ctypes.get_errno()))
            return None
        return cls(libc, fd)

    def watch(self, folders: Iterable[Path]) -> int:
        """Watch each folder not watched yet (new day folders, new projects); returns how many.

        Folders no longer listed are forgotten (the kernel drops their watches), so one that comes
        back is watched again.
        """
        current = {str(f) for f in folders}
        self.watched &= current
        added = 0
        for key in sorted(current - self.watched):
            if self._full:
                break
            if len(self.watched) >= MAX_WATCHES:
                self._full = True
                log.info("watching the first folders only; the slow poll covers the rest", limit=MAX_WATCHES)
                break
            wd = self._libc.inotify_add_watch(self.fd, os.fsencode(key), _MASK)
            if wd < 0:
                err = ctypes.get_errno()
                if err == 28:  # ENOSPC: the user's inotify watch limit
                    self._full = True
                    log.info("inotify watch limit reached; the slow poll covers the rest")
                    break
                continue  # gone meanwhile, or not readable: the poll will tell
            self.watched.add(key)
            added += 1
        return added

    async def wait(self, seconds: float) -> bool:
        """Until something changed in a watched folder (True) or ``seconds`` passed (False)."""
        with anyio.move_on_after(seconds):
            await anyio.wait_readable(self.fd)
            self._drain()
            return True
        return False

    def _drain(self) -> None:
        try:
            while os.read(self.fd, 65536):
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        os.close(self.fd)
