"""The wire contract between ``bhogad`` and its clients.

Everything here is data: msgspec Structs for every message and record, method names, error codes and
the protocol version. No I/O happens in this module, so the daemon, the blocking client, the async
client and the tests all share one definition of the protocol.

Compatibility rules (msgspec schema evolution): new fields get defaults, existing fields never change
type, and ``PROTOCOL_VERSION`` moves only on an incompatible change.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any, Final, Literal

import msgspec

PROTOCOL_VERSION: Final = 1

#: Longest request line the daemon accepts, newline included.
MAX_LINE_BYTES: Final = 1 << 20
#: Longest reply a client reads: replies (a ledger page, a full ranking) may be far larger than requests.
MAX_REPLY_BYTES: Final = 64 << 20
#: Most entries in one JSON-RPC batch.
MAX_BATCH: Final = 64
#: Deepest nesting of arrays and objects in one line. A request is at most a batch of objects whose
#: params hold a headers object: five levels. Far deeper input is hostile, and left to the decoder it
#: would end in a RecursionError instead of an answer.
MAX_JSON_DEPTH: Final = 32


class Method(enum.StrEnum):
    HELLO = "daemon.hello"
    STATUS = "daemon.status"
    #: Re-read config.yaml and answer once it is in use, or with the error that kept the old one.
    RELOAD = "daemon.reload"
    METRICS = "daemon.metrics"
    BEST_FOR = "router.best_for"
    RANK = "router.rank"
    RECORD_TURN = "turns.record"
    LIST_TURNS = "turns.list"
    SET_QUOTA = "quota.set"
    LIST_QUOTAS = "quota.list"
    REFRESH = "quota.refresh"
    USAGE_SUMMARY = "usage.summary"
    SUBSCRIBE = "events.subscribe"
    REPORT_WINDOWS = "quota.report"
    ALERT_HISTORY = "alerts.history"
    CLEAR_COOLDOWN = "cooldown.clear"


class Event(enum.StrEnum):
    """Notifications the daemon pushes on a subscribed connection."""

    #: A provider's quota view changed; params are ``QuotaChanged``.
    QUOTA_CHANGED = "quota.changed"
    #: This subscriber fell behind and events were dropped; params are ``Lagged``. Resynchronise
    #: with ``quota.list``.
    LAGGED = "events.lagged"
    #: An alert fired (a threshold, a projected run-out, a cooldown, a reset); params are ``Alert``.
    QUOTA_ALERT = "quota.alert"


#: Server-pushed notification sent to subscribers when a provider's quota view changes.
QUOTA_CHANGED: Final = Event.QUOTA_CHANGED
#: Server-pushed notification: events were dropped for this slow subscriber.
EVENTS_LAGGED: Final = Event.LAGGED
#: Server-pushed notification sent to subscribers when an alert fires (``Alert`` params).
QUOTA_ALERT: Final = Event.QUOTA_ALERT


class ErrorCode(enum.IntEnum):
    PARSE_ERROR = -32700
    INVALID_REQUEST = -32600
    METHOD_NOT_FOUND = -32601
    INVALID_PARAMS = -32602
    INTERNAL_ERROR = -32603
    # Implementation-defined server errors (-32000..-32099); each carries a stable ``data.kind``.
    APPLICATION = -32000
    NOT_AUTHORISED = -32001
    OVERLOADED = -32002
    SHUTTING_DOWN = -32003
    REQUEST_TOO_LARGE = -32004
    UNSUPPORTED_PROTOCOL = -32010


# --------------------------------------------------------------------------------------------------
# Domain records


class ProviderStatus(enum.StrEnum):
    """The library's status values, plus ``unavailable`` for providers that cannot be used here."""

    OK = "ok"
    LOW = "low"
    THROTTLED = "throttled"
    EXHAUSTED = "exhausted"
    UNKNOWN = "unknown"
    UNAVAILABLE = "unavailable"


class BillingCadence(enum.StrEnum):
    HOURLY = "hourly"
    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"


class ProviderKind(enum.StrEnum):
    SUBSCRIPTION = "subscription"
    API_KEY = "api_key"


