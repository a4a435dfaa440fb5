"""Claude Code transcripts: ``<config dir>/projects/<project>/<session>.jsonl``.

Each assistant line with ``message.usage`` is one API call (``message.model``, ``input_tokens``,
``output_tokens``, ``cache_read_input_tokens``, ``cache_creation_input_tokens``, ``timestamp``,
``sessionId``, ``requestId``, ``costUSD`` in older versions). The same call appears more than once:
streamed messages are written as several lines carrying the usage so far, and resumed or forked
sessions copy earlier messages into a new file. ``message.id`` + ``requestId`` identifies the call;
the store keeps the reading with the most tokens. ``<synthetic>`` messages and API-error entries are
not calls, but "Claude AI usage limit reached|<epoch>" says when the limit lifts.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Final

import msgspec

from bhoga.quota.values import MAX_TOKENS

_LIMIT: Final = re.compile(rb"usage limit reached\|(\d{9,11})")


class _CacheCreation(msgspec.Struct):
    ephemeral_5m_input_tokens: int | None = None
    ephemeral_1h_input_tokens: int | None = None


class _Usage(msgspec.Struct):
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    cache_creation: _CacheCreation | None = None


class _Message(msgspec.Struct):
    id: str | None = None
    model: str | None = None
    usage: _Usage | None = None


class _Line(msgspec.Struct):
    type: str | None = None
    timestamp: datetime | None = None
    sessionId: str | None = None
    requestId: str | None = None
    uuid: str | None = None
    costUSD: float | None = None
    isApiErrorMessage: bool = False
    message: _Message | None = None


class ClaudeCall(msgspec.Struct, kw_only=True, frozen=True):
    dedupe_key: str
    at: datetime
    model: str
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    #: The part of ``cache_write_tokens`` written with the 1-hour TTL (2x input, not 1.25x).
    cache_write_1h_tokens: int = 0
    session: str | None
    request_id: str | None
    cost_usd: float | None


class LimitHit(msgspec.Struct, kw_only=True, frozen=True):
    at: datetime | None
    until: datetime


_decoder = msgspec.json.Decoder(_Line)


def _count(value: int | None) -> int | None:
    if value is None:
        return 0
    return value if 0 <= value <= MAX_TOKENS else None


def parse_line(line: bytes) -> ClaudeCall | LimitHit | None:
    """One transcript line → a call, a limit hit, or None (not a call, or not readable)."""
    if b'"usage"' not in line:
        return None
    try:
        entry = _decoder.decode(line)
    except (msgspec.DecodeError, ValueError):
        return None
    at = entry.timestamp
    if at is not None:
        at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    if entry.isApiErrorMessage:
        hit = _LIMIT.search(line)
        if hit is None:
            return None
        return LimitHit(at=at, until=datetime.fromtimestamp(int(hit[1]), UTC))
    message = entry.message
    if entry.type not in (None, "assistant") or message is None or message.usage is None or at is None:
        return None
    model = (message.model or "").strip()
    if not model or model == "<synthetic>" or len(model) > 200:
        return None
    usage = message.usage
    counts = [
        _count(usage.input_tokens),
        _count(usage.output_tokens),
        _count(usage.cache_read_input_tokens),
        _count(usage.cache_creation_input_tokens),
    ]
    if any(c is None for c in counts):
        return None
    inp, out, cread, cwrite = (c or 0 for c in counts)
    one_hour = 0
    if usage.cache_creation is not None:
        one_hour = min(cwrite, _count(usage.cache_creation.ephemeral_1h_input_tokens) or 0)
    if message.id and entry.requestId:
        key = f"claude:{message.id[:200]}:{entry.requestId[:200]}"
    elif entry.uuid:
        key = f"claude-line:{entry.uuid[:200]}"
    else:
        return None
    cost = entry.costUSD if entry.costUSD is not None and 0.0 <= entry.costUSD < 1e6 else None
    return ClaudeCall(
        dedupe_key=key,
        at=at,
        model=model,
        input_tokens=inp,
        output_tokens=out,
        cache_read_tokens=cread,
        cache_write_tokens=cwrite,
        cache_write_1h_tokens=one_hour,
        session=entry.sessionId[:200] if entry.sessionId else None,
        request_id=entry.requestId[:256] if entry.requestId else None,
        cost_usd=cost,
    )
