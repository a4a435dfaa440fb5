"""The service manager's readiness protocol (sd_notify), spoken without systemd-python.

systemd passes ``$NOTIFY_SOCKET``: a datagram socket, a filesystem path or an abstract name written
with a leading ``@``. Each message is one datagram of ``KEY=VALUE`` lines. Failures are ignored on
purpose, as sd_notify(3) advises: a daemon must never die because its supervisor stopped listening.
Without ``$NOTIFY_SOCKET`` (a terminal, launchd, tests) every call is a no-op.

The watchdog is armed by ``WatchdogSec=``: systemd passes ``WATCHDOG_USEC`` (and ``WATCHDOG_PID``)
and kills the service when no ``WATCHDOG=1`` arrives within that time. Pinging at half the interval
from an event-loop task proves the loop itself is alive; a thread would keep pinging a hung loop.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import MutableMapping

_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def notify_address(value: str | None) -> str | None:
    """The ``connect()`` address for a ``$NOTIFY_SOCKET`` value; ``None`` when unset or unsupported.

    ``@name`` is Linux's abstract namespace, whose real address starts with a NUL byte. Other forms
    (``vsock:``) exist for virtual machines; we do not run there, so they mean "no supervisor".
    """
    if not value:
        return None
    if value.startswith("@"):
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None


def watchdog_period(usec: str | None, pid: str | None, own_pid: int) -> float | None:
    """Seconds between pings (half of ``WATCHDOG_USEC``), or ``None`` when no watchdog is for us.

    ``WATCHDOG_PID`` names the process the watchdog watches; a forked helper that inherited the
    environment must not ping on its parent's behalf.
    """
    if pid and pid.strip() != str(own_pid):
        return None
    try:
        interval = int(usec or "0")
    except ValueError:
        return None
    if interval <= 0:
        return None
    return interval / 2 / 1_000_000


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in µs: what ``RELOADING=1`` pairs with ``MONOTONIC_USEC`` (systemd ≥ 253)."""
    clock = getattr(time, "CLOCK_MONOTONIC", None)
    ns = time.clock_gettime_ns(clock) if clock is not None else time.monotonic_ns()
    return ns // 1000


def encode(fields: dict[str, str]) -> bytes:
    # A newline inside a value would start a new assignment; STATUS text is ours but say so anyway.
    return "".join(f"{key}={value.replace(chr(10), ' ')}\n" for key, value in fields.items()).encode()


class Notifier:
    """Sends state changes to the service manager, if there is one listening."""

    def __init__(self, address: str | None, watchdog_s: float | None) -> None:
        self.address = address
        #: Seconds between ``WATCHDOG=1`` pings, or ``None`` when no watchdog is armed.
        self.watchdog_s = watchdog_s if address is not None else None

    @classmethod
    def from_environ(cls, environ: MutableMapping[str, str] | None = None) -> Notifier:
        """Read the variables, then remove them so the provider CLIs we run do not inherit them."""
        env = os.environ if environ is None else environ
        address = notify_address(env.get("NOTIFY_SOCKET"))
        period = watchdog_period(env.get("WATCHDOG_USEC"), env.get("WATCHDOG_PID"), os.getpid())
        for name in _ENV:
            env.pop(name, None)
        return cls(address, period)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, **fields: str) -> bool:
        """Send one datagram; ``True`` when it left. Never raises for a missing or busy receiver."""
        if self.address is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                # Bounded: a wedged manager must not stall the event loop for long.
                sock.settimeout(1.0)
                sock.connect(self.address)
                sock.sendall(encode(fields))
        except OSError:
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        fields = {"READY": "1"}
        if status is not None:
            fields["STATUS"] = status
        return self.send(**fields)

    def status(self, text: str) -> bool:
        return self.send(STATUS=text)

    def reloading(self) -> bool:
        return self.send(RELOADING="1", MONOTONIC_USEC=str(monotonic_usec()), STATUS="reloading config")

    def stopping(self, status: str = "stopping") -> bool:
        return self.send(STOPPING="1", STATUS=status)

    def watchdog(self) -> bool:
        return self.send(WATCHDOG="1")
