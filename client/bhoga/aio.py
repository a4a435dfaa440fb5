"""``AsyncRouter``: the async twin of ``bhoga.Router`` for asyncio (and anyio-on-asyncio) harnesses.

It uses only asyncio's own streams, so the client still needs no extra dependency. One connection per
router; calls are serialised with a lock, so concurrent tasks may share a router.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
from datetime import datetime
from typing import Any

import msgspec

from bhoga import codec, paths
from bhoga.client import (
    IDEMPOTENT,
    model_params,
    result_of,
    set_quota_params,
    turn_params,
    turns_params,
    usage_params,
)
from bhoga.errors import ClientTimeout, DaemonNotRunning, ProtocolError, RemoteError
from bhoga.protocol import (
    MAX_REPLY_BYTES,
    PROTOCOL_VERSION,
    DaemonStatus,
    Hello,
    Method,
    ProviderQuota,
    QuotaChanged,
    Ranking,
    RouterRecommendation,
    StoredTurn,
    TurnAck,
    UsageSummary,
)


class AsyncRouter:
    def __init__(self, *, socket_path: str | os.PathLike[str] | None = None, timeout: float = 10.0) -> None:
        self.socket_path = paths.socket_path(socket_path)
        self.timeout = timeout
        self._ids = itertools.count(1)
        self._lock = asyncio.Lock()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def _connect(self) -> None:
        try:
            self._reader, self._writer = await asyncio.wait_for(
                asyncio.open_unix_connection(os.fspath(self.socket_path), limit=MAX_REPLY_BYTES + 1),
                self.timeout,
            )
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise DaemonNotRunning(os.fspath(self.socket_path), exc.strerror or "") from None
        except TimeoutError:
            raise ClientTimeout(f"connecting to {self.socket_path} timed out") from None

    async def aclose(self) -> None:
        async with self._lock:
            await self._disconnect()

    async def _disconnect(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def __aenter__(self) -> AsyncRouter:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def call(self, method: str, params: Any = None, result_type: Any = Any) -> Any:
        async with self._lock:
            for attempt in (0, 1):
                sent = False
                try:
                    if self._writer is None:
                        await self._connect()
                    assert self._reader is not None and self._writer is not None
                    request_id = next(self._ids)
                    self._writer.write(
                        codec.request_line(
                            method, params if params is not None else msgspec.UNSET, request_id
                        )
                    )
                    await self._writer.drain()
                    sent = True
                    line = await asyncio.wait_for(self._reader.readline(), self.timeout)
                    if not line:
                        raise EOFError
                except (BrokenPipeError, ConnectionResetError, EOFError) as exc:
                    await self._disconnect()
                    if attempt == 0 and (method in IDEMPOTENT or not sent):
                        continue
                    raise ProtocolError(f"connection to bhogad lost during {method}: {exc!r}") from None
                except TimeoutError:
                    await self._disconnect()
                    raise ClientTimeout(f"bhogad did not answer {method} within {self.timeout}s") from None
                except ValueError as exc:  # StreamReader: line over the limit
                    await self._disconnect()
                    raise ProtocolError(f"reply too long: {exc}") from None
                else:
                    # Outside the try: an InvalidParams reply is a ValueError too, not a long line.
                    return await self._result(line, request_id, result_type)
        raise AssertionError("unreachable")

    async def _result(self, line: bytes, request_id: int, result_type: Any) -> Any:
        try:
            return result_of(line, request_id, result_type)
        except ProtocolError:
            await self._disconnect()  # the stream is out of step: never reuse it
            raise
        except RemoteError as exc:
            if exc.unsolicited:
                await self._disconnect()
            raise

    async def best_for(
        self, model: str, *, agent: str | None = None, session: str | None = None
    ) -> RouterRecommendation | None:
        params = model_params(model, agent, session)
        result: RouterRecommendation | None = await self.call(
            Method.BEST_FOR, params, RouterRecommendation | None
        )
        return result

    async def rank(self, model: str, *, agent: str | None = None, session: str | None = None) -> Ranking:
        result: Ranking = await self.call(Method.RANK, model_params(model, agent, session), Ranking)
        return result

    async def record_turn(
        self,
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
    ) -> int:
        """Report one model call and wait until it is stored; returns the turn's ledger id."""
        params = turn_params(
            pid,
            model,
            input_tokens,
            output_tokens,
            headers,
            status_code,
            cache_read_tokens=cache_read_tokens,
            cache_write_tokens=cache_write_tokens,
            session=session,
            agent=agent,
            latency_ms=latency_ms,
            error_body=error_body,
            at=at,
            cost_usd=cost_usd,
        )
        ack: TurnAck = await self.call(Method.RECORD_TURN, params, TurnAck)
        return ack.id

    async def set_quota(
        self,
        pid: str,
        pct_remaining: float,
        weekly_pct: float | None = None,
        model: str = "*",
        *,
        resets_at: datetime | None = None,
    ) -> ProviderQuota:
        params = set_quota_params(pid, pct_remaining, weekly_pct, model, resets_at)
        result: ProviderQuota = await self.call(Method.SET_QUOTA, params, ProviderQuota)
        return result

    async def quotas(self) -> dict[str, ProviderQuota]:
        result: list[ProviderQuota] = await self.call(Method.LIST_QUOTAS, {}, list[ProviderQuota])
        return {f"{q.provider_id}:{q.model_id}": q for q in result}

    async def refresh(self, provider: str | None = None) -> list[ProviderQuota]:
        params = {"provider": provider} if provider else {}
        result: list[ProviderQuota] = await self.call(Method.REFRESH, params, list[ProviderQuota])
        return result

    async def status(self) -> DaemonStatus:
        result: DaemonStatus = await self.call(Method.STATUS, None, DaemonStatus)
        return result

    async def turns(
        self, after_id: int = 0, limit: int = 1000, session: str | None = None, agent: str | None = None
    ) -> list[StoredTurn]:
        params = turns_params(after_id, limit, session, agent)
        result: list[StoredTurn] = await self.call(Method.LIST_TURNS, params, list[StoredTurn])
        return result

    async def usage(
        self,
        period: str | None = "today",
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        group_by: str | list[str] = "provider",
    ) -> UsageSummary:
        params = usage_params(period, since, until, group_by)
        result: UsageSummary = await self.call(Method.USAGE_SUMMARY, params, UsageSummary)
        return result

    async def hello(self) -> Hello:
        result: Hello = await self.call(
            Method.HELLO, {"client": "bhoga.aio", "protocol": PROTOCOL_VERSION}, Hello
        )
        return result


async def subscribe(socket_path: str | os.PathLike[str] | None = None) -> Any:
    """Yield ``QuotaChanged`` events as the daemon pushes them (an async generator on its own connection)."""
    path = os.fspath(paths.socket_path(socket_path))
    try:
        reader, writer = await asyncio.open_unix_connection(path, limit=MAX_REPLY_BYTES + 1)
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        raise DaemonNotRunning(path, exc.strerror or "") from None
    decoder = msgspec.json.Decoder(QuotaChanged)
    try:
        writer.write(codec.request_line(Method.SUBSCRIBE, msgspec.UNSET, 1))
        await writer.drain()
        while line := await reader.readline():
            reply = codec.decode_response(line)
            if reply.method == "quota.changed" and reply.params is not msgspec.UNSET:
                yield decoder.decode(reply.params)
    finally:
        writer.close()
