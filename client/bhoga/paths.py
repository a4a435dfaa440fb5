"""Where the socket, config and state live.

Each location is resolved as: explicit argument, then environment variable, then the platform's
directory from platformdirs. Nothing here creates or checks anything; the daemon does that.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import platformdirs

APP = "bhoga"
SOCKET_NAME = "bhogad.sock"

#: ``sun_path`` is 108 bytes on Linux and 104 on macOS, terminating NUL included.
MAX_SOCKET_PATH = 104 if sys.platform == "darwin" else 108


def _dirs() -> platformdirs.PlatformDirs:
    return platformdirs.PlatformDirs(APP, appauthor=False)


def _from_env(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value).expanduser() if value else None


def socket_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    if explicit:
        return Path(explicit).expanduser()
    return _from_env("BHOGA_SOCKET") or Path(_dirs().user_runtime_dir) / SOCKET_NAME


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    if explicit:
        return Path(explicit).expanduser()
    return _from_env("BHOGA_CONFIG") or Path(_dirs().user_config_dir) / "config.yaml"


def state_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    if explicit:
        return Path(explicit).expanduser()
    # On macOS config and state share a directory; the store's file names keep them apart.
    return _from_env("BHOGA_STATE") or Path(_dirs().user_state_dir)


def check_socket_path_length(path: Path) -> None:
    """Raise ``ValueError`` with the fix when ``path`` cannot be a Unix socket address here."""
    size = len(os.fsencode(path))
    if size >= MAX_SOCKET_PATH:
        raise ValueError(
            f"socket path is {size} bytes, longer than this platform allows ({MAX_SOCKET_PATH - 1}): "
            f"{path}. Set BHOGA_SOCKET to a shorter path."
        )
