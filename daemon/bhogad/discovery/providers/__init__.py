"""Quota discovery, one driver per provider.

A provider id maps to a driver by its ``options.driver`` in config.yaml, else by the built-in table
below — so a second Claude account can be added as ``claude_work: {kind: subscription, priority: 2,
options: {driver: claude_code, config_dir: ~/.claude-work}}``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from bhogad.config import ProviderConfig
from bhogad.discovery.options import DEFAULT_DRIVER as DEFAULT_DRIVER, DriverName, driver_for
from bhogad.discovery.providers.api_keys import ApiKeyDriver
from bhogad.discovery.providers.base import Driver
from bhogad.discovery.providers.claude_code import ClaudeCodeDriver
from bhogad.discovery.providers.codex import CodexDriver
from bhogad.discovery.providers.copilot import CopilotDriver
from bhogad.discovery.providers.openrouter import OpenRouterDriver

DRIVERS: Final[dict[str, Callable[[], Driver]]] = {
    DriverName.CLAUDE_CODE: ClaudeCodeDriver,
    DriverName.CODEX: CodexDriver,
    DriverName.COPILOT: CopilotDriver,
    DriverName.OPENROUTER: OpenRouterDriver,
    DriverName.API_KEY: ApiKeyDriver,
}


def driver_name(pid: str, cfg: ProviderConfig) -> str | None:
    """The name of the driver for a provider, or ``None`` when bhoga has no way to discover its
    quota. The config checked ``options.driver`` when it loaded, so a name is always a known one."""
    name = driver_for(pid, cfg.options, cfg.kind.value, cfg.key_env)
    return None if name is None else name.value
