"""structlog configuration: readable on a terminal, JSON lines everywhere else (journald, launchd files).

Tracebacks are rendered without frame locals: a local variable may hold a token.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import msgspec
import structlog

_encode = msgspec.json.Encoder(enc_hook=repr).encode


def _serialize(obj: Any, **_: Any) -> bytes:
    # JSONRenderer always passes ``default=``; msgspec's encoder takes no keyword arguments.
    return _encode(obj)


def configure(level: str = "info", json: bool | None = None) -> None:
    if json is None:
        json = not sys.stderr.isatty()
    renderer: Any = (
        structlog.processors.JSONRenderer(serializer=_serialize) if json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            )
            if json
            else structlog.dev.set_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.BytesLoggerFactory(sys.stderr.buffer)
        if json
        else structlog.WriteLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
