"""The daemon's configuration: built-in defaults, overridden by ``config.yaml``.

No file is needed to start. A file only overrides what it names: a provider entry replaces just the
fields it sets, so ``providers: {claude_code: {priority: 5}}`` keeps every other default.

The file is untrusted input and is checked once, here, where it enters: at most 1 MiB, UTF-8, nested
at most 32 levels, no YAML aliases; every number within a range; provider ids in ``routing.families``
and ``budgets`` must name a configured provider; each provider's ``options`` are checked against its
driver's Struct (``bhogad.discovery.options``). Every error names the file, the key path
(``providers.claud_code``) and, where YAML knows it, the line.
"""

from __future__ import annotations

import codecs
import difflib
import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Final
from urllib.parse import urlsplit

import msgspec
import yaml

from bhoga.protocol import MAX_LINE_BYTES, AlertKind, ProviderKind
from bhoga.quota.families import DEFAULT_HIERARCHY
from bhoga.quota.model import LOW_FRACTION
from bhogad.discovery import options as driver_options
from bhogad.domain.pricing import Price


class StrategyName(StrEnum):
    """Ranking strategies ``routing.strategy`` may name (``routing.STRATEGIES`` implements each)."""

    #: Most left in the tightest window (the library's rule).
    HEADROOM = "headroom"
    #: Spend first what would otherwise reset unspent; never a window projected to run out early.
    PACE = "pace"


#: The strategy names, in the order ``routing.STRATEGIES`` defines them.
STRATEGY_NAMES: Final = tuple(s.value for s in StrategyName)


class Synchronous(StrEnum):
    """SQLite ``synchronous`` for the store: ``normal`` survives a daemon crash (kill -9), ``full``
    also a power cut (every commit waits for the disk)."""

    NORMAL = "normal"
    FULL = "full"


#: Limits on the file itself: a config is a few KiB; anything near these is a mistake or an attack.
MAX_CONFIG_BYTES: Final = 1 << 20
MAX_CONFIG_DEPTH: Final = 32

_DAY: Final = 24 * 3600.0
_Count = Annotated[int, msgspec.Meta(ge=1, le=1000)]
_Seconds = Annotated[float, msgspec.Meta(gt=0, le=_DAY)]
_LongSeconds = Annotated[float, msgspec.Meta(gt=0, le=366 * _DAY)]
_Usd = Annotated[float, msgspec.Meta(ge=0, le=1e9)]
_Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]
_Priority = Annotated[int, msgspec.Meta(ge=-1_000_000, le=1_000_000)]
_EnvName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")]
_Url = Annotated[str, msgspec.Meta(pattern=r"^https?://[^\s]+$", max_length=2048)]
_ProviderId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")]
_Margin = Annotated[float, msgspec.Meta(ge=0, le=100)]
_Percent = Annotated[float, msgspec.Meta(ge=0, le=100)]


class ProviderConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    kind: ProviderKind
    priority: _Priority
    enabled: bool = True
    #: Where the provider's quota endpoint lives; tests and proxies point it elsewhere.
    base_url: _Url | None = None
    #: The provider's CLI (``codex``, ``gh``), looked up on PATH when not absolute.
    cli: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)] | None = None
    #: Environment variables that hold an API key, tried in order.
    key_env: Annotated[list[_EnvName], msgspec.Meta(max_length=16)] = msgspec.field(default_factory=list)
    poll_interval_s: Annotated[float, msgspec.Meta(gt=0, le=7 * _DAY)] = 300.0
    poll_timeout_s: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 20.0
    #: A reading older than this is shown as stale and no longer counts towards the remaining fraction.
    stale_after_s: _LongSeconds = 1800.0
    #: Driver settings (credential paths, headers), checked against the driver's Struct in
    #: ``bhogad.discovery.options`` when the config loads; each driver module documents its own.
    options: dict[str, Any] = msgspec.field(default_factory=dict)
    #: Quota to keep for yourself, per window name (or key, like ``weekly/opus``): percent of that
    #: window that bhoga never recommends spending (``{weekly: 20}`` stops at 20 % left).
    reserve: dict[str, _Percent] = msgspec.field(default_factory=dict)
    #: The account this provider's quota belongs to, when discovery cannot tell (it usually can:
    #: ChatGPT account id, GitHub login, Claude organisation). Providers with one account share quota.
    account: Annotated[str, msgspec.Meta(min_length=1, max_length=128)] | None = None


class ServerConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    max_connections: Annotated[int, msgspec.Meta(ge=1, le=65536)] = 256
    #: At least 4 KiB (a turn with its headers must fit), at most 64 MiB.
    max_line_bytes: Annotated[int, msgspec.Meta(ge=4096, le=64 << 20)] = MAX_LINE_BYTES
    #: A connection with no partial line may stay idle this long (harnesses keep connections open).
    idle_timeout_s: _Seconds = 600.0
    #: Once a line has started, the rest of it must arrive within this (anti-slowloris).
    line_timeout_s: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 10.0
    send_timeout_s: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 5.0
    #: How long SIGTERM waits for requests already read before the daemon exits anyway.
    shutdown_grace_s: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 5.0
    #: Also serve ``GET /metrics`` over HTTP on 127.0.0.1 at this port, for Prometheus (off when unset).
    metrics_port: _Port | None = None


class RoutingConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    #: ``headroom``: most left in the tightest window (the library's rule). ``pace``: spend first what
    #: would otherwise reset unspent, and never a window projected to run out before its reset.
    strategy: StrategyName = StrategyName.HEADROOM
    #: Family → providers in order of preference; every id must be a configured provider.
    families: dict[str, list[_ProviderId]] = msgspec.field(
        default_factory=lambda: {family: list(pids) for family, pids in DEFAULT_HIERARCHY.items()}
    )
    #: Below this remaining fraction a provider reports status ``low``.
    low_fraction: Annotated[float, msgspec.Meta(ge=0, le=1)] = LOW_FRACTION
    #: Cooldown after a 429 that says nothing about when to retry. Each further 429 without a success
    #: in between doubles it, up to ``default_cooldown_max_s``; a success starts again from this.
    default_cooldown_s: _Seconds = 60.0
    default_cooldown_max_s: _Seconds = 3600.0
    #: A provider that reported a successful turn counts as available for this long, even when the
    #: daemon itself holds no credentials for it (the harness does).
    turn_evidence_s: _LongSeconds = 7 * 24 * 3600.0
    #: Consecutive failed turns (5xx, 529 overloaded, 408, no response) before a provider (or one of
    #: its models) is degraded, then unhealthy. One success restores it.
    degraded_after: _Count = 2
    unhealthy_after: _Count = 5
    #: An unhealthy provider is demoted, not dropped; after this long without a new failure it is
    #: offered again as degraded, so some harness tries it and a success can restore it.
    health_probe_after_s: _Seconds = 300.0
    #: Time constant of the token-flow average that gives the pace strategy its current burn rate.
    burn_window_s: Annotated[float, msgspec.Meta(gt=0, le=31 * _DAY)] = 3600.0
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
    synchronous: Synchronous = Synchronous.NORMAL
    #: Days of raw turns to keep (10 years at most). Older turns are pruned; the daily rollups keep
    #: their totals, so ``usage`` and budgets still count them. The current budget month is never pruned.
    keep_turns_days: Annotated[int, msgspec.Meta(ge=1, le=3660)] = 400


class BudgetConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Monthly USD budgets, per calendar month in UTC.

    A provider over its budget is skipped. Its spend is every turn's cost on it, which for a
    subscription is the API-equivalent value (what the same tokens would cost on an API key).
    An agent over its budget is kept off paid (API-key) providers: only billed spend counts
    towards it, and subscriptions cost it nothing more, so it may still use them.
    """

    providers: dict[_ProviderId, _Usd] = msgspec.field(default_factory=dict)
    agents: dict[str, _Usd] = msgspec.field(default_factory=dict)


class HookConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """An executable run for each alert: the alert as JSON on stdin, and ``BHOGA_ALERT_KIND``,
    ``BHOGA_PROVIDER``, ``BHOGA_WINDOW``, ``BHOGA_PERCENT``, ``BHOGA_RESETS_AT`` in its environment."""

    #: The program and its arguments (no shell).
    command: Annotated[list[str], msgspec.Meta(min_length=1)]
    timeout_s: Annotated[float, msgspec.Meta(gt=0, le=600)] = 10.0
    #: Only these alert kinds (``threshold``, ``projected_exhaustion``, ...); empty means all.
    kinds: list[AlertKind] = msgspec.field(default_factory=list)


class AlertsConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    enabled: bool = True
    #: Percent used at which a window raises an alert, once per reset period each.
    thresholds: list[Annotated[float, msgspec.Meta(gt=0, le=1000)]] = msgspec.field(
        default_factory=lambda: [80.0, 95.0, 100.0]
    )
    #: "Projected to run out before its reset", from the pace projection; once per episode.
    projected: bool = True
    #: ... but only once a window is this much used: early on, a few calls make any pace look fatal.
    projected_from_pct: Annotated[float, msgspec.Meta(ge=0, le=100)] = 40.0
    cooldowns: bool = True
    resets: bool = True
    unavailable: bool = True
    hooks: list[HookConfig] = msgspec.field(default_factory=list)
    #: How often windows are looked at again when nothing changed (resets and cooldowns end by time).
    interval_s: Annotated[float, msgspec.Meta(ge=1, le=3600)] = 30.0


class IngestConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Passive ingest of what harnesses write anyway; each source is on when its folder exists."""

    #: Claude Code transcripts (``~/.claude/projects``, ``~/.config/claude/projects``,
    #: ``$CLAUDE_CONFIG_DIR/projects``).
    claude_code: bool = True
    #: Codex rollouts (``$CODEX_HOME/sessions``, ``archived_sessions``).
    codex: bool = True
    #: Extra (or, when set, replacing) folders; ``~`` is expanded.
    claude_dirs: list[str] = msgspec.field(default_factory=list)
    codex_home: str | None = None
    #: Which provider the turns are booked to (a Claude Code run on an API key: ``anthropic_api``).
    claude_provider: str = "claude_code"
    codex_provider: str = "openai-codex"
    #: How often the folders are looked at for new or grown files.
    interval_s: Annotated[float, msgspec.Meta(ge=0.05, le=3600)] = 10.0
    #: Most bytes read per step; the scan yields to requests between steps.
    batch_bytes: Annotated[int, msgspec.Meta(ge=4096, le=64 << 20)] = 256 << 10


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
    providers: dict[_ProviderId, ProviderConfig] = msgspec.field(default_factory=dict)
    #: Model (prefix) → USD per million tokens; wins over the built-in table in ``pricing.py``.
    pricing: dict[str, Price] = msgspec.field(default_factory=dict)
    budgets: BudgetConfig = msgspec.field(default_factory=BudgetConfig)
    alerts: AlertsConfig = msgspec.field(default_factory=AlertsConfig)
    ingest: IngestConfig = msgspec.field(default_factory=IngestConfig)
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
    """A config file that cannot be used; the message names the file, the key path and the line."""


