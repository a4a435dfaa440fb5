"""Shared state on and off, side by side in one run, against a real Redis server started here.

* ``router.best_for`` latency (p50, p99), one client, on a daemon alone and on a daemon sharing
  state with another (which keeps a stream of turns flowing through the server meanwhile);
* ``turns.record`` acknowledged, one client in a loop: turns per second, alone and sharing;
* how long a 429 recorded on one daemon takes to show as a cooldown on the other (p50, p99).

Sharing must never make the hot path wait on the network, so the ratios should be ~1. Each ratio is
the median of ten alternating rounds' ratios (these machines are shared and noisy).

Run: ``.venv/bin/python bench/bench_shared.py [--samples 2000] [--cooldowns 40]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.fakes.redis_server import RedisServer, server_binary

BEST_FOR = b'{"jsonrpc":"2.0","method":"router.best_for","params":{"model":"claude-opus-4"},"id":1}\n'
RECORD = (
    b'{"jsonrpc":"2.0","method":"turns.record","params":{"provider":"anthropic_api",'
    b'"model":"claude-opus-4","input_tokens":1200,"output_tokens":800},"id":1}\n'
)
NL = b"\n"
ROUNDS = 10
CONFIG = """
providers:
  anthropic_api: {{account: "anthropic:bench-team"}}
  openai-codex: {{enabled: false}}
  github-copilot: {{enabled: false}}
  openrouter: {{enabled: false}}
  claude_code: {{enabled: false}}
{shared}
"""


class Daemon:
    def __init__(self, root: Path, shared_url: str | None, device: str) -> None:
        root.mkdir(parents=True)
        (root / "run").mkdir(mode=0o700)
        self.socket = root / "run" / "bhogad.sock"
        shared = f"shared: {{url: {shared_url}, device: {device}, sync_interval_s: 1}}" if shared_url else ""
        (root / "config.yaml").write_text(CONFIG.format(shared=shared))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BHOGA_", "ANTHROPIC_"))}
        env.update(
            BHOGA_SOCKET=str(self.socket),
            BHOGA_STATE=str(root / "state"),
            BHOGA_CONFIG=str(root / "config.yaml"),
            HOME=str(root),
            ANTHROPIC_API_KEY="sk-ant-bench",
        )
        self.log = (root / "bhogad.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bhogad"], env=env, stdout=self.log, stderr=self.log
        )
        deadline = time.monotonic() + 15
        while not self.socket.exists():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"bhogad did not start; see {root / 'bhogad.log'}")
            time.sleep(0.02)
        time.sleep(0.3)

    def connect(self) -> tuple[socket.socket, object]:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(str(self.socket))
        return sock, sock.makefile("rb")

    def call(self, line: bytes) -> dict[str, object]:
        sock, reader = self.connect()
        sock.sendall(line)
        reply: dict[str, object] = json.loads(reader.readline())  # type: ignore[attr-defined]
        sock.close()
        return reply

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(15)
        self.log.close()


def latencies(d: Daemon, line: bytes, n: int) -> list[float]:
    sock, reader = d.connect()
    readline = reader.readline  # type: ignore[attr-defined]
    for _ in range(200):
        sock.sendall(line)
        readline()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        sock.sendall(line)
        readline()
        out.append(time.perf_counter() - t0)
    sock.close()
    return out


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if q < 100 else max(values)


def background_turns(d: Daemon, stop: threading.Event) -> None:
    sock, reader = d.connect()
    while not stop.is_set():
        sock.sendall(RECORD)
        reader.readline()  # type: ignore[attr-defined]
        time.sleep(0.005)
    sock.close()


def cooldown_delays(a: Daemon, b: Daemon, n: int) -> list[float]:
    sock, reader = b.connect()
    readline = reader.readline  # type: ignore[attr-defined]
    ask = b'{"jsonrpc":"2.0","method":"quota.list","params":{"provider":"anthropic_api"},"id":1}\n'
    out = []
    for i in range(n):
        retry = 600 + 60 * i  # each 429 must extend the cooldown, or nothing would change
        turn = {
            "provider": "anthropic_api",
            "model": "claude-opus-4",
            "status_code": 429,
            "headers": {"retry-after": str(retry)},
        }
        expected = datetime.now(UTC).timestamp() + retry
        t0 = time.perf_counter()
        a.call(
            json.dumps({"jsonrpc": "2.0", "method": "turns.record", "params": turn, "id": 1}).encode() + b"\n"
        )
        while True:
            sock.sendall(ask)
            quota = json.loads(readline())["result"][0]
            until = quota.get("cooldown_until")
            if until and datetime.fromisoformat(until.replace("Z", "+00:00")).timestamp() >= expected - 2:
                break
            if time.perf_counter() - t0 > 10:
                raise RuntimeError("a cooldown did not reach the other daemon within 10 s")
            time.sleep(0.001)
        out.append(time.perf_counter() - t0)
    sock.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--cooldowns", type=int, default=40)
    args = parser.parse_args()
    binary = server_binary()
    if binary is None:
        sys.exit("needs redis-server or valkey-server on PATH (apt-get install redis-server)")
    root = Path(tempfile.mkdtemp(prefix="bhg-bench-", dir="/tmp"))
    redis = RedisServer(root / "redis", binary)
    redis.start()
    alone = Daemon(root / "alone", None, "alone")
    a = Daemon(root / "a", redis.url, "machine-a")
    b = Daemon(root / "b", redis.url, "machine-b")
    stop = threading.Event()
    feeder = threading.Thread(target=background_turns, args=(a, stop), daemon=True)
    try:
        feeder.start()
        rows = []
        # Alternating rounds, so a burst of load from elsewhere on the machine hits both alike.
        # The ratio shown is the median of the rounds' ratios, which a burst in one round cannot move.
        off, on, rec_off, rec_on = [], [], [], []
        ratios: dict[str, list[float]] = {"p50": [], "p99": [], "ack": []}
        for _ in range(ROUNDS):
            off.append(latencies(alone, BEST_FOR, args.samples // ROUNDS))
            on.append(latencies(b, BEST_FOR, args.samples // ROUNDS))
            rec_off.append(latencies(alone, RECORD, args.samples // ROUNDS // 4))
            rec_on.append(latencies(b, RECORD, args.samples // ROUNDS // 4))
            for q in (50, 99):
                ratios[f"p{q}"].append(pct(on[-1], q) / pct(off[-1], q))
            ratios["ack"].append(sum(rec_off[-1]) / sum(rec_on[-1]))
        every = [x for r in on for x in r], [x for r in off for x in r]
        for q in (50, 99):
            rows.append((f"best_for p{q}", pct(every[0], q) * 1e6, pct(every[1], q) * 1e6, "µs", f"p{q}"))
        acks = [sum(len(r) for r in rs) / sum(sum(r) for r in rs) for rs in (rec_on, rec_off)]
        rows.append(("turns.record ack/s, 1 client", acks[0], acks[1], "/s", "ack"))
        stop.set()
        feeder.join()
        delays = cooldown_delays(a, b, args.cooldowns)
        print(f"{'measure':<32} {'shared on':>12} {'alone':>12} {'ratio (median of rounds)':>26}")
        for name, x, y, unit, key in rows:
            print(
                f"{name:<32} {x:>10.1f}{unit:<2} {y:>10.1f}{unit:<2} {statistics.median(ratios[key]):>6.2f}x"
            )
        print(
            f"cooldown reaches the other daemon: p50 {pct(delays, 50) * 1e3:.0f} ms, "
            f"p99 {pct(delays, 99) * 1e3:.0f} ms, max {max(delays) * 1e3:.0f} ms ({len(delays)} 429s)"
        )
    finally:
        stop.set()
        for d in (alone, a, b):
            d.stop()
        redis.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