class WindowKind(enum.StrEnum):
    #: A usage allowance that is spent and comes back at a reset (5-hour, weekly, monthly, credits).
    QUOTA = "quota"
    #: A per-minute rate-limit bucket that refills continuously (requests/tokens per minute). It can
    #: block a provider for seconds, but says nothing about how much of a subscription is left.
    RATE = "rate"


class Source(enum.StrEnum):
    #: A subscription's own usage endpoint, reached with its OAuth login (Claude Code, Codex).
    OAUTH = "oauth"
    #: A provider's account API reached with a key or token (Copilot, OpenRouter).
    API = "api"
    CLI = "cli"
    HEADERS = "headers"
    MANUAL = "manual"
    LOCAL = "local"
    #: Claude Code's ``statusLine`` payload (``rate_limits``), passed on by ``bhoga statusline``.
    STATUSLINE = "statusline"


class QuotaWindow(msgspec.Struct, kw_only=True):
    """One limit of one provider, normalised to percent used.

    Field names follow the library (``pct_used``, ``resets_at``, ``window_min``, ``updated_at``) so
    harness code written against it keeps working.
    """

    name: str
    pct_used: float = 0.0
    resets_at: datetime | None = None
    window_min: int | None = None
    updated_at: datetime | None = None
    scope: str = "*"
    source: Source = Source.MANUAL
    kind: WindowKind = WindowKind.QUOTA
    #: Raw counts where the source gives them (tokens, requests, USD); ``None`` when it does not.
    limit: float | None = None
    remaining: float | None = None
    #: Set by the daemon when the reading is older than the provider's staleness horizon.
    stale: bool = False
    #: The machine whose daemon took this reading, when it came through shared state; ``None`` for
    #: readings taken here.
    origin: str | None = None

    @property
    def pct_remaining(self) -> float:
        return min(100.0, max(0.0, 100.0 - self.pct_used))

    @property
    def key(self) -> str:
        return window_key(self.name, self.scope)


def window_key(name: str, scope: str) -> str:
    """How windows are keyed in ``ProviderQuota.windows``: ``burst`` or ``weekly/claude-opus``."""
    return name if scope == "*" else f"{name}/{scope}"


