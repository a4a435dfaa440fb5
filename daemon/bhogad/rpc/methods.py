"""The method table: each JSON-RPC method's params type and its (thin) handler."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from bhoga.protocol import (
    PROTOCOL_VERSION,
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
from bhogad.domain import usage
from bhogad.domain.keeper import QuotaKeeper
from bhogad.observability.metrics import render
from bhogad.rpc.dispatch import Call, MethodSpec, RpcError
from bhogad.storage.writer import Ticket


async def _durable(ticket: Ticket) -> None:
    await ticket.wait()
    if ticket.error is not None:
        raise RpcError(ErrorCode.APPLICATION, ticket.error, "storage_failed")


Refresh = Callable[[str | None], Awaitable[list[ProviderQuota]]]


def build(daemon: QuotaKeeper, server: Any, refresh: Refresh | None = None) -> dict[str, MethodSpec]:
    """``server`` supplies what only the transport knows: socket path, connection counts, subscribing.

    ``refresh`` runs discovery now (the poller's single-flight refresh); without it, no quota.refresh.
    Handlers that need not wait return their result directly and are answered inline; the others are
    coroutines. Errors are ``RpcError`` (``InvalidInput`` included), mapped to replies by the dispatcher.
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
            socket=str(server.socket_path),
            state_dir=str(daemon.store.path.parent),
            config_path=str(server.config_path) if server.config_path else None,
            connections=server.connection_count,
            subscribers=len(daemon.subscribers),
            turns_stored=daemon.turns_stored,
            providers_available=sum(q.available for q in daemon.quotas()),
            strategy=daemon.cfg.routing.strategy,
            shared=daemon.shared.status() if daemon.shared is not None else None,
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
            await _durable(ticket)
            return TurnAck(id=turn_id)

        return stored()

    async def list_turns(params: ListTurnsParams, call: Call) -> list[StoredTurn]:
        if not 1 <= params.limit <= 10_000:
            raise RpcError(ErrorCode.INVALID_PARAMS, "limit must be 1–10000", "out_of_range", field="limit")
        # Wait for pending writes first, so a caller reads its own acknowledged turns.
        await _durable(daemon.writer.submit())
        return await anyio.to_thread.run_sync(
            daemon.store.list_turns,
            params.after_id,
            params.limit,
            params.session,
            params.agent,
            limiter=daemon.writer.limiter,
        )

    async def usage_summary(params: UsageParams, call: Call) -> UsageSummary:
        try:
            since, until = usage.resolve_period(params, daemon.clock())
        except usage.BadPeriod as exc:
            raise RpcError(ErrorCode.INVALID_PARAMS, str(exc), "bad_period", field="period") from None
        await _durable(daemon.writer.submit())  # a caller's own acknowledged turns are counted
        return await anyio.to_thread.run_sync(
            daemon.store.read,
            lambda conn: usage.summarise(conn, since, until, params.group_by),
            limiter=daemon.writer.limiter,
        )

    async def set_quota(params: SetQuotaParams, call: Call) -> ProviderQuota:
        quota, ticket = daemon.set_quota(params)
        await _durable(ticket)
        return quota

    def list_quotas(params: ProviderFilter, call: Call) -> list[ProviderQuota]:
        return daemon.quotas(params.provider)

    def subscribe(_: None, call: Call) -> Subscribed:
        server.subscribe(call.conn)
        return Subscribed(subscribed=True, events=["quota.changed"])

    async def refresh_quotas(params: ProviderFilter, call: Call) -> list[ProviderQuota]:
        assert refresh is not None
        if params.provider is not None:
            daemon.provider(params.provider)  # unknown ids get their error before any discovery runs
        return await refresh(params.provider)

    def metrics_text(_: None, call: Call) -> str:
        return render(
            daemon.metrics,
            daemon.quotas(),
            daemon.clock(),
            version=__version__,
            started_at=daemon.started_at,
            connections=server.connection_count,
            subscribers=len(daemon.subscribers),
        )

    table: dict[str, MethodSpec] = {
        Method.HELLO: MethodSpec(HelloParams, hello),
        Method.STATUS: MethodSpec(None, status),
        Method.METRICS: MethodSpec(None, metrics_text),
        Method.BEST_FOR: MethodSpec(ModelParams, best_for),
        Method.RANK: MethodSpec(ModelParams, rank),
        Method.RECORD_TURN: MethodSpec(Turn, record_turn),
        Method.LIST_TURNS: MethodSpec(ListTurnsParams, list_turns),
        Method.USAGE_SUMMARY: MethodSpec(UsageParams, usage_summary),
        Method.SET_QUOTA: MethodSpec(SetQuotaParams, set_quota),
        Method.LIST_QUOTAS: MethodSpec(ProviderFilter, list_quotas),
        Method.SUBSCRIBE: MethodSpec(None, subscribe),
    }
    if refresh is not None:
        table[Method.REFRESH] = MethodSpec(ProviderFilter, refresh_quotas)
    return table
