"""One definition per operation: Router and AsyncRouter cannot drift from it or from each other."""

from __future__ import annotations

import inspect
from typing import Any

import msgspec
import pytest
from hypothesis import given, strategies as st

from bhoga import Router, codec, operations as ops
from bhoga.aio import AsyncRouter
from bhoga.protocol import Method, Turn

# What a transport adds to an operation's parameters: only it can decide not to wait for a reply.
TRANSPORT_ONLY = {"record_turn": ["wait"]}


def _public(cls: type) -> dict[str, Any]:
    return {name: member for name, member in vars(cls).items() if not name.startswith("_")}


def _without_self(sig: inspect.Signature) -> list[inspect.Parameter]:
    return list(sig.parameters.values())[1:]


def test_every_method_of_the_protocol_has_one_operation() -> None:
    assert set(ops.OPERATIONS) == {m.value for m in Method}
    for name, op in ops.OPERATIONS.items():
        assert op.method == name


@pytest.mark.parametrize("cls", [Router, AsyncRouter])
def test_each_router_method_has_the_operations_signature(cls: type) -> None:
    for func in ops.API:
        method = getattr(cls, func.__name__)
        want = list(inspect.signature(func).parameters.values())
        got = _without_self(inspect.signature(method))
        extra = [p.name for p in got if p.name not in {w.name for w in want}]
        assert extra == TRANSPORT_ONLY.get(func.__name__, []), func.__name__
        assert [p for p in got if p.name not in extra] == want, func.__name__
        assert inspect.iscoroutinefunction(method) == (cls is AsyncRouter), func.__name__


def test_router_and_async_router_offer_the_same_api() -> None:
    sync, aio = _public(Router), _public(AsyncRouter)
    # ``aclose`` is the asyncio spelling of ``close`` on AsyncRouter; nothing else may differ.
    assert set(sync) == set(aio) - {"aclose"}
    for name, member in sync.items():
        if not callable(member):
            continue
        s, a = inspect.signature(member), inspect.signature(aio[name])
        assert s.parameters == a.parameters, name
        assert inspect.iscoroutinefunction(aio[name]), name
        # Same result type, but awaited: the annotations are written identically.
        assert s.return_annotation == a.return_annotation, name
    assert inspect.signature(Router.__init__) == inspect.signature(AsyncRouter.__init__)


def test_idempotence_is_declared_once() -> None:
    # A turn carries its idempotency key, so only a subscription (a connection's state) is not.
    never_twice = {Method.SUBSCRIBE}
    for method in Method:
        assert ops.is_idempotent(method) == (method not in never_twice)
    assert not ops.is_idempotent("some.future_method")


def test_requests_carry_the_protocols_structs_and_only_what_was_set() -> None:
    call = ops.best_for("claude-opus-4")
    assert isinstance(call.params, msgspec.Struct)
    line = codec.request_line(call.op.method, call.params, 1)
    assert msgspec.json.decode(line) == {
        "jsonrpc": "2.0",
        "method": "router.best_for",
        "params": {"model": "claude-opus-4"},
        "id": 1,
    }
    # The protocol version always travels: a missing one would read as the daemon's own.
    assert msgspec.json.decode(codec.request_line(Method.HELLO, ops.hello().params, 2))["params"] == {
        "client": "bhoga",
        "protocol": 1,
    }


def test_a_free_model_still_reports_its_zero_cost() -> None:
    sent = msgspec.json.decode(codec.encode(ops.record_turn("openrouter", "m", cost_usd=0.0).params))
    key = sent.pop("idempotency_key")
    assert sent == {"provider": "openrouter", "model": "m", "cost_usd": 0.0}
    # Every turn gets a fresh key of its own, made once, so a retry of this call stores it once.
    assert len(key) == 32 and key != ops.record_turn("openrouter", "m").params.idempotency_key


header_names = st.text("abcXYZ-_0", min_size=1, max_size=12)


@given(
    headers=st.dictionaries(
        st.one_of(header_names, st.sampled_from(["Authorization", "authorization", "AUTHORIZATION"])),
        st.one_of(st.none(), st.integers(), st.text(max_size=20)),
        max_size=8,
    )
)
def test_turn_headers_are_plain_strings_and_never_a_credential(headers: dict[str, Any]) -> None:
    turn = ops.record_turn("anthropic_api", "claude-opus-4", headers=headers).params
    assert isinstance(turn, Turn)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in turn.headers.items())
    assert not any(k.lower() == "authorization" for k in turn.headers)
    meant = {k: str(v) for k, v in headers.items() if v is not None and k.lower() != "authorization"}
    assert turn.headers == meant
    # What the daemon decodes is what was meant.
    assert msgspec.json.decode(codec.encode(turn), type=Turn) == turn
