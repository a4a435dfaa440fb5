"""Every RPC operation, defined once and without I/O: its method, its params Struct, its result type.

``Router`` (blocking) and ``AsyncRouter`` (asyncio) are transports over these definitions: each of
their public methods is one line that builds a ``Call`` here and runs it. What a call sends (the
protocol's own params Struct), how its reply is decoded, what is done to the result afterwards
(``quotas`` keys it, ``record_turn`` returns the id) and whether it may be retried after a reconnect
live here, so the two clients cannot disagree. ``tests/unit/test_operations.py`` holds their public
signatures to these functions' signatures.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Generic, TypeVar

import msgspec

from bhoga.protocol import (
    PROTOCOL_VERSION,
    Alert,
    AlertHistoryParams,
    ClearCooldownParams,
    CooldownCleared,
    DaemonStatus,
    Hello,
    HelloParams,
    ListTurnsParams,
    Method,
    ModelParams,
    ProviderFilter,
    ProviderQuota,
    Ranking,
    ReportParams,
    RouterRecommendation,
    SetQuotaParams,
    StoredTurn,
    Subscribed,
    Turn,
    TurnAck,
    UsageGroup,
    UsageParams,
    UsageSummary,
)

P = TypeVar("P")
W = TypeVar("W")
R = TypeVar("R")


class Operation(Generic[P, W]):
    """One JSON-RPC method: what it takes (``P``) and what it answers on the wire (``W``)."""

    __slots__ = ("idempotent", "method", "params_type", "result_type")

    def __init__(self, method: str, params_type: Any, result_type: Any, *, idempotent: bool) -> None:
        self.method = method
        self.params_type = params_type
        #: A type form msgspec decodes the reply's ``result`` into (``X | None`` and ``list[X]`` too).
        self.result_type = result_type
        #: Changes nothing, or sets the same value again: safe to repeat after a reconnect.
        self.idempotent = idempotent

    def __repr__(self) -> str:
        return f"Operation({self.method!r})"


def _same(value: Any) -> Any:
    return value


class Call(Generic[R]):
    """One request ready to send: an operation, its params, and what to make of its result."""

    __slots__ = ("finish", "op", "params")

    def __init__(self, op: Operation[Any, Any], params: Any, finish: Callable[[Any], R] = _same) -> None:
        self.op = op
        #: A params Struct, or ``msgspec.UNSET`` for a method without params.
        self.params = params
        self.finish = finish


HELLO: Operation[HelloParams, Hello] = Operation(Method.HELLO, HelloParams, Hello, idempotent=True)
STATUS: Operation[None, DaemonStatus] = Operation(Method.STATUS, None, DaemonStatus, idempotent=True)
METRICS: Operation[None, str] = Operation(Method.METRICS, None, str, idempotent=True)
# Repeating a reload re-reads the same file: harmless.
RELOAD: Operation[None, DaemonStatus] = Operation(Method.RELOAD, None, DaemonStatus, idempotent=True)
BEST_FOR: Operation[ModelParams, RouterRecommendation | None] = Operation(
    Method.BEST_FOR, ModelParams, RouterRecommendation | None, idempotent=True
)
RANK: Operation[ModelParams, Ranking] = Operation(Method.RANK, ModelParams, Ranking, idempotent=True)
# Idempotent: every turn carries its idempotency key (``record_turn``), so a re-send stores nothing twice.
RECORD_TURN: Operation[Turn, TurnAck] = Operation(Method.RECORD_TURN, Turn, TurnAck, idempotent=True)
LIST_TURNS: Operation[ListTurnsParams, list[StoredTurn]] = Operation(
    Method.LIST_TURNS, ListTurnsParams, list[StoredTurn], idempotent=True
)
SET_QUOTA: Operation[SetQuotaParams, ProviderQuota] = Operation(
    Method.SET_QUOTA, SetQuotaParams, ProviderQuota, idempotent=True
)
LIST_QUOTAS: Operation[ProviderFilter, list[ProviderQuota]] = Operation(
    Method.LIST_QUOTAS, ProviderFilter, list[ProviderQuota], idempotent=True
)
REFRESH: Operation[ProviderFilter, list[ProviderQuota]] = Operation(
    Method.REFRESH, ProviderFilter, list[ProviderQuota], idempotent=True
)
USAGE_SUMMARY: Operation[UsageParams, UsageSummary] = Operation(
    Method.USAGE_SUMMARY, UsageParams, UsageSummary, idempotent=True
)
# Idempotent: clearing what is already clear changes nothing.
CLEAR_COOLDOWN: Operation[ClearCooldownParams, CooldownCleared] = Operation(
    Method.CLEAR_COOLDOWN, ClearCooldownParams, CooldownCleared, idempotent=True
)
# Idempotent: the same reading again is merged to the same windows (newest wins).
REPORT_WINDOWS: Operation[ReportParams, ProviderQuota] = Operation(
    Method.REPORT_WINDOWS, ReportParams, ProviderQuota, idempotent=True
)
ALERT_HISTORY: Operation[AlertHistoryParams, list[Alert]] = Operation(
    Method.ALERT_HISTORY, AlertHistoryParams, list[Alert], idempotent=True
)
# Not idempotent in effect: a subscription lives on the connection that asked for it.
SUBSCRIBE: Operation[None, Subscribed] = Operation(Method.SUBSCRIBE, None, Subscribed, idempotent=False)

#: Every operation by method name: the client's whole view of the protocol's methods.
OPERATIONS: Mapping[str, Operation[Any, Any]] = {
    str(op.method): op
    for op in (
        HELLO,
        STATUS,
        METRICS,
        RELOAD,
        BEST_FOR,
        RANK,
        RECORD_TURN,
        LIST_TURNS,
        SET_QUOTA,
        LIST_QUOTAS,
        REFRESH,
        USAGE_SUMMARY,
        CLEAR_COOLDOWN,
        REPORT_WINDOWS,
        ALERT_HISTORY,
        SUBSCRIBE,
    )
}


def is_idempotent(method: str) -> bool:
    """Whether a request may be repeated after a reconnect; unknown methods (``bhoga call``) may not."""
    op = OPERATIONS.get(method)
    return op is not None and op.idempotent


def raw(method: str, params: Any = None, result_type: Any = Any) -> Call[Any]:
    """Any method by name, params as given (``bhoga call``, tools ahead of this client)."""
    op: Operation[Any, Any] = Operation(method, None, result_type, idempotent=is_idempotent(method))
    return Call(op, msgspec.UNSET if params is None else params)


# --------------------------------------------------------------------------------------------------
# The library's API: one function per public Router/AsyncRouter method, same name, same signature.


def best_for(
    model: str, *, agent: str | None = None, session: str | None = None
) -> Call[RouterRecommendation | None]:
    """The provider with the most usable quota for ``model`` now, or ``None`` if none can serve it.

    With ``agent``, an agent over its monthly budget is not sent to paid (API-key) providers.
    With ``session``, the session keeps its provider (and its prompt cache) unless it became
    ineligible or another is better by a clear margin; the reason says which.
    """
    return Call(BEST_FOR, ModelParams(model=model, agent=agent, session=session))


def rank(model: str, *, agent: str | None = None, session: str | None = None) -> Call[Ranking]:
    """Every candidate for ``model``, best first, each with the reason it was chosen or rejected."""
    return Call(RANK, ModelParams(model=model, agent=agent, session=session))


def clean_headers(headers: Mapping[str, Any] | None) -> dict[str, str]:
    """Only header names and values travel, as plain strings, and never ``Authorization``.

    Harnesses pass whatever their HTTP library has (httpx, requests, dicts with odd casing or non-str
    values); the daemon wants plain strings.
    """
    if not headers:
        return {}
    items = dict(headers).items()
    return {str(k): str(v) for k, v in items if v is not None and str(k).lower() != "authorization"}


def _turn_id(ack: TurnAck) -> int:
    return ack.id


def record_turn(
    pid: str,
    model: str,
    input_tokens: int = 0,
    output_tokens: int = 0,
    headers: dict[str, str] | None = None,
    status_code: int = 200,
    *,
    cache_read_tokens: int = 0,
    cache_write_tokens: int = 0,
    session: str | None = None,
    agent: str | None = None,
    latency_ms: float | None = None,
    error_body: dict[str, Any] | None = None,
    at: datetime | None = None,
    cost_usd: float | None = None,
    idempotency_key: str | None = None,
) -> Call[int]:
    """Report one model call; the result is the stored turn's ledger id.

    Every turn carries an idempotency key (a random one unless the caller has its own, such as a
    request id), made once here, so a re-send after a lost acknowledgement returns the first id
    instead of storing the turn twice.

    The transports add ``wait=False``: without it they send the turn as a notification and return
    ``None`` at once (a daemon that is not running counts it in ``dropped_turns``).
    """
    turn = Turn(
        provider=pid,
        model=model,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_tokens=cache_read_tokens,
        cache_write_tokens=cache_write_tokens,
        status_code=status_code,
        headers=clean_headers(headers),
        error_body=error_body,
        session=session,
        agent=agent,
        latency_ms=latency_ms,
        at=at,
        cost_usd=cost_usd,
        idempotency_key=idempotency_key or os.urandom(16).hex(),
    )
    return Call(RECORD_TURN, turn, _turn_id)


def set_quota(
    pid: str,
    pct_remaining: float,
    weekly_pct: float | None = None,
    model: str = "*",
    *,
    resets_at: datetime | None = None,
) -> Call[ProviderQuota]:
    """Tell the daemon a quota by hand; it holds until a newer reading of the same window arrives.

    An out-of-range percentage or an unknown provider is refused with ``InvalidParams`` (a ``ValueError``).
    """
    params = SetQuotaParams(
        provider=pid, pct_remaining=pct_remaining, weekly_pct=weekly_pct, model=model, resets_at=resets_at
    )
    return Call(SET_QUOTA, params)


def _keyed(found: list[ProviderQuota]) -> dict[str, ProviderQuota]:
    return {f"{q.provider_id}:{q.model_id}": q for q in found}


def quotas() -> Call[dict[str, ProviderQuota]]:
    """Every provider's quota, keyed ``"<pid>:*"`` as the library keyed them."""
    return Call(LIST_QUOTAS, ProviderFilter(), _keyed)


