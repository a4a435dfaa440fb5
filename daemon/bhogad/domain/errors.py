"""The domain's own errors: what went wrong in the daemon's terms, with no wire codes.

The RPC layer (``bhogad.rpc.errors``) maps each class to a JSON-RPC code in one place. ``kind`` is
the stable machine-readable name clients branch on (``data.kind`` on the wire); ``data`` holds extra
fields worth returning (``field``, ``known``), never a secret or prompt text.
"""

from __future__ import annotations

from typing import ClassVar


class DomainError(Exception):
    """Base of every error the state owner raises on purpose."""

    #: The default ``kind`` of this class; an instance may carry a more specific one.
    default_kind: ClassVar[str] = "failed"

    def __init__(self, message: str, *, kind: str | None = None, **data: object) -> None:
        super().__init__(message)
        self.kind = kind or self.default_kind
        self.data = data


class InvalidInput(DomainError):
    """Arguments that are well-formed but wrong for the operation.

    ``InvalidInput(kind, message, **data)`` keeps the older call shape, so a specific kind
    (``invalid_model``, ``invalid_provider``) reads first as it does in every reply.
    """

    default_kind = "invalid_params"

    def __init__(self, kind: str, message: str, **data: object) -> None:
        super().__init__(message, kind=kind, **data)


class OutOfRange(InvalidInput):
    """A number or time outside the range the operation accepts; ``field`` names it."""

    def __init__(self, field: str, message: str, **data: object) -> None:
        super().__init__("out_of_range", message, field=field, **data)


class UnknownProvider(InvalidInput):
    """A provider id that is neither configured nor known; ``known`` lists the configured ones."""

    def __init__(self, pid: str, known: list[str]) -> None:
        super().__init__(
            "unknown_provider",
            f"unknown provider {pid!r}; known: {', '.join(known)} "
            "(add others under `providers:` in config.yaml)",
            known=known,
        )


class BadPeriod(InvalidInput):
    """A usage period that cannot be resolved (unknown name, or empty)."""

    def __init__(self, message: str) -> None:
        super().__init__("bad_period", message, field="period")


class StorageFailed(DomainError):
    """The store could not make a change durable; nothing was acknowledged."""

    default_kind = "storage_failed"
