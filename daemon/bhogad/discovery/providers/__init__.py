"""Quota discovery, one driver per provider.

A provider id maps to a driver by its ``options.driver`` in config.yaml, else by the built-in table
below — so a second Claude account can be added as ``claude_work: {kind: subscription, priority: 2,
options: {driver: claude_code, config_dir: ~/.claude-work}}``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from bhogad.config import ProviderConfig
from bhogad.discovery.providers.api_keys import ApiKeyDriver
from bhogad.discovery.providers.base import Driver
from bhogad.discovery.providers.claude_code import ClaudeCodeDriver
from bhogad.discovery.providers.codex import CodexDriver
from bhogad.discovery.providers.copilot import CopilotDriver
from bhogad.discovery.providers.openrouter import OpenRouterDriver

DRIVERS: Final[dict[str, Callable[[], Driver]]] = {
    "claude_code": ClaudeCodeDriver,
    "codex": CodexDriver,
    "copilot": CopilotDriver,
    "openrouter": OpenRouterDriver,
    "api_key": ApiKeyDriver,
}

DEFAULT_DRIVER: Final = {
    "claude_code": "claude_code",
    "openai-codex": "codex",
    "github-copilot": "copilot",
    "openrouter": "openrouter",
    "anthropic_api": "api_key",
    "openai_api": "api_key",
}


def driver_name(pid: str, cfg: ProviderConfig) -> str | None:
    """The name of the driver for a provider, or ``None`` when bhoga has no way to discover its
    quota. The name may be unknown (a typo in config); callers look it up in their driver table."""
    name = cfg.options.get("driver") or DEFAULT_DRIVER.get(pid)
    if name is None and cfg.key_env and cfg.kind == "api_key":
        return "api_key"
    return name