class Invalid(msgspec.ValidationError):
    """A value that cannot be used; ``path`` is its key path (``("providers", "claud_code")``)."""

    def __init__(self, path: tuple[str, ...], reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{'.'.join(path)}: {reason}" if path else reason)


_PATH_TOKEN: Final = re.compile(r"\.([^.\[]+)|\[(\d+)\]")


def _invalid(exc: msgspec.ValidationError, prefix: tuple[str, ...] = ()) -> Invalid:
    """msgspec's ``Expected `int` >= 1 - at `$.server.max_connections``` as a key path and a reason."""
    if isinstance(exc, Invalid):
        return Invalid(prefix + exc.path, exc.reason)
    reason, sep, where = str(exc).rpartition(" - at `")
    if not sep:
        reason, where = str(exc), "$"
    path = prefix + tuple(m.group(1) or m.group(2) for m in _PATH_TOKEN.finditer(where.rstrip("`")[1:]))
    unknown = re.fullmatch(r"Object contains unknown field `([^`]+)`", reason)
    if unknown:
        return Invalid((*path, unknown.group(1)), "unknown key")
    bad_choice = re.fullmatch(r"Invalid enum value (.+)", reason)
    if bad_choice and path and path[-1] in _CHOICES:
        choices = ", ".join(c.value for c in _CHOICES[path[-1]])
        return Invalid(path, f"unknown {path[-1]} {bad_choice.group(1)}; choose one of {choices}")
    return Invalid(path, reason[:1].lower() + reason[1:])


#: The closed sets a config key may name, so an error can list the choices.
_CHOICES: Final[dict[str, type[StrEnum]]] = {
    "strategy": StrategyName,
    "synchronous": Synchronous,
    "kind": ProviderKind,
    "driver": driver_options.DriverName,
    "keychain": driver_options.Keychain,
    "app_server": driver_options.Toggle,
    "rollout": driver_options.Toggle,
}


def _convert(value: Any, typ: Any, path: tuple[str, ...]) -> Any:
    try:
        return msgspec.convert(value, typ)
    except msgspec.ValidationError as exc:
        raise _invalid(exc, path) from None


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _mapping(value: Any, path: tuple[str, ...], what: str) -> dict[Any, Any]:
    if not isinstance(value, dict):
        raise Invalid(path, f"must be a mapping of {what}, not {type(value).__name__}")
    for key in value:
        if not isinstance(key, str):
            raise Invalid((*path, str(key)), f"keys must be text, not {type(key).__name__}")
    return value


def _check_provider(pid: str, entry: Any) -> None:
    path = ("providers", pid)
    if not _PROVIDER_ID_RE.match(pid):
        raise Invalid(
            path, "a provider id is 1–64 letters, digits and _ . : -, starting with one of the first two"
        )
    if pid not in DEFAULT_PROVIDERS and (entry is None or (isinstance(entry, dict) and "kind" not in entry)):
        # A misspelt built-in id (`claud_code:`) would otherwise read as a new provider missing `kind`.
        known = sorted(DEFAULT_PROVIDERS)
        close = difflib.get_close_matches(pid, known, n=1)
        hint = f"; did you mean `{close[0]}`?" if close else ""
        raise Invalid(
            path, f"unknown provider (known: {', '.join(known)}){hint}; a provider of your own needs `kind`"
        )
    _mapping(entry, path, "settings")
    cfg: ProviderConfig = _convert(entry, ProviderConfig, path)
    try:
        driver_options.validate(pid, cfg.options, cfg.kind.value, cfg.key_env)
    except msgspec.ValidationError as exc:
        raise _invalid(exc, (*path, "options")) from None


def build(overrides: dict[str, Any] | None = None) -> Config:
    """Defaults merged with ``overrides`` (a parsed config file), validated; ``Invalid`` if not."""
    raw = _merge(msgspec.to_builtins(Config()), {"providers": DEFAULT_PROVIDERS})
    if overrides:
        raw = _merge(raw, _mapping(overrides, (), "sections"))
    # msgspec hides dict keys in its error paths (``$.providers[...]``), so every section keyed by
    # a name is checked entry by entry: then the error names the key, and the loader its line.
    for pid, entry in _mapping(raw.get("providers"), ("providers",), "provider ids to settings").items():
        _check_provider(pid, entry)
    for model, price in _mapping(raw.get("pricing", {}), ("pricing",), "models to prices").items():
        _convert(price, Price, ("pricing", model))
    routing = _mapping(raw.get("routing", {}), ("routing",), "settings")
    families = _mapping(routing.get("families", {}), ("routing", "families"), "families to provider ids")
    for family, pids in families.items():
        _convert(pids, list[_ProviderId], ("routing", "families", family))
    budgets = _mapping(raw.get("budgets", {}), ("budgets",), "settings")
    for section in ("providers", "agents"):
        for name, usd in _mapping(budgets.get(section, {}), ("budgets", section), "names to USD").items():
            _convert(usd, _Usd, ("budgets", section, name))
    cfg: Config = _convert(raw, Config, ())

    if cfg.routing.unhealthy_after < cfg.routing.degraded_after:
        raise Invalid(("routing", "unhealthy_after"), "unhealthy_after must be at least degraded_after")
    known = sorted(cfg.providers)
    for family, pids in cfg.routing.families.items():
        for i, pid in enumerate(pids):
            if pid not in cfg.providers:
                raise Invalid(("routing", "families", family, str(i)), _unknown_id(pid, known))
    for pid in cfg.budgets.providers:
        if pid not in cfg.providers:
            raise Invalid(("budgets", "providers", pid), _unknown_id(pid, known))
    if cfg.shared.url is not None:
        _check_shared_url(cfg.shared.url)
    return cfg


def _check_shared_url(url: str) -> None:
    # The config file is often readable by others, copied between machines and pasted into issues:
    # a password belongs in an environment variable or a file of its own.
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise Invalid(
            ("shared", "url"),
            f"shared.url must start with redis://, rediss:// or unix://, not {parts.scheme or url!r}",
        )
    if parts.password:
        raise Invalid(
            ("shared", "url"),
            "shared.url must not hold a password; put it in an environment variable named by "
            "shared.password_env, or a file named by shared.password_file",
        )


def _unknown_id(pid: str, known: list[str]) -> str:
    close = difflib.get_close_matches(pid, known, n=1)
    hint = f"; did you mean `{close[0]}`?" if close else ""
    return f"unknown provider {pid!r} (known: {', '.join(known)}){hint}"


_PROVIDER_ID_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")


def _line_of(text: str, path: tuple[str, ...]) -> int | None:
    """The line in ``text`` of the deepest key of ``path`` the file itself has (defaults have none)."""
    try:
        node: Any = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    line = None
    for key in path:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.value == key:
                    line, node = k.start_mark.line + 1, v
                    break
            else:
                break
        elif isinstance(node, yaml.SequenceNode) and key.isdigit() and int(key) < len(node.value):
            node = node.value[int(key)]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _check_structure(text: str, path: Path) -> None:
    """Depth and aliases, from the event stream (which, unlike building the document, cannot recurse
    without bound): a deep document would otherwise end in a RecursionError, and aliases can make a
    small file expand without bound."""
    depth = 0
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):
                raise ConfigError(
                    f"{path}{_at(event)}: YAML aliases (*{event.anchor}) are not "
                    "supported in config.yaml; write the value out"
                )
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_CONFIG_DEPTH:
                    raise ConfigError(
                        f"{path}{_at(event)}: nested more than {MAX_CONFIG_DEPTH} levels "
                        "deep; a bhoga config needs at most 5"
                    )
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, path) from None


