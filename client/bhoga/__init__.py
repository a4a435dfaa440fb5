"""bhoga: ask one local daemon which provider has the most usable quota for a model.

The client is deliberately thin: it imports only msgspec and platformdirs, so a harness pays almost
nothing to import it. State, discovery and ranking live in the ``bhogad`` daemon.
"""

from __future__ import annotations

# Not ``typing.TYPE_CHECKING``: importing typing alone costs more than the rest of this module.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from bhoga.aio import AsyncRouter as AsyncRouter
    from bhoga.client import Router as Router, check_quota as check_quota
    from bhoga.codex_models import get_codex_models as get_codex_models
    from bhoga.errors import (
        BhogaError as BhogaError,
        ClientTimeout as ClientTimeout,
        DaemonNotRunning as DaemonNotRunning,
        InvalidParams as InvalidParams,
        ProtocolError as ProtocolError,
        RemoteError as RemoteError,
    )
    from bhoga.hermes import apply_to_hermes as apply_to_hermes
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

# Every public name is loaded on first use. Importing a submodule imports this package first, and
# ``bhoga statusline`` (run on every Claude Code statusline refresh) must not pay for the client,
# msgspec and the header readers it never uses; ``from bhoga import Router`` works as before.
_LAZY = {
    "AsyncRouter": "bhoga.aio",
    "Router": "bhoga.client",
    "check_quota": "bhoga.client",
    "get_codex_models": "bhoga.codex_models",
    "BhogaError": "bhoga.errors",
    "ClientTimeout": "bhoga.errors",
    "DaemonNotRunning": "bhoga.errors",
    "InvalidParams": "bhoga.errors",
    "ProtocolError": "bhoga.errors",
    "RemoteError": "bhoga.errors",
    "apply_to_hermes": "bhoga.hermes",
    "BillingCadence": "bhoga.protocol",
    "ProviderQuota": "bhoga.protocol",
    "ProviderStatus": "bhoga.protocol",
    "QuotaWindow": "bhoga.protocol",
    "Ranking": "bhoga.protocol",
    "RouterRecommendation": "bhoga.protocol",
    "model_family": "bhoga.quota.families",
    "to_hermes_model": "bhoga.quota.families",
    "calibrate": "bhoga.quota.headers",
    "mark_throttled": "bhoga.quota.headers",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bhoga' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


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