def refresh(provider: str | None = None) -> Call[list[ProviderQuota]]:
    """Run discovery now (joining a poll already in flight) and return the fresh quotas."""
    return Call(REFRESH, ProviderFilter(provider=provider or None))


def hello() -> Call[Hello]:
    """The daemon's version, protocol and capabilities; refused if the protocols differ."""
    return Call(HELLO, HelloParams(client="bhoga", protocol=PROTOCOL_VERSION))


def status() -> Call[DaemonStatus]:
    """The daemon's own status: version, pid, uptime, socket, state, connections, turns stored."""
    return Call(STATUS, msgspec.UNSET)


def metrics() -> Call[str]:
    """The daemon's metrics in Prometheus text format."""
    return Call(METRICS, msgspec.UNSET)


def reload() -> Call[DaemonStatus]:
    """Have the daemon re-read config.yaml; its status once the new config is in use, or the error
    (``config_error``) that kept the running one."""
    return Call(RELOAD, msgspec.UNSET)


def turns(
    after_id: int = 0, limit: int = 1000, session: str | None = None, agent: str | None = None
) -> Call[list[StoredTurn]]:
    """Stored turns from the ledger, oldest first, after ``after_id``."""
    return Call(LIST_TURNS, ListTurnsParams(after_id=after_id, limit=limit, session=session, agent=agent))


def usage(
    period: str | None = "today",
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    group_by: str | list[str] = "provider",
) -> Call[UsageSummary]:
    """Spend and tokens from the ledger: ``period`` is ``today``, ``week``, ``month`` (calendar,
    UTC), ``all`` or rolling ``24h``/``7d``; ``since``/``until`` override it. ``group_by`` is any of
    ``provider``, ``model``, ``agent``, ``session``, ``day``."""
    groups = [group_by] if isinstance(group_by, str) else list(group_by)
    try:
        group_list = [UsageGroup(g) for g in groups]
    except ValueError:
        # The daemon owns the message for a bad group; send the names as given and let it answer.
        return Call(
            USAGE_SUMMARY,
            {"period": period, "since": since, "until": until, "group_by": groups},
        )
    return Call(USAGE_SUMMARY, UsageParams(period=period, since=since, until=until, group_by=group_list))


#: What Router and AsyncRouter must each offer, by name and with the same signature (plus ``wait``
#: on ``record_turn``, which only a transport can honour).
API: tuple[Callable[..., Call[Any]], ...] = (
    best_for,
    rank,
    record_turn,
    set_quota,
    quotas,
    refresh,
    hello,
    status,
    metrics,
    reload,
    turns,
    usage,
)
