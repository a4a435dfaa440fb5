"""Property-based: a real ``bhogad`` on its real socket, fed generated frames.

Frames: random bytes, invalid UTF-8 spliced into good requests, deep nesting, every method with
params of the right names and wrong (or extreme) values — huge and negative numbers, NaN and
infinities, far-past and far-future times in every accepted format, headers that set cooldowns — and
mixed batches of all of these, with and without ids. After each example: the daemon is alive, every
reply is a JSON-RPC 2.0 response with a code that fits the frame (never -32603, which would be our
bug), and a separate client's ``router.best_for``, ``usage`` and ``bhoga status`` still work. The
last test restarts the daemon on what the fuzzing left in its store and asks again.

``bhoga status`` runs in-process per example (the real CLI code over the real socket; a Python start
per example would dominate the run) and as the real executable after the restart. Bounded for CI:
``FUZZ_EXAMPLES`` examples (env ``BHOGA_FUZZ_EXAMPLES`` raises it for a longer hunt).
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, event, example, given, settings, strategies as st

from bhoga import Router
from bhoga.cli.main import main as bhoga_main
from bhoga.protocol import (
    MAX_JSON_DEPTH,
    ClearCooldownParams,
    HelloParams,
    ListTurnsParams,
    Method,
    ModelParams,
    ProviderFilter,
    SetQuotaParams,
    Turn,
    UsageParams,
)
from tests.conftest import DaemonProcess

FUZZ_EXAMPLES = int(os.environ.get("BHOGA_FUZZ_EXAMPLES", "200"))

PARAMS: dict[str, type[msgspec.Struct] | None] = {
    Method.HELLO: HelloParams,
    Method.STATUS: None,
    Method.METRICS: None,
    Method.BEST_FOR: ModelParams,
    Method.RANK: ModelParams,
    Method.RECORD_TURN: Turn,
    Method.LIST_TURNS: ListTurnsParams,
    Method.SET_QUOTA: SetQuotaParams,
    Method.LIST_QUOTAS: ProviderFilter,
    Method.REFRESH: ProviderFilter,
    Method.USAGE_SUMMARY: UsageParams,
    Method.SUBSCRIBE: None,
    Method.CLEAR_COOLDOWN: ClearCooldownParams,
}
FIELDS = {m: [f.encode_name for f in msgspec.structs.fields(t)] if t else [] for m, t in PARAMS.items()}
#: Codes a well-framed request to a known method may get. -32603 is never acceptable.
REQUEST_CODES = {-32600, -32602, -32000, -32010}


# -- JSON with literals Python's json cannot write (1e999, -0, NaN as bare words) ------------------


@dataclass(frozen=True)
class Lit:
    text: str


def dump(value: Any) -> str:
    if isinstance(value, Lit):
        return value.text
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{dump(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(dump(v) for v in value) + "]"
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return json.dumps(value)


# -- values ---------------------------------------------------------------------------------------

PROVIDERS = ["claude_code", "openai-codex", "github-copilot", "openrouter", "anthropic_api", "openai_api"]
MODELS = ["claude-opus-4", "gpt-5.5", "anthropic/claude-sonnet-4", "*", "", " "]
EXTREME_INTS = [0, 1, -1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, -(2**63), 2**64, 10**30, -(10**30)]
LITERALS = [Lit(t) for t in ("1e999", "-1e999", "1e-999", "-0", "NaN", "Infinity", "1E400", "0e0")]


def weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """``one_of`` with weights: mostly well-formed input reaches the deep checks, where bugs live."""
    pool = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.integers(0, len(pool) - 1).flatmap(lambda i: pool[i])


ints = weighted(
    (4, st.integers(0, 10**6)), (3, st.sampled_from(EXTREME_INTS)), (1, st.integers(-(2**70), 2**70))
)
#: Mostly numbers JSON can carry (a bare NaN makes the whole line a parse error, which is tested,
#: but would hide everything else in the line if it came often).
floats = weighted(
    (4, st.floats(allow_nan=False, allow_infinity=False)),
    (4, st.sampled_from([0.0, 100.0, 100.0001, -0.0001, 1e308, -1e308, 5e-324, 1e-300])),
    (1, st.sampled_from(LITERALS)),
)
far_dates = st.datetimes(
    min_value=datetime(1, 1, 2),
    max_value=datetime(9999, 12, 30),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=14)), timezone(timedelta(hours=-12))]),
)
near_dates = st.integers(-(10**9), 10**9).map(lambda s: datetime.now(UTC) + timedelta(seconds=s))
#: The edges of what datetime can hold and of what is plausible, where date arithmetic overflows.
EDGE_MOMENTS = [
    datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC),
    datetime(9999, 12, 30, tzinfo=UTC),
    datetime(9999, 12, 31, 10, tzinfo=timezone(timedelta(hours=-12))),
    datetime(1, 1, 1, 14, tzinfo=timezone(timedelta(hours=14))),
    datetime(1, 1, 2, tzinfo=UTC),
    datetime(1970, 1, 1, tzinfo=UTC),
    datetime(2099, 10, 21, 7, 28, tzinfo=UTC),
]
moments = weighted((3, st.sampled_from(EDGE_MOMENTS)), (1, far_dates), (2, near_dates))
#: The one spelling a params time takes (RFC 3339), in its variants: offset, Z, naive with a fraction.
rfc3339 = st.one_of(
    moments.map(lambda d: d.isoformat()),
    moments.map(lambda d: d.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")),
    moments.map(lambda d: d.replace(tzinfo=None).isoformat(timespec="microseconds")),
)
#: Every way a time is spelt on the wire: RFC 3339 (Z, offset, naive, fraction), unix s and ms, HTTP
#: dates, Go durations, seconds from now.
time_texts = st.one_of(
    moments.map(lambda d: d.isoformat()),
    moments.map(lambda d: d.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")),
    moments.map(lambda d: d.replace(tzinfo=None).isoformat(timespec="microseconds")),
    moments.map(lambda d: format_datetime(d.astimezone(UTC), usegmt=True)),
    moments.map(lambda d: str(int(d.timestamp()))),
    moments.map(lambda d: str(int(d.timestamp() * 1000))),
    st.sampled_from(["99999999999", "99999999999999999999", "-1", "0", "1e308", "nan", "inf"]),
    st.sampled_from(["6m0s", "1h2m3.5s", "99999999h", "-5s", "0s", "1.5", "2562047h47m16.854775807s"]),
    st.text(max_size=30),
)
HEADER_NAMES = [
    "retry-after",
    "retry-after-ms",
    "anthropic-ratelimit-unified-reset",
    "anthropic-ratelimit-unified-5h-utilization",
    "anthropic-ratelimit-unified-7d-reset",
    "anthropic-ratelimit-requests-remaining",
    "anthropic-ratelimit-requests-limit",
    "anthropic-ratelimit-requests-reset",
    "anthropic-ratelimit-tokens-reset",
    "x-ratelimit-reset-requests",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-limit-tokens",
    "x-codex-primary-used-percent",
    "x-codex-primary-reset-at",
    "x-codex-primary-window-minutes",
    "x-codex-secondary-reset-after-seconds",
    "x-fuzz-primary-used-percent",
    "X-RateLimit-Reset",
]
header_values = time_texts | ints.map(str) | floats.map(lambda f: f.text if isinstance(f, Lit) else repr(f))
headers = st.dictionaries(st.sampled_from(HEADER_NAMES) | st.text(max_size=40), header_values, max_size=8)
texts = weighted((5, st.text(max_size=40)), (1, st.sampled_from(["", " ", "\u0000", "é" * 300, "a" * 5000])))
anything = st.recursive(
    st.none() | st.booleans() | ints | floats | texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=8,
)


INT_FIELDS = {
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "after_id",
    "limit",
    "protocol",
}


def plausible(field: str) -> st.SearchStrategy[Any]:
    """A value of the right type for ``field`` (often extreme), so validation runs deep."""
    if field == "provider":
        return weighted((9, st.sampled_from(PROVIDERS)), (1, texts))
    if field == "model":
        return weighted((8, st.sampled_from(MODELS[:3])), (1, st.sampled_from(MODELS[3:])), (1, texts))
    if field in ("at", "resets_at", "since", "until"):
        return weighted((8, rfc3339), (1, time_texts), (1, ints | floats))
    if field == "headers":
        return headers
    if field == "error_body":
        return (
            st.none()
            | st.fixed_dictionaries(
                {"error": st.fixed_dictionaries({"type": st.just("usage_limit_reached"), "resets_at": ints})}
            )
            | st.dictionaries(st.text(max_size=10), anything, max_size=4)
        )
    if field in ("pct_remaining", "weekly_pct", "cost_usd", "latency_ms"):
        return floats | ints
    if field == "period":
        return st.sampled_from(["today", "week", "month", "all", "24h", "7d", "year", ""]) | texts
    if field == "group_by":
        return st.lists(
            st.sampled_from(["provider", "model", "agent", "session", "day", "bogus"]), max_size=6
        )
    if field in ("agent", "session", "client"):
        return st.none() | texts
    if field == "status_code":
        return weighted((6, st.sampled_from([200, 429, 500, 529, 401, 403, 408, 0, 999])), (1, ints))
    if field in INT_FIELDS:
        return ints  # a float here fails the whole request at the type check, before any bound
    return floats | ints


REQUIRED = {
    m: [f.encode_name for f in msgspec.structs.fields(t) if f.required] if t else []
    for m, t in PARAMS.items()
}


@st.composite
def named_params(draw: st.DrawFn, method: str) -> dict[str, Any]:
    """Every required field and some optional ones, of the right type; sometimes one of them (or an
    unknown extra field) of any type at all."""
    params: dict[str, Any] = {}
    for name in FIELDS.get(method, []):
        if name in REQUIRED[method] or draw(st.booleans()):
            params[name] = draw(plausible(name))
    if params and draw(st.integers(0, 5)) == 0:
        params[draw(st.sampled_from(sorted(params)))] = draw(anything)
    if draw(st.integers(0, 7)) == 0:
        params[draw(st.text(max_size=12))] = draw(anything)
    return params


def params_for(method: str) -> st.SearchStrategy[Any]:
    fields = FIELDS.get(method, [])
    by_position = st.tuples(*(plausible(f) for f in fields)).map(list) if fields else st.just([])
    return weighted(
        (8, named_params(method)),
        (1, by_position),
        (1, st.lists(anything, max_size=len(fields) + 2)),
        (1, anything),
    )


ids = (
    st.integers(-(2**63), 2**63)
    | st.text(max_size=20)
    | st.none()
    | st.sampled_from([Lit("1.5"), Lit("1e999")])
)


@st.composite
def request(draw: st.DrawFn) -> dict[str, Any]:
    # The methods that change state get the most examples: their input is where bugs live.
    rich = [Method.RECORD_TURN] * 4 + [Method.SET_QUOTA] * 2 + [Method.USAGE_SUMMARY, Method.CLEAR_COOLDOWN]
    method = draw(weighted((12, st.sampled_from(list(PARAMS) + rich)), (1, st.text(max_size=30))))
    req: dict[str, Any] = {
        "jsonrpc": draw(weighted((9, st.just("2.0")), (1, st.sampled_from(["1.0", 2, None]))))
    }
    req["method"] = method
    if PARAMS.get(method) is not None or draw(st.integers(0, 3)) == 0:
        req["params"] = draw(params_for(method))
    if draw(st.integers(0, 4)):
        req["id"] = draw(ids)  # else: a notification
    return req


@dataclass
class Frame:
    line: bytes
    #: The one code every reply must have, when the frame decides it (bad UTF-8, deep nesting).
    exact: int | None = None


def _no_newline(data: bytes) -> bytes:
    return data.replace(b"\n", b" ")


@st.composite
def frames(draw: st.DrawFn) -> Frame:
    kind = draw(st.sampled_from(["request"] * 5 + ["batch"] * 2 + ["bytes", "utf8", "deep", "deep"]))
    if kind == "request":
        return Frame(_no_newline(dump(draw(request())).encode()))
    if kind == "batch":
        entries = draw(st.lists(request() | anything, min_size=0, max_size=70))
        return Frame(_no_newline(dump(entries).encode()))
    if kind == "bytes":
        return Frame(_no_newline(draw(st.binary(min_size=1, max_size=300))))
    if kind == "utf8":
        good = _no_newline(dump(draw(request())).encode())
        bad = draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x80"]))
        at = draw(st.integers(0, len(good)))
        return Frame(good[:at] + bad + good[at:], exact=-32700)
    # Just past the bound, and past where the decoder itself would give up (about 1,000).
    depth = draw(
        st.sampled_from([MAX_JSON_DEPTH + 1, 999, 1000, 1001, 3000, 100_000])
        | st.integers(MAX_JSON_DEPTH + 1, 5000)
    )
    opener = draw(st.sampled_from(["[", '{"a":']))
    closer = "]" if opener == "[" else "}"
    inner = "[" * depth + "]" * depth if opener == "[" else opener * depth + "1" + closer * depth
    where = draw(st.sampled_from(["bare", "params", "batch"]))
    line = {
        "bare": inner,
        "params": '{"jsonrpc":"2.0","method":"turns.record","params":{"provider":"x","model":"m",'
        '"error_body":' + inner + '},"id":1}',
        "batch": '[{"jsonrpc":"2.0","method":"daemon.hello","id":1},' + inner + "]",
    }[where]
    return Frame(line.encode(), exact=-32600)


# -- checking replies ---------------------------------------------------------------------------------


def _check_response(obj: Any, frame: Frame) -> None:
    assert isinstance(obj, dict), obj
    assert obj.get("jsonrpc") == "2.0", obj
    assert "id" in obj, obj
    assert ("result" in obj) != ("error" in obj), obj
    event(f"reply: {obj['error']['code'] if 'error' in obj else 'result'}")
    if "error" in obj:
        err = obj["error"]
        assert (
            isinstance(err, dict) and isinstance(err.get("code"), int) and isinstance(err.get("message"), str)
        )
        code = err["code"]
        assert code != -32603, f"internal error for {frame.line[:300]!r}: {err}"
        if frame.exact is not None:
            assert code == frame.exact, (frame.line[:200], err)
        else:
            assert code in REQUEST_CODES | {-32700, -32601}, err


def _check_line(line: bytes, frame: Frame) -> bool:
    """Check one reply line; True when it is the sentinel's reply."""
    assert line.endswith(b"\n"), f"connection closed or cut after {frame.line[:300]!r}: {line!r}"
    obj = json.loads(line)
    if isinstance(obj, dict) and "method" in obj and "id" not in obj:
        assert obj["method"] in ("quota.changed", "events.lagged")  # a subscribed connection
        return False
    if isinstance(obj, dict) and obj.get("id") == "sentinel":
        assert obj.get("result", {}).get("protocol") == 1, obj
        return True
    if isinstance(obj, list):
        assert obj and frame.exact is None, (frame.line[:200], obj)
        for entry in obj:
            _check_response(entry, frame)
    else:
        _check_response(obj, frame)
    return False


