"""bhogad against a bare asyncio echo server on the same kind of socket, in the same run.

What it measures (each next to the echo baseline, as a ratio, because shared machines are noisy):

* ``router.best_for`` latency, one client: p50 and p99 of a request/reply round trip.
* ``router.best_for`` throughput with 1, 8 and 32 client processes, each in a request/reply loop.
* ``turns.record`` ingest from 8 and 64 processes: acknowledged (durable) turns per second, one at a
  time; and fire-and-forget notifications in bursts of 100, each burst closed by a request that
  returns only once the burst is stored (the echo server just echoes the same lines).
* Server CPU per notified turn (user + system time of the server process over that run, divided by
  the turns it took in), bhogad beside the echo server's CPU per line.
* Acknowledged ``turns.record`` p99 latency from one client while another loops the longest query
  there is (``usage.summary`` of all history grouped by session, over a ledger of ``--ledger`` turns),
  beside the same p99 with nothing else running.

Clients use raw blocking sockets for both servers, so the figures compare the servers, not client
libraries. A last line shows the real ``bhoga.Router`` latency for reference.

Run: ``.venv/bin/python bench/bench_daemon.py [--seconds 3]``
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

BEST_FOR = b'{"jsonrpc":"2.0","method":"router.best_for","params":{"model":"claude-opus-4"},"id":1}\n'
RECORD = (
    b'{"jsonrpc":"2.0","method":"turns.record","params":{"provider":"anthropic_api","model":"claude-opus-4",'
    b'"input_tokens":1200,"output_tokens":800,"headers":{"anthropic-ratelimit-tokens-limit":"100000",'
    b'"anthropic-ratelimit-tokens-remaining":"90000","anthropic-ratelimit-tokens-reset":"2030-01-01T00:00:00Z"}},"id":1}\n'
)

NOTIFY = RECORD.replace(b',"id":1}\n', b"}\n")
SYNC = b'{"jsonrpc":"2.0","method":"turns.list","params":{"after_id":1000000000000,"limit":1},"id":2}\n'
LONG_QUERY = (
    b'{"jsonrpc":"2.0","method":"usage.summary","params":{"period":"all","group_by":["session"]},"id":3}\n'
)


# -- the baseline ----------------------------------------------------------------------------------


def echo_server(path: str) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            writer.write(line)
            await writer.drain()
        writer.close()

    async def main() -> None:
        server = await asyncio.start_unix_server(handle, path)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


# -- clients ---------------------------------------------------------------------------------------


def connect(path: str) -> tuple[socket.socket, Callable[[], bytes]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    return sock, sock.makefile("rb").readline


def latencies(path: str, request: bytes, n: int) -> list[float]:
    sock, readline = connect(path)
    for _ in range(200):  # warm up
        sock.sendall(request)
        readline()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        sock.sendall(request)
        readline()
        out.append(time.perf_counter() - t0)
    sock.close()
    return out


def loop_client(
    path: str,
    request: bytes,
    start_at: float,
    stop_at: float,
    counts: multiprocessing.Queue,  # type: ignore[type-arg]
    burst: int,
) -> None:
    """Request/reply in a loop; with ``burst`` > 1, send that many notifications, then one request
    that replies only once they are all stored (``turns.list`` waits for pending writes)."""
    sock, readline = connect(path)
    echo = path.endswith("echo.sock")
    while time.time() < start_at:
        time.sleep(0.001)
    done = 0
    payload = request if burst == 1 else NOTIFY * burst + SYNC
    while time.time() < stop_at:
        sock.sendall(payload)
        for _ in range(burst + 1 if echo and burst > 1 else 1):
            readline()
        done += burst
    sock.close()
    counts.put(done)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def query_loop(path: str, request: bytes, stop_at: float, counts: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    sock, readline = connect(path)
    done = 0
    while time.time() < stop_at:
        sock.sendall(request)
        readline()
        done += 1
    sock.close()
    counts.put(done)


def p99_beside(path: str, request: bytes, beside: bytes, n: int, seconds: float) -> tuple[float, int]:
    """Acknowledged-request p99 while another process loops ``beside``; and how many of those ran."""
    ctx = multiprocessing.get_context("fork")
    counts: multiprocessing.Queue = ctx.Queue()  # type: ignore[type-arg]
    proc = ctx.Process(target=query_loop, args=(path, beside, time.time() + seconds, counts))
    proc.start()
    time.sleep(0.2)  # the first query is under way
    sock, readline = connect(path)
    out = []
    stop_at = time.time() + seconds - 0.5
    while len(out) < n and time.time() < stop_at:
        t0 = time.perf_counter()
        sock.sendall(request)
        readline()
        out.append(time.perf_counter() - t0)
    sock.close()
    queries = counts.get()
    proc.join()
    return pct(out, 99), queries


def throughput(path: str, request: bytes, processes: int, seconds: float, burst: int = 1) -> float:
    ctx = multiprocessing.get_context("fork")
    counts: multiprocessing.Queue = ctx.Queue()  # type: ignore[type-arg]
    start_at = time.time() + 0.5 + processes * 0.02
    procs = [
        ctx.Process(target=loop_client, args=(path, request, start_at, start_at + seconds, counts, burst))
        for _ in range(processes)
    ]
    for p in procs:
        p.start()
    total = sum(counts.get() for _ in procs)
    for p in procs:
        p.join()
    return total / seconds


# -- the daemon ------------------------------------------------------------------------------------


def start_bhogad(root: Path, ledger: int) -> subprocess.Popen[bytes]:
    (root / "run").mkdir(mode=0o700)
    if ledger:
        sys.path.insert(0, str(Path(__file__).parent))
        from bench_store import build  # a year of synthetic turns, through the store's own code

        build(root / "state", ledger, datetime.now(UTC))
    env = {
        **os.environ,
        "BHOGA_SOCKET": str(root / "run" / "s"),
        "BHOGA_STATE": str(root / "state"),
        "BHOGA_CONFIG": str(root / "none.yaml"),
    }
    proc = subprocess.Popen([sys.executable, "-m", "bhogad", "--log-level", "warning"], env=env)
    wait_for(str(root / "run" / "s"))
    return proc


def wait_for(path: str) -> None:
    for _ in range(500):
        try:
            socket.socket(socket.AF_UNIX).connect(path)
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listening on {path}")


def router_latency(path: str, n: int) -> list[float]:
    from bhoga import Router

    with Router(socket_path=path) as router:
        for _ in range(200):
            router.best_for("claude-opus-4")
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            router.best_for("claude-opus-4")
            out.append(time.perf_counter() - t0)
    return out


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if q < 100 else max(values)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--samples", type=int, default=5000)
    parser.add_argument("--ledger", type=int, default=100_000, help="turns in the ledger before the run")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="bhb-", dir="/tmp"))
    echo_path = str(root / "echo.sock")
    echo = multiprocessing.get_context("fork").Process(target=echo_server, args=(echo_path,), daemon=True)
    echo.start()
    wait_for(echo_path)
    daemon = start_bhogad(root, args.ledger)
    bhoga_path = str(root / "run" / "s")
    try:
        from bhoga import Router

        with Router(socket_path=bhoga_path) as router:
            router.set_quota("claude_code", 70, weekly_pct=40)
            router.set_quota("anthropic_api", 55)

        rows: list[tuple[str, float, float, str]] = []
        echo_lat = latencies(echo_path, BEST_FOR, args.samples)
        ours_lat = latencies(bhoga_path, BEST_FOR, args.samples)
        for label, q in (("p50", 50), ("p99", 99)):
            e, o = pct(echo_lat, q) * 1e6, pct(ours_lat, q) * 1e6
            rows.append((f"best_for latency {label} (µs, 1 client)", o, e, f"{o / e:.2f}x echo"))
        for processes in (1, 8, 32):
            e = throughput(echo_path, BEST_FOR, processes, args.seconds)
            o = throughput(bhoga_path, BEST_FOR, processes, args.seconds)
            rows.append((f"best_for throughput (req/s, {processes} proc)", o, e, f"{o / e:.2f} of echo"))
        for processes in (8, 64):
            e = throughput(echo_path, RECORD, processes, args.seconds)
            o = throughput(bhoga_path, RECORD, processes, args.seconds)
            rows.append((f"turns.record acked (turns/s, {processes} proc)", o, e, f"{o / e:.2f} of echo"))
        cpu_e, cpu_o = cpu_seconds(echo.pid or 0), cpu_seconds(daemon.pid)
        e = throughput(echo_path, RECORD, 8, args.seconds, burst=100)
        o = throughput(bhoga_path, RECORD, 8, args.seconds, burst=100)
        rows.append(("turns.record notified, stored (turns/s, 8 proc)", o, e, f"{o / e:.2f} of echo"))
        # Both servers ran the same length of time; CPU per turn is their CPU over what they took in.
        per_e = (cpu_seconds(echo.pid or 0) - cpu_e) / (e * args.seconds) * 1e6
        per_o = (cpu_seconds(daemon.pid) - cpu_o) / (o * args.seconds) * 1e6
        rows.append(("server CPU per notified turn (µs)", per_o, per_e, f"{per_o / per_e:.2f}x echo"))
        alone, _ = p99_beside(bhoga_path, RECORD, BEST_FOR, args.samples, args.seconds * 2)
        beside, queries = p99_beside(bhoga_path, RECORD, LONG_QUERY, args.samples, args.seconds * 2)
        rows.append(
            (
                f"turns.record acked p99 (µs) beside {queries} long usage queries",
                beside * 1e6,
                alone * 1e6,
                f"{beside / alone:.2f}x beside best_for",
            )
        )
        real = router_latency(bhoga_path, args.samples)
        rows.append(
            (
                "bhoga.Router.best_for p50 (µs)",
                pct(real, 50) * 1e6,
                pct(echo_lat, 50) * 1e6,
                f"{pct(real, 50) / pct(echo_lat, 50):.2f}x echo",
            )
        )

        print(f"{'measure':<62} {'bhogad':>12} {'baseline':>12}  ratio")
        for name, ours, base, ratio in rows:
            print(f"{name:<62} {ours:>12,.1f} {base:>12,.1f}  {ratio}")
        print(
            f"(cores: {os.cpu_count()}, seconds per throughput run: {args.seconds}, ledger: {args.ledger:,})"
        )
    finally:
        daemon.terminate()
        daemon.wait(10)
        echo.terminate()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
