"""bhoga: ask one local daemon which provider has the most usable quota for a model.

The client is deliberately thin: ``import bhoga`` loads what ``Router`` needs (msgspec and the
standard library's socket) and nothing else, so a harness pays almost nothing to import it. The
rest of the public API (``AsyncRouter``, the quota helpers, Hermes editing, ``__version__``) loads on
first use. State, discovery and ranking live in the ``bhogad`` daemon.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bhoga.client import Router as Router, check_quota as check_quota
from bhoga.errors import (
    BhogaError as BhogaError,
    ClientTimeout as ClientTimeout,
    DaemonNotRunning as DaemonNotRunning,
    InvalidParams as InvalidParams,
    ProtocolError as ProtocolError,
    RemoteError as RemoteError,
)
from bhoga.protocol import (
    BillingCadence as BillingCadence,
    ProviderQuota as ProviderQuota,
    ProviderStatus as ProviderStatus,
    QuotaWindow as QuotaWindow,
    Ranking as Ranking,
    RouterRecommendation as RouterRecommendation,
)

if TYPE_CHECKING:
    from bhoga.aio import AsyncRouter as AsyncRouter
    from bhoga.codex_models import get_codex_models as get_codex_models
    from bhoga.hermes import apply_to_hermes as apply_to_hermes
    from bhoga.quota.families import model_family as model_family, to_hermes_model as to_hermes_model
    from bhoga.quota.headers import calibrate as calibrate, mark_throttled as mark_throttled

    __version__: str

# Loaded on first use: each pulls in more than a harness that only routes needs.
_LAZY = {
    "AsyncRouter": "bhoga.aio",
    "apply_to_hermes": "bhoga.hermes",
    "get_codex_models": "bhoga.codex_models",
    "model_family": "bhoga.quota.families",
    "to_hermes_model": "bhoga.quota.families",
    "calibrate": "bhoga.quota.headers",
    "mark_throttled": "bhoga.quota.headers",
}


def _version() -> str:
    # From the installed package's metadata, so it cannot drift from pyproject.toml.
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("bhoga")
    except PackageNotFoundError:  # imported from a source tree that was never installed
        return "0+unknown"


def __getattr__(name: str) -> Any:
    if name == "__version__":
        value: Any = _version()
    else:
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module 'bhoga' has no attribute {name!r}")
        import importlib

        value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once: later lookups are plain attribute reads
    return value


__all__ = [
    "AsyncRouter",
    "BhogaError",
    "BillingCadence",
    "ClientTimeout",
    "DaemonNotRunning",
    "InvalidParams",
    "ProtocolError",
    "ProviderQuota",
    "ProviderStatus",
    "QuotaWindow",
    "Ranking",
    "RemoteError",
    "Router",
    "RouterRecommendation",
    "apply_to_hermes",
    "calibrate",
    "check_quota",
    "get_codex_models",
    "mark_throttled",
    "model_family",
    "to_hermes_model",
]
