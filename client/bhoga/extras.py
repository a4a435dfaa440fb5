"""What each optional part of an installation needs, and the one sentence said when it is missing.

One wheel ships both packages (``bhoga`` and ``bhogad``), so a client-only install has a ``bhogad``
that cannot run: its dependencies come with the ``daemon`` extra. Everything that would start, check
or install the daemon asks here first (the ``bhogad`` command, ``Router(autostart=True)``,
``bhoga doctor``, ``bhoga service install``), and Hermes editing asks about ruamel.yaml, so each
says the same clear sentence instead of a traceback or a wrong diagnosis.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

#: Modules the daemon imports that only the ``daemon`` extra installs (import names, not dist names).
DAEMON_MODULES: tuple[str, ...] = ("anyio", "structlog", "yaml", "httpx")
#: Round-trip YAML editing of Hermes's config, in the ``daemon`` and ``hermes`` extras.
HERMES_MODULES: tuple[str, ...] = ("ruamel.yaml",)

DAEMON_NOT_INSTALLED = "the daemon is not installed here: install bhoga[daemon]"
HERMES_NOT_INSTALLED = "Hermes config editing is not installed here: install bhoga[hermes] (or bhoga[daemon])"


class NotInstalled(ImportError):
    """An optional part of bhoga is missing from this installation; the message names the extra."""


def missing(modules: Sequence[str]) -> list[str]:
    """The modules in ``modules`` this Python cannot import (without importing them)."""
    import importlib.util

    absent = []
    for name in modules:
        try:
            found = name in sys.modules or importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a parent package missing, or a broken one
            found = False
        if not found:
            absent.append(name)
    return absent


def _sentence(base: str, absent: list[str]) -> str:
    return f"{base} (missing: {', '.join(absent)})"


def require_daemon() -> None:
    """:raises NotInstalled: when this Python cannot run ``bhogad``."""
    absent = missing(DAEMON_MODULES)
    if absent:
        raise NotInstalled(_sentence(DAEMON_NOT_INSTALLED, absent))


def require_hermes() -> None:
    """:raises NotInstalled: when this Python cannot edit Hermes's config."""
    absent = missing(HERMES_MODULES)
    if absent:
        raise NotInstalled(_sentence(HERMES_NOT_INSTALLED, absent))


def bhogad() -> int:
    """The ``bhogad`` command: the daemon, or one sentence when this install has only the client."""
    try:
        require_daemon()
    except NotInstalled as exc:
        print(f"bhogad: {exc}", file=sys.stderr)
        return 1
    from bhogad.__main__ import main

    return main()
