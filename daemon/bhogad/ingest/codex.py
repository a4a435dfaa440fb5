"""Codex rollouts: ``$CODEX_HOME/sessions/YYYY/MM/DD/rollout-*.jsonl`` (and ``archived_sessions``).

Each line is ``{timestamp, type, payload}``. ``turn_context`` names the model for the token events
that follow; an ``event_msg`` whose ``payload.type`` is ``token_count`` carries ``info.last_token_usage``
(this call: ``input_tokens`` including ``cached_input_tokens``, ``output_tokens`` including
``reasoning_output_tokens``) and ``info.total_token_usage`` (the session's running total).

The per-call figure is what counts, never the running total: forked sessions and sub-agent files
replay their parent's events, totals included, and summing totals is how one tool came to report
twelve times the real spend. So a call is keyed by its timestamp and both figures (a replayed event
has the same key as the original, in whatever file), an event that repeats the previous total is not
a new call, and a forked or sub-agent file's events from before the file began are replays. Older
rollouts without ``last_token_usage`` give the call as the difference of successive totals.

The parser's context (model, session, where replays end, the last total) is carried from one batch
of a file to the next by the scanner and stored with the file's offset.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

import msgspec

from bhoga.quota.values import MAX_TOKENS


class Context(msgspec.Struct, kw_only=True):
    model: str | None = None
    session: str | None = None
    #: Events dated before this are a forked/sub-agent file's copy of its parent's history.
    replay_until: datetime | None = None
    last_total: tuple[int, int, int, int] | None = None


class _Usage(msgspec.Struct):
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    reasoning_output_tokens: int = 0


class _Info(msgspec.Struct):
    last_token_usage: _Usage | None = None
    total_token_usage: _Usage | None = None


class _Payload(msgspec.Struct):
    type: str | None = None
    id: str | None = None
    model: str | None = None
    timestamp: datetime | None = None
    info: _Info | None = None


class _Line(msgspec.Struct):
    timestamp: datetime | None = None
    type: str | None = None
    payload: _Payload | None = None


class CodexCall(msgspec.Struct, kw_only=True, frozen=True):
    dedupe_key: str
    at: datetime
    model: str
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    session: str | None


_decoder = msgspec.json.Decoder(_Line)
#: What a sub-agent or forked session's ``session_meta`` says about its origin.
_FORK_MARKS: Final = (b"thread_spawn", b"forked_from", b"subagent", b"parent_thread")


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _tuple(u: _Usage) -> tuple[int, int, int, int] | None:
    t = (u.input_tokens, u.cached_input_tokens, u.output_tokens, u.reasoning_output_tokens)
    return t if all(0 <= v <= MAX_TOKENS for v in t) else None


def parse_line(line: bytes, ctx: Context) -> CodexCall | None:
    """One rollout line → a call or None; updates ``ctx`` in place."""
    if b'"session_meta"' not in line and b'"turn_context"' not in line and b'"token_count"' not in line:
        return None
    try:
        entry = _decoder.decode(line)
    except (msgspec.DecodeError, ValueError):
        return None
    payload = entry.payload
    if payload is None:
        return None
    if entry.type == "session_meta":
        ctx.session = payload.id[:200] if payload.id else ctx.session
        began = payload.timestamp or entry.timestamp
        if began is not None and any(mark in line for mark in _FORK_MARKS):
            ctx.replay_until = _utc(began)
        return None
    if entry.type == "turn_context":
        if payload.model and len(payload.model) <= 200:
            ctx.model = payload.model.strip()
        return None
    if entry.type != "event_msg" or payload.type != "token_count" or payload.info is None:
        return None
    if entry.timestamp is None:
        return None
    at = _utc(entry.timestamp)
    info = payload.info
    total = _tuple(info.total_token_usage) if info.total_token_usage is not None else None
    if total is not None and total == ctx.last_total:
        return None  # the same total again: a repeated event, not a new call
    previous, ctx.last_total = ctx.last_total, total or ctx.last_total
    if ctx.replay_until is not None and at < ctx.replay_until:
        return None
    if info.last_token_usage is not None:
        last = _tuple(info.last_token_usage)
    elif (
        total is not None
        and previous is not None
        and all(a >= b for a, b in zip(total, previous, strict=True))
    ):
        last = tuple(a - b for a, b in zip(total, previous, strict=True))  # type: ignore[assignment]
    elif total is not None and previous is None:
        last = total
    else:
        last = None
    if last is None or not any(last):
        return None
    inp, cached, out, _reasoning = last
    cached = min(cached, inp)
    key = f"codex:{at.isoformat()}:{':'.join(map(str, last))}:{':'.join(map(str, total or ()))}"
    return CodexCall(
        dedupe_key=key,
        at=at,
        model=ctx.model or "unknown",
        input_tokens=inp - cached,
        output_tokens=out,
        cache_read_tokens=cached,
        session=ctx.session,
    )
