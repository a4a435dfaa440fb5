"""Who is on the other end of a Unix socket."""

from __future__ import annotations

import ctypes
import ctypes.util
import socket
import struct
import sys


def peer_ids(sock: socket.socket) -> tuple[int | None, int]:
    """``(pid, uid)`` of the peer; pid is ``None`` where the platform does not tell it."""
    if hasattr(socket, "SO_PEERCRED"):
        pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
        return pid, uid
    if sys.platform == "darwin":  # pragma: no cover - exercised on macOS only
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        uid, gid = ctypes.c_uint32(), ctypes.c_uint32()
        if libc.getpeereid(sock.fileno(), ctypes.byref(uid), ctypes.byref(gid)) != 0:
            raise OSError(ctypes.get_errno(), "getpeereid failed")
        return None, uid.value
    raise OSError("cannot read peer credentials on this platform")
