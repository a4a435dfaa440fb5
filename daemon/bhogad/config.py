"""The daemon's configuration: built-in defaults, overridden by ``config.yaml``.

No file is needed to start. A file only overrides what it names: a provider entry replaces just the
fields it sets, so ``providers: {claude_code: {priority: 5}}`` keeps every other default.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import msgspec
import yaml

from bhoga.protocol import MAX_LINE_BYTES, ProviderKind
from bhoga.quota.families import DEFAULT_HIERARCHY
from bhoga.quota.model import LOW_FRACTION
from bhogad.domain.pricing import Price

#: Ranking strategies ``routing.strategy`` may name (``routing.STRATEGIES`` implements each).
STRATEGY_NAMES = ("headroom", "pace")

_Count = Annotated[int, msgspec.Meta(ge=1)]
_Seconds = Annotated[float, msgspec.Meta(gt=0)]
_Usd = Annotated[float, msgspec.Meta(ge=0)]
_Margin = Annotated[float, msgspec.Meta(ge=0, le=100)]
_Percent = Annotated[float, msgspec.Meta(ge=0, le=100)]


class ProviderConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    kind: ProviderKind
    priority: int
    enabled: bool = True
    #: Where the provider's quota endpoint lives; tests and proxies point it elsewhere.
    base_url: str | None = None
    #: The provider's CLI (``codex``, ``gh``), looked up on PATH when not absolute.
    cli: str | None = None
    #: Environment variables that hold an API key, tried in order.
    key_env: list[str] = msgspec.field(default_factory=list)
    poll_interval_s: float = 300.0
    poll_timeout_s: float = 20.0
    #: A reading older than this is shown as stale and no longer counts towards the remaining fraction.
    stale_after_s: float = 1800.0
    #: Provider-specific settings (credential paths, headers); each provider module documents its own.
    options: dict[str, str] = msgspec.field(default_factory=dict)
    #: Quota to keep for yourself, per window name (or key, like ``weekly/opus``): percent of that
    #: window that bhoga never recommends spending (``{weekly: 20}`` stops at 20 % left).
    reserve: dict[str, _Percent] = msgspec.field(default_factory=dict)
    #: The account this provider's quota belongs to, when discovery cannot tell (it usually can:
    #: ChatGPT account id, GitHub login, Claude organisation). Providers with one account share quota.
    account: str | None = None


class ServerConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    max_connections: int = 256
    max_line_bytes: int = MAX_LINE_BYTES
    #: A connection with no partial line may stay idle this long (harnesses keep connections open).
    idle_timeout_s: float = 600.0
    #: Once a line has started, the rest of it must arrive within this (anti-slowloris).
    line_timeout_s: float = 10.0
    send_timeout_s: float = 5.0
    #: How long SIGTERM waits for requests already read before the daemon exits anyway.
    shutdown_grace_s: float = 5.0
    #: Also serve ``GET /metrics`` over HTTP on 127.0.0.1 at this port, for Prometheus (off when unset).
    metrics_port: int | None = None


class RoutingConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    #: ``headroom``: most left in the tightest window (the library's rule). ``pace``: spend first what
    #: would otherwise reset unspent, and never a window projected to run out before its reset.
    strategy: str = "headroom"
    #: Family → providers in order of preference.
    families: dict[str, list[str]] = msgspec.field(
        default_factory=lambda: {family: list(pids) for family, pids in DEFAULT_HIERARCHY.items()}
    )
    #: Below this remaining fraction a provider reports status ``low``.
    low_fraction: float = LOW_FRACTION
    #: Cooldown after a 429 that says nothing about when to retry. Each further 429 without a success
    #: in between doubles it, up to ``default_cooldown_max_s``; a success starts again from this.
    default_cooldown_s: float = 60.0
    default_cooldown_max_s: _Seconds = 3600.0
    #: A provider that reported a successful turn counts as available for this long, even when the
    #: daemon itself holds no credentials for it (the harness does).
    turn_evidence_s: float = 7 * 24 * 3600.0
    #: Consecutive failed turns (5xx, 529 overloaded, 408, no response) before a provider (or one of
    #: its models) is degraded, then unhealthy. One success restores it.
    degraded_after: _Count = 2
    unhealthy_after: _Count = 5
    #: An unhealthy provider is demoted, not dropped; after this long without a new failure it is
    #: offered again as degraded, so some harness tries it and a success can restore it.
    health_probe_after_s: _Seconds = 300.0
    #: Time constant of the token-flow average that gives the pace strategy its current burn rate.
    burn_window_s: _Seconds = 3600.0
    #: Pace rankings drift with the clock (resets come closer, burn rates decay): reuse one this long.
    pace_recompute_s: _Seconds = 30.0
    #: How much better another provider must be before an answer changes, in the strategy's score:
    #: a fraction of quota for headroom (0.1 = 10 points), multiples of even pace for pace.
    switch_margin: _Margin = 0.2
    #: Extra margin per USD that switching a session would cost (its prompt cache, priced).
    margin_per_usd: _Margin = 1.0
    #: A session keeps its provider while it called within this long; after that it is routed afresh.
    #: Its prompt cache lives about 5 minutes (an hour with the longer cache), and only while it
    #: lives does switching cost more than the margin; staying put longer keeps answers predictable.
    session_idle_s: _Seconds = 3600.0


class StoreConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    #: SQLite ``synchronous``: ``normal`` survives a daemon crash (kill -9); ``full`` also a power cut.
    synchronous: str = "normal"


class BudgetConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Monthly USD budgets, per calendar month in UTC.

    A provider over its budget is skipped. Its spend is every turn's cost on it, which for a
    subscription is the API-equivalent value (what the same tokens would cost on an API key).
    An agent over its budget is kept off paid (API-key) providers: only billed spend counts
    towards it, and subscriptions cost it nothing more, so it may still use them.
    """

    providers: dict[str, _Usd] = msgspec.field(default_factory=dict)
    agents: dict[str, _Usd] = msgspec.field(default_factory=dict)


class SharedConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Several machines' daemons sharing one account's quota through a Valkey or Redis server.

    Off unless ``url`` is set. The password never sits in this file: it comes from an environment
    variable or a file (``password_env``, ``password_file``), or the URL's own, for a local server.
    """

    #: ``redis://host:6379/0``, or ``rediss://`` for TLS.
    url: str | None = None
    username: str | None = None
    password_env: str | None = None
    password_file: str | None = None
    #: A CA bundle for ``rediss://`` servers with a private certificate authority.
    tls_ca_file: str | None = None
    #: Keys are ``bhoga:<namespace>:…``: one server can serve several people or teams.
    namespace: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] = "default"
    #: This machine's name in the others' ``bhoga status`` (default: the host name).
    device: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] | None = None
    #: How often shared state is folded in even without a change event, and burn flows published.
    sync_interval_s: Annotated[float, msgspec.Meta(ge=0.2, le=300)] = 2.0
    #: How long one network operation may take before the server counts as unreachable.
    timeout_s: Annotated[float, msgspec.Meta(gt=0, le=60)] = 2.0


class Config(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    server: ServerConfig = msgspec.field(default_factory=ServerConfig)
    routing: RoutingConfig = msgspec.field(default_factory=RoutingConfig)
    store: StoreConfig = msgspec.field(default_factory=StoreConfig)
    providers: dict[str, ProviderConfig] = msgspec.field(default_factory=dict)
    #: Model (prefix) → USD per million tokens; wins over the built-in table in ``pricing.py``.
    pricing: dict[str, Price] = msgspec.field(default_factory=dict)
    budgets: BudgetConfig = msgspec.field(default_factory=BudgetConfig)
    shared: SharedConfig = msgspec.field(default_factory=SharedConfig)


DEFAULT_PROVIDERS: dict[str, dict[str, Any]] = {
    "claude_code": {
        "kind": "subscription",
        "priority": 1,
        "base_url": "https://api.anthropic.com",
        "key_env": ["CLAUDE_CODE_OAUTH_TOKEN"],
    },
    "anthropic_api": {"kind": "api_key", "priority": 2, "key_env": ["ANTHROPIC_API_KEY"]},
    "openai-codex": {
        "kind": "subscription",
        "priority": 1,
        "base_url": "https://chatgpt.com/backend-api",
        "cli": "codex",
    },
    "openai_api": {"kind": "api_key", "priority": 2, "key_env": ["OPENAI_API_KEY"]},
    "github-copilot": {
        "kind": "subscription",
        "priority": 3,
        "base_url": "https://api.github.com",
        "cli": "gh",
        "key_env": ["COPILOT_GITHUB_TOKEN", "GH_TOKEN", "GITHUB_TOKEN"],
    },
    "openrouter": {
        "kind": "api_key",
        "priority": 4,
        "base_url": "https://openrouter.ai/api/v1",
        "key_env": ["OPENROUTER_API_KEY"],
    },
}


class ConfigError(Exception):
    """A config file that cannot be used; the message names the file and, where known, the line."""


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def build(overrides: dict[str, Any] | None = None) -> Config:
    """Defaults merged with ``overrides`` (a parsed config file), validated."""
    raw = _merge(msgspec.to_builtins(Config()), {"providers": DEFAULT_PROVIDERS})
    if overrides:
        raw = _merge(raw, overrides)
    providers = raw.get("providers")
    if isinstance(providers, dict):
        # msgspec hides dict keys in error paths (``$.providers[...]``); check each entry on its own
        # so the error names the provider, and the config loader can point at its line.
        for pid, entry in providers.items():
            try:
                msgspec.convert(entry, ProviderConfig)
            except msgspec.ValidationError as exc:
                raise msgspec.ValidationError(str(exc).replace("`$", f"`$.providers.{pid}")) from None
    cfg = msgspec.convert(raw, Config)
    routing = cfg.routing
    if routing.strategy not in STRATEGY_NAMES:
        choices = ", ".join(STRATEGY_NAMES)
        raise msgspec.ValidationError(
            f"unknown strategy {routing.strategy!r}; choose one of {choices} - at `$.routing.strategy`"
        )
    if routing.unhealthy_after < routing.degraded_after:
        raise msgspec.ValidationError(
            "unhealthy_after must be at least degraded_after - at `$.routing.unhealthy_after`"
        )
    if cfg.shared.url is not None:
        _check_shared_url(cfg.shared.url)
    return cfg


def _check_shared_url(url: str) -> None:
    # The config file is often readable by others, copied between machines and pasted into issues:
    # a password belongs in an environment variable or a file of its own.
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise msgspec.ValidationError(
            f"shared.url must start with redis://, rediss:// or unix://, not {parts.scheme or url!r}"
            " - at `$.shared.url`"
        )
    if parts.password:
        raise msgspec.ValidationError(
            "shared.url must not hold a password; put it in an environment variable named by "
            "shared.password_env, or a file named by shared.password_file - at `$.shared.url`"
        )


def _line_of(text: str, path: str) -> int | None:
    """The line in ``text`` where msgspec's error path (``$.providers.x.priority``) points, if found."""
    keys = [k for k in path.removeprefix("$").split(".") if k and not k.startswith("[")]
    try:
        node: Any = yaml.compose(text)
    except yaml.YAMLError:
        return None
    line = None
    for key in keys:
        if not isinstance(node, yaml.MappingNode):
            break
        for k, v in node.value:
            if k.value == key:
                line, node = k.start_mark.line + 1, v
                break
        else:
            break
    return line


def load(path: Path | None) -> Config:
    """Read ``path`` over the defaults. A missing file is fine; an invalid one raises ``ConfigError``."""
    if path is None or not path.exists():
        return build()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from exc
    if data is None:
        return build()
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: the top level must be a mapping, not {type(data).__name__}")
    try:
        return build(data)
    except msgspec.ValidationError as exc:
        message = str(exc)
        _, _, where = message.rpartition(" - at `")
        path_to = where.rstrip("`")
        unknown = re.search(r"unknown field `([^`]+)`", message)
        if unknown:
            path_to += "." + unknown.group(1)
        line = _line_of(text, path_to) if where else None
        return_line = f":{line}" if line else ""
        raise ConfigError(f"{path}{return_line}: {message}") from exc
