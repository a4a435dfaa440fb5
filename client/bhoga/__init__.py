"""bhoga: ask one local daemon which provider has the most usable quota for a model.

The client is deliberately thin: it imports only msgspec and platformdirs, so a harness pays almost
nothing to import it. State, discovery and ranking live in the ``bhogad`` daemon.
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
from bhoga.quota.families import model_family as model_family, to_hermes_model as to_hermes_model
from bhoga.quota.headers import calibrate as calibrate, mark_throttled as mark_throttled

if TYPE_CHECKING:
    from bhoga.aio import AsyncRouter as AsyncRouter
    from bhoga.codex_models import get_codex_models as get_codex_models
    from bhoga.hermes import apply_to_hermes as apply_to_hermes

# Loaded on first use: each pulls in more than a harness that only routes needs.
_LAZY = {
    "AsyncRouter": "bhoga.aio",
    "apply_to_hermes": "bhoga.hermes",
    "get_codex_models": "bhoga.codex_models",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bhoga' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


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