SENTINEL = b'{"jsonrpc":"2.0","method":"daemon.hello","id":"sentinel"}\n'


# -- the daemon ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fuzzed() -> Iterator[DaemonProcess]:
    root = Path(tempfile.mkdtemp(prefix="bhg-fz-", dir="/tmp"))
    d = DaemonProcess(root)
    d.start()
    try:
        yield d
    finally:
        if d.proc is not None and d.proc.poll() is None:
            d.kill()
        shutil.rmtree(root, ignore_errors=True)


def _still_serves(d: DaemonProcess, router: Router) -> None:
    assert d.proc is not None and d.proc.poll() is None, d.log_text()[-3000:]
    router.best_for("claude-opus-4")
    router.best_for("gpt-5.5", agent="fuzz")
    router.usage("all", group_by=["provider", "day"])
    out = io.StringIO()
    assert bhoga_main(["--socket", str(d.socket), "status"], out=out) == 0
    assert bhoga_main(["--socket", str(d.socket), "status", "--json"], out=io.StringIO()) == 0


@settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
@given(st.lists(frames(), min_size=1, max_size=4))
# What this suite found, kept as fixed examples that run first every time.
@example(
    sent=[
        Frame(
            b'{"jsonrpc":"2.0","method":"turns.record","params":{"provider":"claude_code",'
            b'"model":"claude-opus-4","at":"9999-12-31T23:59:59+00:00"}}'
        )
    ]
)
@example(
    sent=[
        Frame(
            b'{"jsonrpc":"2.0","method":"usage.summary","params":["today",'
            b'"9999-12-30T00:00:00+00:00","9999-12-31T23:59:59+00:00",[]],"id":0}'
        )
    ]
)
@example(sent=[Frame(b"[" * 1000 + b"]" * 1000, exact=-32600)])
@example(
    sent=[Frame(b'{"jsonrpc":"2.0","method":"turns.list","params":{"after_id":9223372036854775808},"id":1}')]
)
def test_generated_frames_never_break_the_daemon(fuzzed: DaemonProcess, sent: list[Frame]) -> None:
    try:
        _exchange(fuzzed, sent)
    except BaseException:
        # The next example starts from a clean store, so it fails (or not) by its own frames alone:
        # that is what lets hypothesis shrink to the frame that did the harm.
        _reset(fuzzed)
        raise