def _at(event: yaml.Event) -> str:
    mark = event.start_mark
    return f":{mark.line + 1}" if mark is not None else ""


def _yaml_error(exc: yaml.YAMLError, path: Path) -> ConfigError:
    mark = getattr(exc, "problem_mark", None)
    where = f":{mark.line + 1}" if mark is not None else ""
    return ConfigError(f"{path}{where}: not valid YAML: {getattr(exc, 'problem', None) or exc}")


def read_text(path: Path) -> str:
    """The file's text, if it is a plausible config: at most 1 MiB of UTF-8."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{path}: larger than {MAX_CONFIG_BYTES >> 20} MiB; a bhoga config is a few KiB "
            "(is this the right file?)"
        )
    try:
        return codecs.decode(data, "utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"{path}:{line}: not UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            "save the file as UTF-8"
        ) from None


def load(path: Path | None) -> Config:
    """Read ``path`` over the defaults. A missing file is fine; an invalid one raises ``ConfigError``."""
    if path is None or not path.exists():
        return build()
    text = read_text(path)
    _check_structure(text, path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, path) from None
    if data is None:
        return build()
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: the top level must be a mapping, not {type(data).__name__}")
    try:
        return build(data)
    except msgspec.ValidationError as exc:
        invalid = _invalid(exc)
        line = _line_of(text, invalid.path)
        raise ConfigError(f"{path}{f':{line}' if line else ''}: {invalid}") from None
