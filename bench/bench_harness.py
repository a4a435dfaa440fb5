"""The harness paths: ``bhoga statusline`` wall time, and ingest of a large synthetic log tree.

Every figure is printed beside a baseline taken in the same run, as a ratio, because these machines
are shared and noisy:

* ``bhoga statusline`` (a subscriber's payload; the daemon answers ``quota.report`` + ``best_for``)
  against ``python -c pass`` from the same interpreter: median and p90 wall time of a full process
  run, interleaved so both see the same load. Also with no daemon running.
* Ingest: a tree of Claude Code transcripts (streamed messages written twice, like the real thing)
  and Codex rollouts in a fresh daemon's HOME. Turns per second from start to caught up, the
  daemon's peak RSS against its RSS with no logs, and ``router.best_for`` latency (p50/p99) while
  the scan runs against the same daemon idle afterwards.

Run: ``.venv/bin/python bench/bench_harness.py [--runs 40] [--turns 100000]``
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
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BEST_FOR = b'{"jsonrpc":"2.0","method":"router.best_for","params":{"model":"claude-opus-4-7"},"id":1}\n'
STATUS = b'{"jsonrpc":"2.0","method":"daemon.status","id":2}\n'


class Daemon:
    def __init__(self, root: Path, config: str = "") -> None:
        self.root = root
        (root / "run").mkdir(parents=True, mode=0o700, exist_ok=True)
        (root / "home").mkdir(exist_ok=True)
        (root / "config.yaml").write_text(config)
        self.socket = root / "run" / "bhogad.sock"
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.endswith(("_API_KEY", "_TOKEN")) and not k.startswith(("BHOGA_", "CLAUDE_", "CODEX_"))
        }
        self.env.update(
            BHOGA_SOCKET=str(self.socket),
            BHOGA_STATE=str(root / "state"),
            BHOGA_CONFIG=str(root / "config.yaml"),
            HOME=str(root / "home"),
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bhogad"],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.socket(socket.AF_UNIX) as s:
                    s.connect(str(self.socket))
                return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("bhogad did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(20)

    def rss_kib(self, field: str = "VmRSS") -> int:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        return 0


def call(sock: socket.socket, line: bytes) -> bytes:
    sock.sendall(line)
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(1 << 16)
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- statusline ------------------------------------------------------------------------------------


def payload() -> bytes:
    data = json.loads((REPO / "tests/data/harness/statusline/subscriber.json").read_text())
    now = int(time.time())
    for key, bucket in data["rate_limits"].items():
        bucket["resets_at"] = now + (7200 if key == "five_hour" else 259200)
    return json.dumps(data).encode()


def bench_statusline(runs: int) -> None:
    bhoga = shutil.which("bhoga", path=str(Path(sys.executable).parent)) or "bhoga"
    root = Path(tempfile.mkdtemp(prefix="bhb-", dir="/tmp"))
    daemon = Daemon(root)
    daemon.start()
    stdin = payload()
    # As installed: bytecode compiled once (pip does it at install), whatever PYTHONDONTWRITEBYTECODE
    # says in this shell; kept out of the source tree.
    daemon.env.pop("PYTHONDONTWRITEBYTECODE", None)
    daemon.env["PYTHONPYCACHEPREFIX"] = str(root / "pycache")
    subprocess.run([bhoga, "statusline"], input=stdin, env=daemon.env, capture_output=True, check=True)
    floor: list[float] = []
    up: list[float] = []
    down: list[float] = []
    env_down = dict(daemon.env, BHOGA_SOCKET=str(root / "run" / "absent.sock"))
    try:
        for _ in range(runs):
            for cmd, env, out in (
                ([sys.executable, "-c", "pass"], daemon.env, floor),
                ([bhoga, "statusline"], daemon.env, up),
                ([bhoga, "statusline"], env_down, down),
            ):
                t0 = time.perf_counter()
                done = subprocess.run(cmd, input=stdin, env=env, capture_output=True, check=True)
                out.append(time.perf_counter() - t0)
                assert cmd[-1] == "pass" or done.stdout.strip()
    finally:
        daemon.stop()
        shutil.rmtree(root, ignore_errors=True)
    base = statistics.median(floor)
    print(
        f"statusline ({runs} runs each, interleaved)            median      p90   ratio to `python -c pass`"
    )
    print(f"  {'python -c pass':<44}{base * 1e3:7.1f} ms {pct(floor, 0.9) * 1e3:6.1f} ms   1.00x")
    for name, xs in (("bhoga statusline, daemon up", up), ("bhoga statusline, no daemon", down)):
        med = statistics.median(xs)
        print(f"  {name:<44}{med * 1e3:7.1f} ms {pct(xs, 0.9) * 1e3:6.1f} ms   {med / base:.2f}x")


# -- ingest ----------------------------------------------------------------------------------------


def write_tree(home: Path, turns: int) -> int:
    """Claude transcripts (three quarters of the calls) and Codex rollouts; returns the call count."""
    claude_calls = turns * 3 // 4
    codex_calls = turns - claude_calls
    per_file = 500
    projects = home / ".claude" / "projects"
    n = 0
    for f in range((claude_calls + per_file - 1) // per_file):
        folder = projects / f"-home-dev-p{f % 20}"
        folder.mkdir(parents=True, exist_ok=True)
        lines = []
        for i in range(min(per_file, claude_calls - f * per_file)):
            usage = {
                "input_tokens": 6 + i % 50,
                "cache_creation_input_tokens": 512,
                "cache_read_input_tokens": 18000,
                "output_tokens": 12,
            }
            line = {
                "parentUuid": None,
                "isSidechain": False,
                "type": "assistant",
                "sessionId": f"s{f}",
                "requestId": f"req_{f}_{i}",
                "uuid": f"u{f}_{i}",
                "timestamp": f"2026-0{1 + f % 9}-1{i % 9}T10:{i % 60:02d}:00Z",
                "version": "2.1.270",
                "cwd": "/home/dev/proj",
                "message": {
                    "id": f"msg_{f}_{i}",
                    "type": "message",
                    "role": "assistant",
                    "model": "claude-opus-4-7",
                    "content": [{"type": "text", "text": "x" * 200}],
                    "usage": usage,
                },
            }
            lines.append(json.dumps(line))
            line["message"]["usage"] = dict(usage, output_tokens=400)  # the streamed message, finished
            lines.append(json.dumps(line))
            n += 1
        (folder / f"s{f}.jsonl").write_text("\n".join(lines) + "\n")
    sessions = home / ".codex" / "sessions" / "2026" / "09" / "24"
    sessions.mkdir(parents=True, exist_ok=True)
    for f in range((codex_calls + per_file - 1) // per_file):
        lines = [
            json.dumps(
                {"timestamp": "2026-09-24T10:00:00Z", "type": "session_meta", "payload": {"id": f"c{f}"}}
            ),
            json.dumps(
                {"timestamp": "2026-09-24T10:00:01Z", "type": "turn_context", "payload": {"model": "gpt-5.5"}}
            ),
        ]
        total = [0, 0, 0, 0]
        for i in range(min(per_file, codex_calls - f * per_file)):
            last = [12000 + i, 8000, 400, 100]
            total = [a + b for a, b in zip(total, last, strict=True)]
            names = ("input_tokens", "cached_input_tokens", "output_tokens", "reasoning_output_tokens")
            info = {
                "last_token_usage": dict(zip(names, last, strict=True)),
                "total_token_usage": dict(zip(names, total, strict=True)),
            }
            lines.append(
                json.dumps(
                    {
                        "timestamp": f"2026-09-24T10:{i // 60 % 60:02d}:{i % 60:02d}.{f:03d}Z",
                        "type": "event_msg",
                        "payload": {"type": "token_count", "info": info},
                    }
                )
            )
            n += 1
        (sessions / f"rollout-2026-09-24T10-00-00-c{f}.jsonl").write_text("\n".join(lines) + "\n")
    return n


def latencies(sock: socket.socket, seconds: float) -> list[float]:
    xs = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        call(sock, BEST_FOR)
        xs.append(time.perf_counter() - t0)
        time.sleep(0.002)
    return xs


def bench_ingest(turns: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="bhb-", dir="/tmp"))
    try:
        idle = Daemon(root / "idle")
        idle.start()
        time.sleep(1.0)
        rss_idle = idle.rss_kib()
        idle.stop()
        daemon = Daemon(root / "scan", "ingest: {interval_s: 0.5}\n")
        expected = write_tree(root / "scan" / "home", turns)
        size = sum(p.stat().st_size for p in (root / "scan" / "home").rglob("*.jsonl"))
        t0 = time.perf_counter()
        daemon.start()
        during: list[float] = []
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(daemon.socket))
            while True:
                during += latencies(sock, 0.25)
                status = json.loads(call(sock, STATUS))["result"]
                ingest = status.get("ingest") or {}
                if status["turns_stored"] >= expected and not ingest.get("scanning"):
                    break
                if time.perf_counter() - t0 > 1800:
                    raise RuntimeError(f"ingest did not finish: {status}")
            elapsed = time.perf_counter() - t0
            peak = daemon.rss_kib("VmHWM")
            after = latencies(sock, 3.0)
        daemon.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(
        f"ingest: {expected} calls ({size / 1e6:.0f} MB of logs; Claude messages written twice, "
        "as streamed) into a fresh daemon"
    )
    print(
        f"  caught up in {elapsed:.1f} s: {expected / elapsed:,.0f} turns/s, {size / 1e6 / elapsed:.1f} MB/s"
    )
    print(
        f"  daemon peak RSS {peak / 1024:.0f} MiB vs {rss_idle / 1024:.0f} MiB with no logs: "
        f"{peak / rss_idle:.2f}x"
    )
    for q in (0.5, 0.99):
        a, b = pct(during, q), pct(after, q)
        print(
            f"  best_for p{int(q * 100):<2} during the scan {a * 1e6:8.0f} us vs idle {b * 1e6:6.0f} us: "
            f"{a / b:.2f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--turns", type=int, default=100_000)
    parser.add_argument("--skip-statusline", action="store_true")
    parser.add_argument("--skip-ingest", action="store_true")
    args = parser.parse_args()
    if not args.skip_statusline:
        bench_statusline(args.runs)
    if not args.skip_ingest:
        bench_ingest(args.turns)


if __name__ == "__main__":
    main()