def _reset(d: DaemonProcess) -> None:
    if d.proc is not None and d.proc.poll() is None:
        d.kill()
    shutil.rmtree(d.state, ignore_errors=True)
    d.start()


def _exchange(d: DaemonProcess, sent: list[Frame]) -> None:
    with (
        socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock,
        Router(socket_path=d.socket) as router,
    ):
        sock.settimeout(30)
        sock.connect(str(d.socket))
        with sock.makefile("rb") as reader:  # closed on failure too: no socket left to the GC
            for frame in sent:
                # One frame, then a sentinel: every line before the sentinel's reply is this frame's.
                sock.sendall(frame.line + b"\n" + SENTINEL)
                while not _check_line(reader.readline(), frame):
                    pass
        _still_serves(d, router)


def test_after_the_fuzzing_a_restart_still_serves(fuzzed: DaemonProcess) -> None:
    fuzzed.restart()
    with fuzzed.router() as router:
        _still_serves(fuzzed, router)
    status = fuzzed.cli("status")
    assert status.returncode == 0 and "Traceback" not in status.stderr, status.stderr
    assert fuzzed.cli("best", "claude-opus-4").returncode in (0, 3)
    assert fuzzed.cli("usage", "--period", "all", "--by", "provider,day").returncode == 0
    assert "handler failed" not in fuzzed.log_text()
