"""Listening sockets handed to us by the service manager (socket activation).

With socket activation the manager (systemd's ``bhogad.socket``, launchd's ``Sockets`` key) binds the
socket before the daemon runs, so clients can connect while the daemon starts or restarts: their
connections wait in the backlog. The manager owns the file. We must never unlink or chmod it; it
survives our exit so the next instance is served the connections that arrived in between.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import sys
from collections.abc import Mapping, MutableMapping

#: systemd passes inherited descriptors from 3 upwards (``SD_LISTEN_FDS_START``).
LISTEN_FDS_START = 3
#: ``FileDescriptorName=`` in bhogad.socket; chosen when systemd passes several sockets.
FD_NAME = "rpc"
#: The key under ``Sockets`` in the LaunchAgent plist.
LAUNCHD_NAME = "Listeners"
#: The LaunchAgent's ``Label`` (bhoga.service.units.LABEL; the daemon does not import the renderer).
LAUNCHD_LABEL = "io.bhoga.bhogad"


class ActivationError(Exception):
    """The manager passed something we cannot serve on; the message says what to fix in the unit."""


def activated(environ: Mapping[str, str], own_pid: int, platform: str = sys.platform) -> bool:
    """Whether a service manager started us on its socket, judged without taking the socket.

    systemd names us in ``LISTEN_PID``; launchd sets no socket variable, but names the job in
    ``XPC_SERVICE_NAME`` (our plist's ``Label``).
    """
    listen_pid, count = environ.get("LISTEN_PID", "").strip(), environ.get("LISTEN_FDS", "0").strip()
    if listen_pid == str(own_pid) and count not in ("", "0"):
        return True
    return platform == "darwin" and environ.get("XPC_SERVICE_NAME") == LAUNCHD_LABEL


def inherited_socket(environ: MutableMapping[str, str] | None = None) -> socket.socket | None:
    """The listening socket systemd or launchd passed us, or ``None`` when we were not activated."""
    sock = from_systemd(os.environ if environ is None else environ, os.getpid())
    if sock is None:
        sock = from_launchd()
    return sock


def from_systemd(environ: MutableMapping[str, str], own_pid: int) -> socket.socket | None:
    """Take the socket from ``LISTEN_FDS``/``LISTEN_PID`` (sd_listen_fds(3)).

    The variables are removed whatever they say, so the provider CLIs we run cannot mistake our
    descriptors for theirs; ``LISTEN_PID`` guards against variables a parent left behind by mistake.
    """
    listen_pid = environ.pop("LISTEN_PID", None)
    count = environ.pop("LISTEN_FDS", None)
    names = environ.pop("LISTEN_FDNAMES", None)
    if not count or listen_pid is None or listen_pid.strip() != str(own_pid):
        return None
    try:
        n = int(count)
    except ValueError:
        raise ActivationError(f"LISTEN_FDS is not a number: {count!r}") from None
    if n <= 0:
        return None
    fds = list(range(LISTEN_FDS_START, LISTEN_FDS_START + n))
    for fd in fds:
        # Inherited descriptors are inheritable; ours must not leak into the CLIs we spawn.
        os.set_inheritable(fd, False)
    labels = names.split(":") if names else []
    fd = fds[labels.index(FD_NAME)] if FD_NAME in labels else fds[0]
    return _listening_unix_stream(socket.socket(fileno=fd), "systemd")


def from_launchd(name: str = LAUNCHD_NAME) -> socket.socket | None:
    """Take the socket from launchd through ``launch_activate_socket(3)``; ``None`` off macOS.

    launchd sets no environment variable, so the call itself is the test: ``ESRCH`` means we were not
    started by launchd, ``ENOENT`` that the plist has no such socket (both: bind it ourselves).
    """
    if sys.platform != "darwin":
        return None
    libc = ctypes.CDLL(None, use_errno=True)  # pragma: no cover - macOS only from here on
    activate = libc.launch_activate_socket
    activate.argtypes = [
        ctypes.c_char_p,
        ctypes.POINTER(ctypes.POINTER(ctypes.c_int)),
        ctypes.POINTER(ctypes.c_size_t),
    ]
    activate.restype = ctypes.c_int
    fds = ctypes.POINTER(ctypes.c_int)()
    count = ctypes.c_size_t(0)
    err = activate(name.encode(), ctypes.byref(fds), ctypes.byref(count))
    if err in (errno.ESRCH, errno.ENOENT):
        return None
    if err != 0:
        raise ActivationError(f"launch_activate_socket({name!r}) failed: {os.strerror(err)}")
    got = [fds[i] for i in range(count.value)]
    libc.free(fds)  # launchd allocated the array; the descriptors themselves are now ours
    if not got:
        return None
    for extra in got[1:]:
        os.close(extra)
    os.set_inheritable(got[0], False)
    return _listening_unix_stream(socket.socket(fileno=got[0]), "launchd")


def _listening_unix_stream(sock: socket.socket, manager: str) -> socket.socket:
    """Refuse what our protocol cannot serve, naming the setting to change."""
    problem = None
    if sock.family != socket.AF_UNIX:
        problem = f"a {sock.family.name} socket; bhogad serves a Unix socket (ListenStream=/path)"
    elif sock.type != socket.SOCK_STREAM:
        problem = f"a {sock.type.name} socket; bhogad needs a stream socket (ListenStream=)"
    elif hasattr(socket, "SO_ACCEPTCONN") and not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        problem = "a socket that is not listening (Accept=yes?); bhogad needs Accept=no"
    if problem is not None:
        sock.detach()  # the manager's descriptor: leave it open, it is not ours to close
        raise ActivationError(f"{manager} passed {problem}")
    return sock


def socket_path(sock: socket.socket) -> str | None:
    """The filesystem path an inherited socket listens on (``None`` for abstract or unnamed ones)."""
    name = sock.getsockname()
    if isinstance(name, bytes):
        name = os.fsdecode(name)
    if not isinstance(name, str) or not name or name.startswith("\0"):
        return None
    return name
