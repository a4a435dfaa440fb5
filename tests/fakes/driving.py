"""Running one driver poll against the fakes, on the fixtures' clock."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import httpx

from bhogad import config
from bhogad.config import ProviderConfig
from bhogad.discovery.providers.base import Context, Driver
from bhogad.domain.state import PollResult
from tests.fakes.fixtures import FIXTURE_NOW


def provider_cfg(pid: str, **overrides: Any) -> ProviderConfig:
    """The built-in config of ``pid`` with ``overrides`` applied, as config.yaml would."""
    return config.build({"providers": {pid: overrides}}).providers[pid]


def base_env(home: Path, **extra: str) -> dict[str, str]:
    """A clean environment: a fake HOME and only system directories on PATH."""
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin", "XDG_CONFIG_HOME": str(home / ".config")}
    env.update(extra)
    return env


def poll(
    driver: Driver,
    pid: str,
    env: Mapping[str, str],
    now: datetime | Callable[[], datetime] = FIXTURE_NOW,
    **cfg: Any,
) -> PollResult:
    """One poll of ``driver`` with a real httpx client, as the poller would run it."""
    clock = now if callable(now) else (lambda: now)

    async def main() -> PollResult:
        async with httpx.AsyncClient(trust_env=False) as http:
            ctx = Context(pid=pid, cfg=provider_cfg(pid, **cfg), http=http, env=env, now=clock)
            return await driver.poll(ctx)

    return anyio.run(main)
