"""JSON-RPC 2.0 dispatch: one line in, at most one line out. Knows nothing about sockets.

Decoding is two-stage: the envelope first (with ``params`` left raw), then the params with the
method's own type, so each error maps to the code the spec gives it: bad JSON -32700, wrong shape
-32600, unknown method -32601, wrong params -32602, our own failure -32603 (details only in the log).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import structlog
from bhoga import codec
from bhoga.protocol import MAX_BATCH, ErrorCode, ErrorObject, IncomingRequest

log = structlog.get_logger("bhogad.rpc")


class Call:
    """What a handler knows about the call besides its params."""

    __slots__ = ("conn", "notification")

    def __init__(self, conn: Any, notification: bool) -> None:
        self.conn = conn
        #: No reply will be sent: a handler need not wait for anything on the caller's behalf.
        self.notification = notification


Handler = Callable[[Any, Call], Awaitable[Any]]


class RpcError(Exception):
    """Raised by handlers for an error reply with a stable ``data.kind``."""

    def __init__(self, code: int, message: str, kind: str, **data: Any) -> None:
        super().__init__(message)
        self.code = code
        self.kind = kind
        self.data = data

    def to_object(self) -> ErrorObject:
        return ErrorObject(code=self.code, message=str(self), data={"kind": self.kind, **self.data})


class MethodSpec:
    __slots__ = ("decoder", "fields", "handler", "params_type")

    def __init__(self, params_type: type[msgspec.Struct] | None, handler: Handler) -> None:
        self.params_type = params_type
        self.handler = handler
        self.decoder = msgspec.json.Decoder(params_type) if params_type is not None else None
        fields = msgspec.structs.fields(params_type) if params_type is not None else ()
        self.fields = tuple(f.encode_name for f in fields)

    def decode_params(self, raw: msgspec.Raw | msgspec.UnsetType) -> Any:
        if self.decoder is None or self.params_type is None:
            return None
        if raw is msgspec.UNSET:
            return self.decoder.decode(b"{}")
        if bytes(raw).lstrip()[:1] == b"[":
            # By-position params, in the order the params Struct declares its fields.
            values = msgspec.json.decode(raw, type=list[Any])
            if len(values) > len(self.fields):
                raise msgspec.ValidationError(
                    f"Expected at most {len(self.fields)} params, got {len(values)}"
                )
            return msgspec.convert(dict(zip(self.fields, values, strict=False)), self.params_type)
        return self.decoder.decode(raw)


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


class Dispatcher:
    def __init__(self, methods: dict[str, MethodSpec]) -> None:
        self.methods = methods

    async def handle_line(self, line: bytes, ctx: Any) -> bytes | None:
        try:
            message = _envelope.decode(line)
        except msgspec.ValidationError as exc:
            return error(_salvage_id(line), ErrorCode.INVALID_REQUEST, f"invalid request: {exc}")
        except msgspec.DecodeError as exc:
            return error(None, ErrorCode.PARSE_ERROR, f"parse error: {exc}")
        if isinstance(message, IncomingRequest):
            return await self._call(message, ctx)
        return await self._batch(message, ctx)

    async def _batch(self, items: list[msgspec.Raw], ctx: Any) -> bytes | None:
        if not items:
            return error(None, ErrorCode.INVALID_REQUEST, "invalid request: empty batch")
        if len(items) > MAX_BATCH:
            return error(None, ErrorCode.INVALID_REQUEST, f"invalid request: batch over {MAX_BATCH} entries")
        replies: list[bytes] = []
        for raw in items:
            try:
                request = _single.decode(raw)
            except msgspec.DecodeError as exc:
                reply: bytes | None = error(
                    _salvage_id(raw), ErrorCode.INVALID_REQUEST, f"invalid request: {exc}"
                )
            else:
                reply = await self._call(request, ctx)
            if reply is not None:
                replies.append(reply.rstrip(b"\n"))
        if not replies:
            return None  # a batch of notifications gets no reply at all
        return b"[" + b",".join(replies) + b"]\n"

    async def _call(self, request: IncomingRequest, ctx: Any) -> bytes | None:
        notification = request.id is msgspec.UNSET
        request_id = None if isinstance(request.id, msgspec.UnsetType) else request.id
        spec = self.methods.get(request.method)
        if spec is None:
            if notification:
                log.warning("unknown method in notification", method=request.method[:64])
                return None
            return error(
                request_id,
                ErrorCode.METHOD_NOT_FOUND,
                f"method not found: {request.method[:64]}",
                "unknown_method",
            )
        try:
            params = spec.decode_params(request.params)
            result = await spec.handler(params, Call(ctx, notification))
        except msgspec.ValidationError as exc:
            reply = error(request_id, ErrorCode.INVALID_PARAMS, f"invalid params: {exc}", "invalid_params")
        except msgspec.DecodeError as exc:
            reply = error(request_id, ErrorCode.INVALID_PARAMS, f"invalid params: {exc}", "invalid_params")
        except RpcError as exc:
            reply = codec.error_line(request_id, exc.to_object())
        except Exception:
            # The client gets an opaque id to quote; the traceback goes to our log only.
            error_id = uuid.uuid4().hex[:12]
            log.exception("handler failed", method=request.method, error_id=error_id)
            reply = codec.error_line(
                request_id,
                ErrorObject(
                    code=ErrorCode.INTERNAL_ERROR,
                    message=f"internal error (error_id {error_id})",
                    data={"kind": "internal", "error_id": error_id},
                ),
            )
        else:
            if notification:
                return None
            return codec.result_line(request_id, codec.encode(result))
        if notification:
            # JSON-RPC forbids replying to a notification; the log keeps the failure visible.
            log.warning(
                "notification failed", method=request.method, error=reply[:200].decode(errors="replace")
            )
            return None
        return reply