class Health(enum.StrEnum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"


class ProviderQuota(msgspec.Struct, kw_only=True):
    """Everything the daemon knows about one provider's quota, as a client sees it."""

    provider_id: str
    model_id: str = "*"
    kind: ProviderKind = ProviderKind.API_KEY
    priority: int = 99
    available: bool = False
    #: Why the provider is (un)available, in words a person can act on.
    reason: str = ""
    status: ProviderStatus = ProviderStatus.UNKNOWN
    #: Remaining fraction of the tightest fresh quota window, 0..1, or -1.0 when unknown.
    quota_pct: float = -1.0
    windows: dict[str, QuotaWindow] = msgspec.field(default_factory=dict)
    cooldown_until: datetime | None = None
    cooldown_reason: str | None = None
    #: When the cooldown that runs now was set (by a 429); ``bhoga cooldown clear`` ends it early.
    cooldown_since: datetime | None = None
    health: Health = Health.HEALTHY
    #: Models this provider is failing for while others answer (an overloaded Opus): model → health.
    model_health: dict[str, Health] = msgspec.field(default_factory=dict)
    #: Per fresh quota window: when it runs out at the current burn rate ("runs out in 5h10m"), or
    #: that it lasts until its reset, with the confidence of that projection.
    outlook: dict[str, str] = msgspec.field(default_factory=dict)
    consecutive_failures: int = 0
    last_error: str | None = None
    n_requests: int = 0
    consumed: int = 0
    last_turn_at: datetime | None = None
    last_poll_at: datetime | None = None
    last_poll_error: str | None = None
    #: The account this provider's quota belongs to (``chatgpt:<account id>``, ``github:<login>``):
    #: providers with the same account share one quota, on this machine or across machines.
    account: str | None = None
    #: Tokens per hour harnesses are sending to this account now, on this machine and (with shared
    #: state) on every other machine of the account: the burn the pace strategy projects with.
    tokens_per_h: float = 0.0

    @property
    def backoff_until(self) -> datetime | None:
        """The library's name for the cooldown end."""
        return self.cooldown_until


class RouterRecommendation(msgspec.Struct, kw_only=True):
    """The library's recommendation record (same fields, same meaning) plus a readable reason."""

    provider_id: str
    model_id: str
    quota_pct: float
    status: ProviderStatus
    hermes_model: str
    priority: int
    reason: str = ""


class Candidate(msgspec.Struct, kw_only=True):
    """One line of a ranking receipt: a provider considered for a model and what became of it."""

    provider_id: str
    priority: int
    eligible: bool
    reason: str
    quota_pct: float = -1.0
    status: ProviderStatus = ProviderStatus.UNKNOWN
    tightest_window: str | None = None
    hermes_model: str = ""
    #: The strategy's headline figure for an eligible candidate, higher is better. ``headroom``: the
    #: remaining fraction. ``pace``: spare pace of the binding window, in multiples of its even pace
    #: (negative: projected to run out before its reset).
    score: float | None = None


class Ranking(msgspec.Struct, kw_only=True):
    model: str
    family: str
    strategy: str
    #: Every provider in the family's list, best first; rejected ones last, each with its reason.
    candidates: list[Candidate]
    recommendation: RouterRecommendation | None


class Turn(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What a harness reports after one model call. Never put prompt text in here."""

    provider: str
    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    status_code: int = 200
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    #: Parsed JSON body of an error response (e.g. Codex's ``usage_limit_reached``), if any.
    error_body: dict[str, Any] | None = None
    session: str | None = None
    agent: str | None = None
    latency_ms: float | None = None
    #: When the call happened; the daemon uses its own clock when omitted.
    at: datetime | None = None
    #: What the provider itself billed for the call, in USD, where it says (OpenRouter's
    #: ``usage.cost``); it wins over the daemon's pricing table.
    cost_usd: float | None = None
    #: The provider's own id for the call (Anthropic's ``request-id`` header), where the harness has
    #: it: the same call found later in a harness's own log is then never counted twice.
    request_id: str | None = None

    #: Names this turn across re-sends (1–128 printable ASCII characters): a repeat within a day
    #: returns the first one's id and stores nothing new. The client library sets one per turn.
    idempotency_key: str | None = None


class TurnSource(enum.StrEnum):
    """Where a ledger entry came from."""

    #: Reported by a harness through the client or the socket.
    CLIENT = "client"
    #: Read from Claude Code's transcripts (``~/.claude/projects/**/*.jsonl``).
    CLAUDE_CODE_LOG = "claude-code-log"
    #: Read from the Codex CLI's rollout files (``$CODEX_HOME/sessions/**/rollout-*.jsonl``).
    CODEX_LOG = "codex-log"


class TurnAck(msgspec.Struct, kw_only=True):
    id: int


class StoredTurn(msgspec.Struct, kw_only=True):
    id: int
    at: datetime
    provider: str
    model: str
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    status_code: int
    session: str | None = None
    agent: str | None = None
    #: USD at API prices (for a subscription: the API-equivalent value); ``None`` if unpriced.
    cost_usd: float | None = None
    #: Where the price came from: ``built-in 2026-10: claude-opus-4-5``, ``config: ...``, ``reported ...``.
    pricing: str | None = None
    latency_ms: float | None = None
    #: Charged per token (an API key) rather than drawn from a subscription.
    billed: bool = False
    source: TurnSource = TurnSource.CLIENT
    request_id: str | None = None


# --------------------------------------------------------------------------------------------------
# Method parameters and results
#
# Params Structs omit their defaults when encoded: a request carries only what its caller set, and
# the daemon, decoding into the same Struct, fills in the same defaults.


class HelloParams(msgspec.Struct, kw_only=True):
    # Defaults always sent: a missing ``protocol`` would read as the daemon's own version.
    client: str = ""
    protocol: int = PROTOCOL_VERSION


class Hello(msgspec.Struct, kw_only=True):
    protocol: int
    daemon_version: str
    capabilities: list[str]
    pid: int


class ModelParams(msgspec.Struct, kw_only=True, omit_defaults=True):
    model: str
    #: The agent asking. An agent over its monthly budget is routed away from paid providers.
    agent: str | None = None
    #: The harness session asking (as given to ``record_turn``): it keeps its provider, and so its
    #: prompt cache, unless that provider became ineligible or another is better by a clear margin.
    session: str | None = None


class ProviderFilter(msgspec.Struct, kw_only=True, omit_defaults=True):
    provider: str | None = None


class SetQuotaParams(msgspec.Struct, kw_only=True, omit_defaults=True):
    provider: str
    pct_remaining: float
    weekly_pct: float | None = None
    model: str = "*"
    resets_at: datetime | None = None


class ClearCooldownParams(msgspec.Struct, kw_only=True):
    provider: str
    #: ``*``: the whole provider. A model: only what holds that model back (see ``CooldownCleared``).
    model: str = "*"


class CooldownCleared(msgspec.Struct, kw_only=True):
    """What ``cooldown.clear`` lifted, in words (empty when nothing was running), and the result."""

    provider: str
    model: str
    cleared: list[str]
    quota: ProviderQuota


class ListTurnsParams(msgspec.Struct, kw_only=True, omit_defaults=True):
    after_id: int = 0
    limit: int = 1000
    session: str | None = None
    agent: str | None = None


class UsageGroup(enum.StrEnum):
    PROVIDER = "provider"
    MODEL = "model"
    AGENT = "agent"
    SESSION = "session"
    DAY = "day"
    SOURCE = "source"


class UsageParams(msgspec.Struct, kw_only=True, omit_defaults=True):
    """``usage.summary``: a period (``today``, ``week``, ``month`` — calendar, UTC — ``all``, or a
    rolling ``24h`` / ``7d``) or explicit ``since``/``until``; explicit times win over the period."""

    period: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    group_by: list[UsageGroup] = msgspec.field(default_factory=lambda: [UsageGroup.PROVIDER])


class UsageRow(msgspec.Struct, kw_only=True):
    #: The value of each ``group_by`` field, in order (``None`` where a turn had none: no agent).
    key: list[str | None]
    turns: int = 0
    #: Turns whose status was not a success (429, 5xx, ...).
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    #: API-priced value of every turn (subscriptions at their API-equivalent value).
    cost_usd: float = 0.0
    #: The part charged per token (API keys): money actually spent.
    billed_usd: float = 0.0
    #: Turns no price was found for; their cost is not in the totals.
    unpriced: int = 0


class UsageSummary(msgspec.Struct, kw_only=True):
    since: datetime | None
    until: datetime
    group_by: list[UsageGroup]
    rows: list[UsageRow]
    total: UsageRow
    #: Whole days were read from the daily rollups (which keep totals for pruned turns); partial days
    #: at either end, and any grouping by session, come from the raw turns.
    from_rollups: bool = False


class IngestStatus(msgspec.Struct, kw_only=True):
    """Progress of the passive ingest of harness logs (Claude Code transcripts, Codex rollouts)."""

    #: Which log sources are being watched (``claude-code-log``, ``codex-log``).
    sources: list[str] = msgspec.field(default_factory=list)
    files: int = 0
    #: Bytes of log files not read yet; 0 once the scan has caught up.
    bytes_pending: int = 0
    bytes_read: int = 0
    turns_ingested: int = 0
    duplicates: int = 0
    #: Whether a (first or catch-up) scan is under way.
    scanning: bool = False
    last_scan_at: datetime | None = None
    last_error: str | None = None


class DaemonStatus(msgspec.Struct, kw_only=True):
    daemon_version: str
    protocol: int
    pid: int
    started_at: datetime
    uptime_s: float
    socket: str
    state_dir: str
    config_path: str | None
    connections: int
    subscribers: int
    turns_stored: int
    providers_available: int
    strategy: str
    ingest: IngestStatus | None = None
    #: Shared state across machines; ``None`` when this daemon runs alone (the default).
    shared: SharedStatus | None = None
    #: Set while the daemon refuses work because config.yaml is invalid (socket-activated starts).
    config_error: str | None = None


class SharedStatus(msgspec.Struct, kw_only=True):
    """How this daemon's link to the shared-state server (Valkey/Redis) stands."""

    #: The server, without credentials (``redis://host:6379/0``).
    server: str
    #: This machine's name as other machines see it ("via laptop").
    device: str
    connected: bool
    #: When the server stopped answering; ``None`` while connected.
    unreachable_since: datetime | None = None
    last_error: str | None = None
    #: The server's version, once connected.
    server_version: str | None = None
    #: Other machines seen recently: device → its last heartbeat.
    peers: dict[str, datetime] = msgspec.field(default_factory=dict)
    #: How far the server's clock is ahead of ours, in seconds (negative: behind).
    clock_skew_s: float | None = None


class QuotaChanged(msgspec.Struct, kw_only=True):
    """Params of the ``quota.changed`` notification."""

    provider: str
    cause: str
    quota: ProviderQuota


class ReportParams(msgspec.Struct, kw_only=True):
    """``quota.report``: windows a harness read itself (Claude Code's statusline), as they stand now.

    Each window keeps its own ``source`` and ``updated_at``; a window without ``updated_at`` is dated
    by the daemon's clock on arrival.
    """

    provider: str
    windows: list[QuotaWindow]


class AlertKind(enum.StrEnum):
    #: A window's use crossed a configured threshold (80, 95, 100 % by default).
    THRESHOLD = "threshold"
    #: At the current burn rate the window runs out before it resets.
    PROJECTED_EXHAUSTION = "projected_exhaustion"
    COOLDOWN_START = "cooldown_start"
    COOLDOWN_END = "cooldown_end"
    WINDOW_RESET = "window_reset"
    #: A provider that was available became unavailable (expired login, refused credentials).
    UNAVAILABLE = "unavailable"


class Alert(msgspec.Struct, kw_only=True):
    """One alert, as pushed (``quota.alert``), handed to hooks and listed by ``alerts.history``."""

    id: int = 0
    kind: AlertKind
    provider: str
    at: datetime
    #: The window's key (``burst``, ``weekly/opus``); ``None`` for provider-wide alerts.
    window: str | None = None
    pct_used: float | None = None
    threshold: float | None = None
    resets_at: datetime | None = None
    #: One sentence a person can read in a notification.
    message: str = ""


class AlertHistoryParams(msgspec.Struct, kw_only=True):
    limit: int = 100
    provider: str | None = None


class Subscribed(msgspec.Struct, kw_only=True):
    subscribed: bool
    events: list[str]


class Lagged(msgspec.Struct, kw_only=True):
    """Params of the ``events.lagged`` notification."""

    hint: str = ""


# --------------------------------------------------------------------------------------------------
# JSON-RPC envelopes


class Request(msgspec.Struct, kw_only=True):
    """An outgoing request or notification (no ``id`` member at all means a notification).

    No ``omit_defaults`` here: it would drop ``"jsonrpc": "2.0"``. UNSET members are omitted anyway.
    """

    jsonrpc: Literal["2.0"] = "2.0"
    method: str
    params: Any = msgspec.UNSET
    id: int | str | msgspec.UnsetType | None = msgspec.UNSET


class IncomingRequest(msgspec.Struct, kw_only=True):
    """A request as the daemon decodes it; ``params`` stays raw until the method is known."""

    jsonrpc: Literal["2.0"]
    method: str
    params: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    id: int | str | msgspec.UnsetType | None = msgspec.UNSET


class ErrorObject(msgspec.Struct, kw_only=True, omit_defaults=True):
    code: int
    message: str
    data: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET


class Response(msgspec.Struct, kw_only=True):
    """A reply as a client decodes it: exactly one of ``result`` and ``error`` is set."""

    jsonrpc: Literal["2.0"]
    id: int | str | None = None
    result: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    error: ErrorObject | msgspec.UnsetType = msgspec.UNSET
    # A notification pushed by the server on a subscribed connection carries a method instead.
    method: str | msgspec.UnsetType = msgspec.UNSET
    params: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
