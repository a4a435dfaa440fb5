"""The method table: each JSON-RPC method's params type and its (thin) handler."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from bhoga.protocol import (
    PROTOCOL_VERSION,
    QUOTA_ALERT,
    QUOTA_CHANGED,
    Alert,
    AlertHistoryParams,
    ClearCooldownParams,
    CooldownCleared,
    DaemonStatus,
    ErrorCode,
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
    UsageParams,
    UsageSummary,
)
from bhogad import __version__
from bhogad.domain.errors import OutOfRange
from bhogad.domain.keeper import QuotaKeeper, durable
from bhogad.observability.metrics import render
from bhogad.rpc.clients import Clients
from bhogad.rpc.dispatch import Call, MethodSpec, RpcError
from bhogad.storage import harness

Refresh = Callable[[str | None], Awaitable[list[ProviderQuota]]]


@dataclass(frozen=True)
class Endpoint:
    """Where this daemon serves and what it read, for ``daemon.status``."""

    socket_path: Path
    config_path: Path | None


def metrics_text(daemon: QuotaKeeper, clients: Clients) -> str:
    """The Prometheus exposition: ``daemon.metrics`` over RPC and ``GET /metrics`` over HTTP."""
    return render(
        daemon.metrics,
        daemon.quotas(),
        daemon.clock(),
        version=__version__,
        started_at=daemon.started_at,
        connections=clients.connection_count,
        subscribers=len(clients),
    )


def build(
    daemon: QuotaKeeper, clients: Clients, endpoint: Endpoint, refresh: Refresh | None = None
) -> dict[str, MethodSpec]:
    """The method table over the state owner and the set of connected clients.

    ``refresh`` runs discovery now (the poller's single-flight refresh); without it, no quota.refresh.
    Handlers that need not wait return their result directly and are answered inline; the others are
    coroutines. Handlers raise the domain's errors (``bhogad.domain.errors``), which the dispatcher
    maps to codes in one place (``bhogad.rpc.errors``); ``RpcError`` only for protocol matters.
    """

    def hello(params: HelloParams, call: Call) -> Hello:
        if params.protocol != PROTOCOL_VERSION:
            raise RpcError(
                ErrorCode.UNSUPPORTED_PROTOCOL,
                f"client speaks protocol {params.protocol}, this bhogad speaks {PROTOCOL_VERSION}; "
                "upgrade the older of the two",
                "unsupported_protocol",
                protocol=PROTOCOL_VERSION,
            )
        return Hello(
            protocol=PROTOCOL_VERSION, daemon_version=__version__, capabilities=sorted(table), pid=os.getpid()
        )

    def status(_: None, call: Call) -> DaemonStatus:
        now = daemon.clock()
        return DaemonStatus(
            daemon_version=__version__,
            protocol=PROTOCOL_VERSION,
            pid=os.getpid(),
            started_at=daemon.started_at,
            uptime_s=(now - daemon.started_at).total_seconds(),
            socket=str(endpoint.socket_path),
            state_dir=str(daemon.state_dir),
            config_path=str(endpoint.config_path) if endpoint.config_path else None,
            connections=clients.connection_count,
            subscribers=len(clients),
            turns_stored=daemon.turns_stored - daemon.store.twins_dropped,
            providers_available=sum(q.available for q in daemon.quotas()),
            strategy=daemon.cfg.routing.strategy,
            shared=daemon.shared.status() if daemon.shared is not None else None,
            ingest=daemon.ingest_status,
        )

    def best_for(params: ModelParams, call: Call) -> RouterRecommendation | None:
        return daemon.rank(params.model, params.agent, params.session).recommendation

    def rank(params: ModelParams, call: Call) -> Ranking:
        return daemon.rank(params.model, params.agent, params.session)

    def record_turn(turn: Turn, call: Call) -> TurnAck | Awaitable[TurnAck]:
        turn_id, ticket = daemon.record_turn(turn)
        if call.notification:
            return TurnAck(id=turn_id)

        async def stored() -> TurnAck:
            await durable(ticket, turn_id)
            return TurnAck(id=turn_id)

        return stored()

    async def list_turns(params: ListTurnsParams, call: Call) -> list[StoredTurn]:
        return await daemon.list_turns(params)

    async def usage_summary(params: UsageParams, call: Call) -> UsageSummary:
        return await daemon.usage(params)

    async def set_quota(params: SetQuotaParams, call: Call) -> ProviderQuota:
        quota, ticket = daemon.set_quota(params)
        await durable(ticket)
        return quota

    def report_windows(params: ReportParams, call: Call) -> ProviderQuota | Awaitable[ProviderQuota]:
        quota, ticket = daemon.report_windows(params)
        if call.notification:
            return quota  # the statusline does not wait: the reading is in memory at once

        async def stored() -> ProviderQuota:
            await durable(ticket)
            return quota

        return stored()

    async def alert_history(params: AlertHistoryParams, call: Call) -> list[Alert]:
        if not 1 <= params.limit <= 10_000:
            raise OutOfRange("limit", "limit must be 1–10000")
        return await daemon.writer.read(
            lambda: daemon.store.read(lambda conn: harness.list_alerts(conn, params.limit, params.provider))
        )

    async def clear_cooldown(params: ClearCooldownParams, call: Call) -> CooldownCleared:
        cleared, ticket = daemon.clear_cooldown(params, getattr(call.conn, "peer_pid", None))
        await durable(ticket)
        return cleared

    def list_quotas(params: ProviderFilter, call: Call) -> list[ProviderQuota]:
        return daemon.quotas(params.provider)

    def subscribe(_: None, call: Call) -> Subscribed:
        clients.subscribe(call.conn)
        return Subscribed(subscribed=True, events=[QUOTA_CHANGED, QUOTA_ALERT])

    async def refresh_quotas(params: ProviderFilter, call: Call) -> list[ProviderQuota]:
        assert refresh is not None
        if params.provider is not None:
            daemon.provider(params.provider)  # unknown ids get their error before any discovery runs
        return await refresh(params.provider)

    def metrics(_: None, call: Call) -> str:
        return metrics_text(daemon, clients)

    table: dict[str, MethodSpec] = {
        Method.HELLO: MethodSpec(HelloParams, hello),
        Method.STATUS: MethodSpec(None, status),
        Method.METRICS: MethodSpec(None, metrics),
        Method.BEST_FOR: MethodSpec(ModelParams, best_for),
        Method.RANK: MethodSpec(ModelParams, rank),
        Method.RECORD_TURN: MethodSpec(Turn, record_turn),
        Method.LIST_TURNS: MethodSpec(ListTurnsParams, list_turns),
        Method.USAGE_SUMMARY: MethodSpec(UsageParams, usage_summary),
        Method.SET_QUOTA: MethodSpec(SetQuotaParams, set_quota),
        Method.LIST_QUOTAS: MethodSpec(ProviderFilter, list_quotas),
        Method.SUBSCRIBE: MethodSpec(None, subscribe),
        Method.REPORT_WINDOWS: MethodSpec(ReportParams, report_windows),
        Method.ALERT_HISTORY: MethodSpec(AlertHistoryParams, alert_history),
        Method.CLEAR_COOLDOWN: MethodSpec(ClearCooldownParams, clear_cooldown),
    }
    if refresh is not None:
        table[Method.REFRESH] = MethodSpec(ProviderFilter, refresh_quotas)
    return table
