"""Newline-delimited JSON-RPC framing, sans I/O.

Compact JSON never contains a raw newline (msgspec escapes it in strings), so one message per line is
safe, survives garbage (the next newline resynchronises) and can be typed by hand into socat.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from bhoga.protocol import MAX_JSON_DEPTH, ErrorObject, Request, Response

_encoder = msgspec.json.Encoder()
_response_decoder = msgspec.json.Decoder(Response)


class LineTooLong(Exception):
    """A line grew past the limit before its newline arrived."""


class LineReader:
    """Splits a byte stream into lines without ever holding more than ``max_line`` of a partial line."""

    __slots__ = ("_buffer", "_max_line")

    def __init__(self, max_line: int) -> None:
        self._buffer = bytearray()
        self._max_line = max_line

    @property
    def partial(self) -> bool:
        """True while part of a line has arrived and its newline has not."""
        return bool(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """Add ``data``; return the complete lines it finished, newlines stripped.

        :raises LineTooLong: when the unfinished line exceeds the limit. Lines completed before it
            in the same chunk are lost with it; the connection is closed after that anyway.
        """
        if not self._buffer and data[-1:] == b"\n":
            # The common case: whole lines arrived at once; no copy into the buffer needed.
            whole = data.split(b"\n")
            whole.pop()
            if any(len(line) > self._max_line for line in whole):
                raise LineTooLong
            return whole
        self._buffer += data
        if b"\n" not in data:
            if len(self._buffer) > self._max_line:
                raise LineTooLong
            return []
        *lines, rest = self._buffer.split(b"\n")
        self._buffer = bytearray(rest)
        if len(rest) > self._max_line or any(len(line) > self._max_line for line in lines):
            raise LineTooLong
        return [bytes(line) for line in lines]


#: One JSON string (escapes included; unterminated at the end of a line too) or one bracket.
_STRING_OR_BRACKET = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[\]{}]', re.DOTALL)


def nesting_exceeds(line: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether arrays and objects in ``line`` nest deeper than ``limit``; brackets in strings do not
    count. Checked before decoding, so hostile depth gets an answer instead of a RecursionError.

    Counting opening brackets (C speed) clears every ordinary request at once; only a line with more
    of them than the limit is scanned token by token.
    """
    if line.count(b"[") + line.count(b"{") <= limit:
        return False
    depth = 0
    for match in _STRING_OR_BRACKET.finditer(line):
        first = line[match.start()]
        if first == 0x22:  # a string: skipped whole
            continue
        if first in (0x5B, 0x7B):
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def valid_utf8(line: bytes) -> bool:
    """Whether ``line`` is UTF-8 throughout; decoders only check the strings they keep, not what
    they skip (unknown fields, params held raw), so this is checked once for the whole line."""
    if line.isascii():
        return True
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def encode(value: Any) -> bytes:
    return _encoder.encode(value)


def request_line(method: str, params: Any, request_id: int | str | msgspec.UnsetType | None) -> bytes:
    """One request (or, with ``request_id`` UNSET, one notification) as a wire line."""
    return _encoder.encode(Request(method=method, params=params, id=request_id)) + b"\n"


def result_line(request_id: int | str | None, result_json: bytes) -> bytes:
    """A success response around an already-encoded result (saves a decode/encode round)."""
    return b'{"jsonrpc":"2.0","id":' + _encoder.encode(request_id) + b',"result":' + result_json + b"}\n"


def error_line(request_id: int | str | None, error: ErrorObject) -> bytes:
    return (
        b'{"jsonrpc":"2.0","id":'
        + _encoder.encode(request_id)
        + b',"error":'
        + _encoder.encode(error)
        + b"}\n"
    )


def notification_line(method: str, params: Any) -> bytes:
    return _encoder.encode(Request(method=method, params=params)) + b"\n"


def decode_response(line: bytes) -> Response:
    """Decode one reply line; ``msgspec.DecodeError`` when it is not a JSON-RPC response."""
    return _response_decoder.decode(line)
