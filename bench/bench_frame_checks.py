"""What the per-line guards cost: the UTF-8 check and the nesting bound, beside the dispatch of the
same line (decode, handler, encode) in the same run, as a ratio.

Every line the daemon reads passes both guards before it is decoded, so their cost on ordinary
requests must be a small fraction of answering them; on hostile lines (a megabyte of brackets) it is
what the guard saves us from, and it is printed beside the time msgspec needs to refuse the same
line, for scale.

Run: ``.venv/bin/python bench/bench_frame_checks.py [--seconds 1]``
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from collections.abc import Callable
from typing import Any

import msgspec

from bhoga import codec
from bhoga.protocol import IncomingRequest
from bhogad.rpc.dispatch import Call, Dispatcher, MethodSpec


class Model(msgspec.Struct):
    model: str
    agent: str | None = None


def _dispatcher() -> Dispatcher:
    def best_for(params: Model, call: Call) -> dict[str, Any]:
        return {"provider_id": "claude_code", "model_id": params.model, "quota_pct": 0.5}

    return Dispatcher(
        {"router.best_for": MethodSpec(Model, best_for), "turns.record": MethodSpec(None, lambda p, c: 1)}
    )


BEST_FOR = b'{"jsonrpc":"2.0","method":"router.best_for","params":{"model":"claude-opus-4"},"id":1}'
RECORD = json.dumps(
    {
        "jsonrpc": "2.0",
        "method": "turns.record",
        "params": {
            "provider": "anthropic_api",
            "model": "claude-opus-4",
            "input_tokens": 1200,
            "headers": {f"anthropic-ratelimit-{k}": "2030-01-01T00:00:00Z" for k in ("a", "b", "c", "d")},
            "error_body": {"error": {"message": "résumé ✓ [with] {brackets}"}},
        },
        "id": 1,
    }
).encode()
BATCH = b"[" + b",".join([BEST_FOR] * 64) + b"]"
HOSTILE = b"[" * (1 << 19) + b"]" * (1 << 19)


def per_call(fn: Callable[[], object], seconds: float) -> float:
    n, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(50):
            fn()
        n += 50
        now = time.perf_counter()
        if now >= deadline:
            return (now - start) / n


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args()
    dispatcher = _dispatcher()
    print(f"{'line':<28} {'guards':>10} {'baseline':>12} {'ratio':>7}")
    for name, line in (("best_for", BEST_FOR), ("turns.record, non-ASCII", RECORD), ("batch of 64", BATCH)):
        guards = per_call(
            lambda line=line: codec.valid_utf8(line) and codec.nesting_exceeds(line), args.seconds
        )
        whole = per_call(lambda line=line: dispatcher.handle_line(line, None), args.seconds)
        print(
            f"{name:<28} {guards * 1e6:>8.2f}µs {whole * 1e6:>10.2f}µs {guards / whole:>7.3f}  (of dispatch)"
        )
    decoder = msgspec.json.Decoder(IncomingRequest | list[msgspec.Raw])

    def refuse() -> None:
        with contextlib.suppress(RecursionError):
            decoder.decode(HOSTILE)

    guards = per_call(lambda: codec.nesting_exceeds(HOSTILE), args.seconds)
    decode = per_call(refuse, args.seconds)
    print(
        f"{'1 MiB of brackets':<28} {guards * 1e3:>8.2f}ms {decode * 1e3:>10.2f}ms {guards / decode:>7.1f}"
        "  (of msgspec's RecursionError)"
    )


if __name__ == "__main__":
    main()
