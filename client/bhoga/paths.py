"""Where the socket, config and state live.

Each location is resolved as: explicit argument, then environment variable, then the platform's
directory from platformdirs. Nothing here creates or checks anything; the daemon does that.

pathlib and platformdirs (which brings tempfile, shutil, random, ...) are imported when a location is
first resolved, not when ``bhoga`` is imported: a harness's import should cost only what it uses.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    import platformdirs

APP = "bhoga"
SOCKET_NAME = "bhogad.sock"

#: ``sun_path`` is 108 bytes on Linux and 104 on macOS, terminating NUL included.
MAX_SOCKET_PATH = 104 if sys.platform == "darwin" else 108


def _dirs() -> platformdirs.PlatformDirs:
    import platformdirs

    return platformdirs.PlatformDirs(APP, appauthor=False)


def _resolve(explicit: str | os.PathLike[str] | None, env: str, directory: str, name: str = "") -> Path:
    """``explicit``, else ``$env``, else ``name`` in the platformdirs directory ``directory``."""
    from pathlib import Path

    given = explicit or os.environ.get(env)
    if given:
        return Path(given).expanduser()
    base = Path(getattr(_dirs(), directory))
    return base / name if name else base


def socket_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    return _resolve(explicit, "BHOGA_SOCKET", "user_runtime_dir", SOCKET_NAME)


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    return _resolve(explicit, "BHOGA_CONFIG", "user_config_dir", "config.yaml")


def state_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    # On macOS config and state share a directory; the store's file names keep them apart.
    return _resolve(explicit, "BHOGA_STATE", "user_state_dir")


def check_socket_path_length(path: Path) -> None:
    """Raise ``ValueError`` with the fix when ``path`` cannot be a Unix socket address here."""
    size = len(os.fsencode(path))
    if size >= MAX_SOCKET_PATH:
        raise ValueError(
            f"socket path is {size} bytes, longer than this platform allows ({MAX_SOCKET_PATH - 1}): "
            f"{path}. Set BHOGA_SOCKET to a shorter path."
        )
