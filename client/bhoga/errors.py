"""The client's exception tree, and the one place JSON-RPC errors become exceptions."""

from __future__ import annotations

import os
from typing import Any

from bhoga.protocol import ErrorCode


class BhogaError(Exception):
    """Base of every error the client raises."""


class DaemonNotRunning(BhogaError, ConnectionError):
    """Nothing is listening on the socket. The message names the socket and how to start the daemon."""

    def __init__(self, socket_path: str, detail: str = "") -> None:
        self.socket_path = socket_path
        why = f" ({detail})" if detail else ""
        super().__init__(
            f"bhogad is not running on {socket_path}{why}. Start it with `bhogad` "
            f"(or `bhoga service install` to run it at login), or pass autostart=True."
        )


class DaemonNotInstalled(DaemonNotRunning):
    """``autostart`` on an install without the daemon's dependencies: the message names the extra."""

    def __init__(self, socket_path: str, sentence: str) -> None:
        self.socket_path = socket_path
        ConnectionError.__init__(self, f"bhogad is not running on {socket_path} and cannot start: {sentence}")


class DaemonStartFailed(DaemonNotRunning):
    """``autostart`` started bhogad and it exited with an error: the daemon's own words and its log."""

    def __init__(self, socket_path: str, reason: str, log: os.PathLike[str] | str) -> None:
        self.socket_path = socket_path
        self.reason = reason
        self.log = os.fspath(log)
        ConnectionError.__init__(
            self, f"bhogad could not start on {socket_path}: {reason} (its output is in {self.log})"
        )


class ProtocolError(BhogaError):
    """The daemon's reply could not be understood (wrong framing, wrong id, not JSON-RPC)."""


class ClientTimeout(BhogaError, TimeoutError):
    """The daemon did not answer in time."""


class RemoteError(BhogaError):
    """The daemon answered with a JSON-RPC error."""

    #: Sent on the daemon's own initiative (no request id: overloaded, a line that timed out); the
    #: daemon closes the connection after it.
    unsolicited = False

    def __init__(self, code: int, message: str, data: dict[str, Any] | None = None) -> None:
        self.code = code
        self.message = message
        self.data = data or {}
        super().__init__(f"{message} [{code}{', ' + self.kind if self.kind else ''}]")

    @property
    def kind(self) -> str:
        kind = self.data.get("kind", "")
        return kind if isinstance(kind, str) else ""


class InvalidParams(RemoteError, ValueError):
    """Bad arguments (-32602). A ``ValueError`` too, as the library raised for out-of-range quotas."""


class MethodNotFound(RemoteError):
    """The daemon does not know the method: it is probably older than this client."""


class ShuttingDown(RemoteError):
    """The daemon is stopping; retry against the next instance."""


def remote_error(code: int, message: str, data: dict[str, Any] | None = None) -> RemoteError:
    cls: type[RemoteError] = {
        ErrorCode.INVALID_PARAMS: InvalidParams,
        ErrorCode.METHOD_NOT_FOUND: MethodNotFound,
        ErrorCode.SHUTTING_DOWN: ShuttingDown,
    }.get(code, RemoteError)  # type: ignore[call-overload]
    return cls(code, message, data)
