"""The sans-I/O pieces: line framing and JSON-RPC dispatch, without any socket."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings, strategies as st

from bhoga.codec import LineReader, LineTooLong, nesting_exceeds, valid_utf8
from bhogad.domain.errors import BadPeriod, InvalidInput, OutOfRange, StorageFailed, UnknownProvider
from bhogad.rpc.dispatch import Call, Dispatcher, MethodSpec, RpcError


def test_line_reader_joins_split_lines_and_splits_joined_ones() -> None:
    reader = LineReader(100)
    assert reader.feed(b'{"a":') == [] and reader.partial
    assert reader.feed(b'1}\n{"b":2}\n{"c"') == [b'{"a":1}', b'{"b":2}']
    assert reader.partial
    assert reader.feed(b":3}\n") == [b'{"c":3}'] and not reader.partial
    assert reader.feed(b"x\ny\n") == [b"x", b"y"]


@pytest.mark.parametrize("chunks", [[b"x" * 101], [b"x" * 60, b"x" * 60], [b"ok\n" + b"x" * 101 + b"\n"]])
def test_line_reader_refuses_lines_over_the_limit(chunks: list[bytes]) -> None:
    reader = LineReader(100)
    with pytest.raises(LineTooLong):
        for chunk in chunks:
            reader.feed(chunk)


class Echo(msgspec.Struct):
    text: str


def _dispatcher() -> Dispatcher:
    def echo(params: Echo, call: Call) -> str:
        return params.text

    async def slow(params: Echo, call: Call) -> str:
        await asyncio.sleep(0)
        return params.text.upper()

    def refuse(params: None, call: Call) -> None:
        raise RpcError(-32000, "no", "refused", extra=1)

    def crash(params: None, call: Call) -> None:
        raise RuntimeError("secret-token-abc")

    return Dispatcher(
        {
            "echo": MethodSpec(Echo, echo),
            "slow": MethodSpec(Echo, slow),
            "refuse": MethodSpec(None, refuse),
            "crash": MethodSpec(None, crash),
        }
    )


def _run(line: str) -> Any:
    outcome = _dispatcher().handle_line(line.encode(), None)
    if outcome is not None and not isinstance(outcome, bytes):
        outcome = asyncio.run(_await(outcome))
    return None if outcome is None else json.loads(outcome)


async def _await(outcome: Any) -> Any:
    return await outcome


def test_sync_methods_answer_inline_and_async_ones_later() -> None:
    inline = _dispatcher().handle_line(
        b'{"jsonrpc":"2.0","method":"echo","params":{"text":"hi"},"id":1}', None
    )
    assert isinstance(inline, bytes) and json.loads(inline)["result"] == "hi"
    assert _run('{"jsonrpc":"2.0","method":"slow","params":["hi"],"id":2}')["result"] == "HI"


def test_errors_map_to_their_codes_and_internal_details_stay_in_the_log() -> None:
    assert _run('{"jsonrpc":"2.0","method":"refuse","id":1}')["error"] == {
        "code": -32000,
        "message": "no",
        "data": {"kind": "refused", "extra": 1},
    }
    crash = _run('{"jsonrpc":"2.0","method":"crash","id":2}')["error"]
    assert crash["code"] == -32603 and "secret" not in json.dumps(crash)
    assert _run('{"jsonrpc":"2.0","method":"echo","params":{"text":5},"id":3}')["error"]["code"] == -32602
    assert _run('{"jsonrpc":"2.0","method":"echo","params":["a","b"],"id":4}')["error"]["code"] == -32602


def test_batch_mixing_inline_and_async_keeps_every_reply() -> None:
    replies = _run(
        '[{"jsonrpc":"2.0","method":"slow","params":["a"],"id":1},'
        '{"jsonrpc":"2.0","method":"echo","params":["b"],"id":2},'
        '{"jsonrpc":"2.0","method":"echo","params":["c"]}]'
    )
    assert sorted((r["id"], r["result"]) for r in replies) == [(1, "A"), (2, "b")]


@pytest.mark.parametrize(
    ("raised", "code", "data"),
    [
        (OutOfRange("limit", "limit must be 1–10000"), -32602, {"kind": "out_of_range", "field": "limit"}),
        (UnknownProvider("nope", ["a", "b"]), -32602, {"kind": "unknown_provider", "known": ["a", "b"]}),
        (
            InvalidInput("invalid_model", "model must be a non-empty string"),
            -32602,
            {"kind": "invalid_model"},
        ),
        (BadPeriod("unknown period"), -32602, {"kind": "bad_period", "field": "period"}),
        (StorageFailed("storage failed: disk I/O error"), -32000, {"kind": "storage_failed"}),
    ],
)
def test_domain_errors_get_their_wire_code_in_one_place(raised: Exception, code: int, data: Any) -> None:
    """The domain raises its own errors, with no codes; the RPC layer alone decides the reply."""

    def fail(params: None, call: Call) -> None:
        raise raised

    async def fail_later(params: None, call: Call) -> None:
        await asyncio.sleep(0)
        raise raised

    dispatcher = Dispatcher({"fail": MethodSpec(None, fail), "later": MethodSpec(None, fail_later)})
    for method in ("fail", "later"):
        outcome = dispatcher.handle_line(f'{{"jsonrpc":"2.0","method":"{method}","id":7}}'.encode(), None)
        if outcome is not None and not isinstance(outcome, bytes):
            outcome = asyncio.run(_await(outcome))
        assert outcome is not None
        reply = json.loads(outcome)
        assert reply["id"] == 7 and reply["error"]["code"] == code, reply
        assert reply["error"]["data"] == data and reply["error"]["message"] == str(raised)


def _depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    return 0


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab\n\u00e9'),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(alphabet='[]{}"\\x'), inner, max_size=3)
    ),
    max_leaves=60,
)


@settings(max_examples=300, deadline=None)
@given(_json_values, st.integers(min_value=0, max_value=12))
def test_nesting_bound_agrees_with_the_real_depth(value: Any, limit: int) -> None:
    # Brackets inside strings, escaped quotes and backslashes must not fool the scan.
    line = json.dumps(value).encode()
    assert nesting_exceeds(line, limit) == (_depth(value) > limit)


def test_deep_nesting_is_an_invalid_request_not_a_recursion_error() -> None:
    for line in (
        "[" * 1000 + "]" * 1000,
        '{"jsonrpc":"2.0","method":"echo","params":[' + "[" * 5000 + "]" * 5000 + '],"id":1}',
        '[{"jsonrpc":"2.0","method":"echo","params":{"text":"x"},"id":1,"pad":'
        + '{"a":' * 900
        + "1"
        + "}" * 900
        + "}]",
        "[" * 100_000,  # unbalanced too
    ):
        err = _run(line)["error"]
        assert err["code"] == -32600 and err["data"]["kind"] == "too_deep", line[:80]
    # Depth within the bound, even in unknown fields, is still a normal request.
    ok = _run(
        '{"jsonrpc":"2.0","method":"echo","params":{"text":"x"},"id":1,"pad":' + "[" * 20 + "]" * 20 + "}"
    )
    assert ok["result"] == "x"


@pytest.mark.parametrize(
    "line",
    [
        b'{"jsonrpc":"2.0","method":"echo\xff","id":1}',
        b'{"jsonrpc":"2.0","method":"echo","params":{"text":"\xc3\x28"},"id":1}',  # kept as params raw
        b'{"jsonrpc":"2.0","method":"echo","params":{"text":"a"},"id":1,"skipped\xed\xa0\x80":1}',
        b'[{"jsonrpc":"2.0","method":"echo","params":["a"],"id":1,"x":"\xf8\x88\x80\x80\x80"}]',
    ],
)
def test_invalid_utf8_anywhere_is_a_parse_error(line: bytes) -> None:
    outcome = _dispatcher().handle_line(line, None)
    assert isinstance(outcome, bytes)
    err = json.loads(outcome)["error"]
    assert err["code"] == -32700 and err["data"]["kind"] == "invalid_utf8"
    assert valid_utf8("héllo ✓".encode()) and not valid_utf8(b"\x80")
