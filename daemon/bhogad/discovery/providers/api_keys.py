"""Anthropic and OpenAI API keys: available when the daemon can see their key.

There is no endpoint that reports what a normal key has left; its windows come from the
rate-limit headers of the harness's own turns (``turns.record``), so these providers are never polled.
"""

from __future__ import annotations

from collections.abc import Mapping

from bhogad.config import ProviderConfig
from bhogad.discovery.providers.base import Context
from bhogad.domain.state import Availability, PollResult


def detect(cfg: ProviderConfig, environ: Mapping[str, str]) -> Availability:
    """Available when one of ``key_env`` holds a value; an empty variable is no key."""
    found = next((name for name in cfg.key_env if environ.get(name, "").strip()), None)
    if found is not None:
        return Availability(available=True, reason=f"API key in ${found}")
    hint = f"set ${cfg.key_env[0]}" if cfg.key_env else "add key_env to its config"
    return Availability(available=False, reason=f"no API key ({hint})")


class ApiKeyDriver:
    polls = False

    def budget_s(self, cfg: ProviderConfig) -> float:
        return 1.0

    async def poll(self, ctx: Context) -> PollResult:
        return ctx.result(detect(ctx.cfg, ctx.env))
