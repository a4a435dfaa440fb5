"""JSON-RPC 2.0 dispatch: one line in, at most one line out. Knows nothing about sockets.

Decoding is two-stage: the envelope first (with ``params`` left raw), then the params with the
method's own type, so each error maps to the code the spec gives it: bad JSON -32700, wrong shape
-32600, unknown method -32601, wrong params -32602, our own failure -32603 (details only in the log).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from types import CoroutineType
from typing import Any

import msgspec
import structlog

from bhoga import codec
from bhoga.protocol import MAX_BATCH, MAX_JSON_DEPTH, ErrorCode, ErrorObject, IncomingRequest
from bhogad.domain.errors import DomainError
from bhogad.rpc.errors import RpcError, error_object

__all__ = ["Call", "Dispatcher", "MethodSpec", "RpcError", "error"]

log = structlog.get_logger("bhogad.rpc.dispatch")


class Call:
    """What a handler knows about the call besides its params."""

    __slots__ = ("conn", "notification")

    def __init__(self, conn: Any, notification: bool) -> None:
        self.conn = conn
        #: No reply will be sent: a handler need not wait for anything on the caller's behalf.
        self.notification = notification


#: A handler returns its result, or a coroutine for it when it must wait for something.
Handler = Callable[[Any, Call], Any]


class MethodSpec:
    __slots__ = ("decoder", "fields", "handler", "params_type")

    def __init__(self, params_type: type[msgspec.Struct] | None, handler: Handler) -> None:
        self.params_type = params_type
        self.handler = handler
        # One decode takes params by name (an object) or by position (an array).
        self.decoder = msgspec.json.Decoder(params_type | list[Any]) if params_type is not None else None
        fields = msgspec.structs.fields(params_type) if params_type is not None else ()
        self.fields = tuple(f.encode_name for f in fields)

    def decode_params(self, raw: msgspec.Raw | msgspec.UnsetType) -> Any:
        if self.decoder is None or self.params_type is None:
            return None
        if raw is msgspec.UNSET:
            return self.decoder.decode(b"{}")
        params = self.decoder.decode(raw)
        if type(params) is list:
            # By-position params, in the order the params Struct declares its fields.
            if len(params) > len(self.fields):
                raise msgspec.ValidationError(
                    f"Expected at most {len(self.fields)} params, got {len(params)}"
                )
            return msgspec.convert(dict(zip(self.fields, params, strict=False)), self.params_type)
        return params


_envelope = msgspec.json.Decoder(IncomingRequest | list[msgspec.Raw])
_single = msgspec.json.Decoder(IncomingRequest)


class _IdOnly(msgspec.Struct):
    id: int | str | None = None


_id_only = msgspec.json.Decoder(_IdOnly)


def _salvage_id(raw: bytes) -> int | str | None:
    """The id of a request that is otherwise invalid, when it can be read at all."""
    try:
        return _id_only.decode(raw).id
    except msgspec.DecodeError:
        return None


def error(request_id: int | str | None, code: int, message: str, kind: str | None = None) -> bytes:
    data = {"kind": kind} if kind else msgspec.UNSET
    return codec.error_line(request_id, ErrorObject(code=code, message=message, data=data))


#: What a line turns into: a reply now, nothing (notifications), or a reply later.
Outcome = bytes | None | Awaitable[bytes | None]


class Dispatcher:
    """Answers lines. Methods whose handler returns a plain value are answered inline, with no task
    switch; a handler that returns an awaitable (it waits for the store, the network...) makes the
    outcome awaitable, and the connection keeps later replies behind it so they stay in order.
    """

    def __init__(
        self,
        methods: dict[str, MethodSpec],
        observe: Callable[[str, float, bool], None] | None = None,
    ) -> None:
        self.methods = methods
        #: Told (method, seconds, failed) after every call, for the latency histogram.
        self.observe = observe

    def handle_line(self, line: bytes, ctx: Any) -> Outcome:
        # Both checks cover the whole line once, including what the decoders below skip or keep raw.
        if not codec.valid_utf8(line):
            return error(
                None, ErrorCode.PARSE_ERROR, "parse error: the line is not valid UTF-8", "invalid_utf8"
            )
        if codec.nesting_exceeds(line):
            return error(
                None,
                ErrorCode.INVALID_REQUEST,
                f"invalid request: arrays and objects nested deeper than {MAX_JSON_DEPTH}",
                "too_deep",
            )
        try:
            message = _envelope.decode(line)
        except msgspec.ValidationError as exc:
            return error(_salvage_id(line), ErrorCode.INVALID_REQUEST, f"invalid request: {exc}")
        except msgspec.DecodeError as exc:
            return error(None, ErrorCode.PARSE_ERROR, f"parse error: {exc}")
        if isinstance(message, IncomingRequest):
            return self._call(message, ctx)
        return self._batch(message, ctx)

    def _batch(self, items: list[msgspec.Raw], ctx: Any) -> Outcome:
        if not items:
            return error(None, ErrorCode.INVALID_REQUEST, "invalid request: empty batch")
        if len(items) > MAX_BATCH:
            return error(None, ErrorCode.INVALID_REQUEST, f"invalid request: batch over {MAX_BATCH} entries")
        outcomes: list[Outcome] = []
        for raw in items:
            try:
                request = _single.decode(raw)
            except msgspec.DecodeError as exc:
                outcomes.append(error(_salvage_id(raw), ErrorCode.INVALID_REQUEST, f"invalid request: {exc}"))
            else:
                outcomes.append(self._call(request, ctx))
        if any(isinstance(o, Awaitable) for o in outcomes):
            return _join_batch(outcomes)
        return _batch_reply(outcomes)  # type: ignore[arg-type]

    def _call(self, request: IncomingRequest, ctx: Any) -> Outcome:
        notification = request.id is msgspec.UNSET
        request_id = None if isinstance(request.id, msgspec.UnsetType) else request.id
        method = request.method
        spec = self.methods.get(method)
        if spec is None:
            if notification:
                log.warning("unknown method in notification", method=method[:64])
                return None
            return error(
                request_id, ErrorCode.METHOD_NOT_FOUND, f"method not found: {method[:64]}", "unknown_method"
            )
        started = time.perf_counter()
        try:
            params = spec.decode_params(request.params)
            result = spec.handler(params, Call(ctx, notification))
        except Exception as exc:
            return self._failed(method, request_id, notification, exc, started)
        if type(result) is CoroutineType:
            return self._finish(method, request_id, notification, result, started)
        return self._succeeded(method, request_id, notification, result, started)

    async def _finish(
        self,
        method: str,
        request_id: int | str | None,
        notification: bool,
        pending: Awaitable[Any],
        started: float,
    ) -> bytes | None:
        try:
            result = await pending
        except Exception as exc:
            return self._failed(method, request_id, notification, exc, started)
        return self._succeeded(method, request_id, notification, result, started)

    def _succeeded(
        self, method: str, request_id: int | str | None, notification: bool, result: Any, started: float
    ) -> bytes | None:
        reply = None if notification else codec.result_line(request_id, codec.encode(result))
        if self.observe is not None:
            self.observe(method, time.perf_counter() - started, False)
        return reply

    def _failed(
        self, method: str, request_id: int | str | None, notification: bool, exc: Exception, started: float
    ) -> bytes | None:
        if self.observe is not None:
            self.observe(method, time.perf_counter() - started, True)
        if isinstance(exc, msgspec.DecodeError):  # ValidationError included
            reply = error(request_id, ErrorCode.INVALID_PARAMS, f"invalid params: {exc}", "invalid_params")
        elif isinstance(exc, RpcError | DomainError):
            reply = codec.error_line(request_id, error_object(exc))
        else:
            # The client gets an opaque id to quote; the traceback goes to our log only.
            error_id = uuid.uuid4().hex[:12]
            log.error("handler failed", rpc=method, error_id=error_id, exc_info=exc)
            reply = codec.error_line(
                request_id,
                ErrorObject(
                    code=ErrorCode.INTERNAL_ERROR,
                    message=f"internal error (error_id {error_id})",
                    data={"kind": "internal", "error_id": error_id},
                ),
            )
        if notification:
            # JSON-RPC forbids replying to a notification; the log keeps the failure visible.
            log.warning("notification failed", rpc=method, error=reply[:200].decode(errors="replace"))
            return None
        return reply


def _batch_reply(replies: list[bytes | None]) -> bytes | None:
    parts = [r.rstrip(b"\n") for r in replies if r is not None]
    if not parts:
        return None  # a batch of notifications gets no reply at all
    return b"[" + b",".join(parts) + b"]\n"


async def _join_batch(outcomes: list[Outcome]) -> bytes | None:
    replies = [await o if isinstance(o, Awaitable) else o for o in outcomes]
    return _batch_reply(replies)
