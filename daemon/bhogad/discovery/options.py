"""Each discovery driver's ``options``, as typed Structs checked when the config loads.

A provider's ``options`` in config.yaml are validated against its driver's Struct, so a typo or a
bad value (``recheck_s: soon``) is a config error naming the key, not a setting silently ignored.
This module imports nothing from the drivers or the config, so the config can validate with it.

Which driver serves a provider: ``options.driver`` when given, else the built-in table
:data:`DEFAULT_DRIVER`, else ``api_key`` for a provider of kind ``api_key`` with ``key_env``.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Final, TypeVar

import msgspec

_Seconds = Annotated[float, msgspec.Meta(gt=0, le=7 * 24 * 3600)]


class DriverName(StrEnum):
    CLAUDE_CODE = "claude_code"
    CODEX = "codex"
    COPILOT = "copilot"
    OPENROUTER = "openrouter"
    API_KEY = "api_key"


class Toggle(StrEnum):
    """``auto``: use the source when the primary one fails; ``never``: do not touch it."""

    AUTO = "auto"
    NEVER = "never"


class Keychain(StrEnum):
    AUTO = "auto"  # on macOS, when the credentials file is absent
    NEVER = "never"  # reading it can pop up a permission prompt
    ALWAYS = "always"


class DriverOptions(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Options every provider takes."""

    #: Which driver serves this provider (a second Claude account: ``driver: claude_code``).
    driver: DriverName | None = None
    #: How soon local state (credential files, environment) is re-read when nothing was sent.
    recheck_s: _Seconds | None = None


class ClaudeCodeOptions(DriverOptions, kw_only=True, forbid_unknown_fields=True):
    config_dir: str | None = None
    credentials_path: str | None = None
    keychain: Keychain = Keychain.AUTO
    user_agent: str | None = None
    #: The macOS ``security`` tool that reads the Keychain.
    security_cli: str = "security"


class CodexOptions(DriverOptions, kw_only=True, forbid_unknown_fields=True):
    codex_home: str | None = None
    app_server: Toggle = Toggle.AUTO
    app_server_timeout_s: _Seconds = 30.0
    #: After the app-server fails, leave it alone this long (0: try again on the next poll).
    app_server_retry_s: Annotated[float, msgspec.Meta(ge=0, le=7 * 24 * 3600)] = 1800.0
    rollout: Toggle = Toggle.AUTO
    rollout_files: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 8
    user_agent: str | None = None


class CopilotOptions(DriverOptions, kw_only=True, forbid_unknown_fields=True):
    apps_json: str | None = None
    user_agent: str | None = None


OPTIONS: Final[dict[DriverName | None, type[DriverOptions]]] = {
    DriverName.CLAUDE_CODE: ClaudeCodeOptions,
    DriverName.CODEX: CodexOptions,
    DriverName.COPILOT: CopilotOptions,
    DriverName.OPENROUTER: DriverOptions,
    DriverName.API_KEY: DriverOptions,
    None: DriverOptions,
}

DEFAULT_DRIVER: Final[dict[str, DriverName]] = {
    "claude_code": DriverName.CLAUDE_CODE,
    "openai-codex": DriverName.CODEX,
    "github-copilot": DriverName.COPILOT,
    "openrouter": DriverName.OPENROUTER,
    "anthropic_api": DriverName.API_KEY,
    "openai_api": DriverName.API_KEY,
}

OptionsT = TypeVar("OptionsT", bound=DriverOptions)


def driver_for(pid: str, options: dict[str, object], kind: str, key_env: list[str]) -> DriverName | None:
    """The driver serving ``pid``, or ``None`` when bhoga has no way to discover its quota.

    ``options`` must have passed :func:`validate`, so ``driver`` is a known name when present.
    """
    named = options.get("driver")
    if named is not None:
        return DriverName(str(named))
    default = DEFAULT_DRIVER.get(pid)
    if default is None and key_env and kind == "api_key":
        return DriverName.API_KEY
    return default


def validate(pid: str, options: dict[str, object], kind: str, key_env: list[str]) -> DriverOptions:
    """The typed options of ``pid``; ``msgspec.ValidationError`` (path ``$.<key>``) when invalid."""
    named = options.get("driver")
    if named is not None:
        # The driver decides which Struct the rest is checked against, so it is checked first.
        msgspec.convert({"driver": named}, DriverOptions, strict=False)
    # YAML (and older configs) may give numbers as strings: ``recheck_s: '0.5'`` stays accepted.
    return msgspec.convert(options, OPTIONS[driver_for(pid, options, kind, key_env)], strict=False)


def typed(cls: type[OptionsT], options: dict[str, object]) -> OptionsT:
    """``options`` as ``cls``; for drivers, whose config was validated when it loaded."""
    return msgspec.convert(options, cls, strict=False)


class _Common(msgspec.Struct, kw_only=True):
    """The options every driver shares, read without regard to the driver's own (the poller's view)."""

    recheck_s: float | None = None


def recheck_s(options: dict[str, object]) -> float | None:
    return msgspec.convert(options, _Common, strict=False).recheck_s


def expand(path: str | None) -> Path | None:
    return Path(path).expanduser() if path else None
