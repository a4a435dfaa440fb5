"""Errors at the RPC boundary: the one place a domain error becomes a JSON-RPC code.

Handlers raise the domain's own errors (``bhogad.domain.errors``) or, for what only the protocol
knows (an unsupported protocol version), an :class:`RpcError`. The dispatcher turns both into error
objects with :func:`error_object`; ``data.kind`` is the domain's stable name either way.
"""

from __future__ import annotations

from typing import Any, Final

from bhoga.protocol import ErrorCode, ErrorObject
from bhogad.domain.errors import DomainError, InvalidInput, StorageFailed


class RpcError(Exception):
    """An error reply decided by the RPC layer itself, with its code and a stable ``data.kind``."""

    def __init__(self, code: int, message: str, kind: str, **data: Any) -> None:
        super().__init__(message)
        self.code = code
        self.kind = kind
        self.data = data

    def to_object(self) -> ErrorObject:
        return ErrorObject(code=self.code, message=str(self), data={"kind": self.kind, **self.data})


#: Domain error class → JSON-RPC code; the first class in this order that matches wins.
CODES: Final[tuple[tuple[type[DomainError], ErrorCode], ...]] = (
    (InvalidInput, ErrorCode.INVALID_PARAMS),
    (StorageFailed, ErrorCode.APPLICATION),
)


def code_of(exc: DomainError) -> ErrorCode:
    for cls, code in CODES:
        if isinstance(exc, cls):
            return code
    return ErrorCode.APPLICATION


def error_object(exc: RpcError | DomainError) -> ErrorObject:
    if isinstance(exc, RpcError):
        return exc.to_object()
    return ErrorObject(code=code_of(exc), message=str(exc), data={"kind": exc.kind, **exc.data})
