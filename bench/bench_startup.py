"""How long a command or a harness waits before bhoga is ready, beside the interpreter's own floor.

Whole processes, as a person or a statusline feels them: each command is started many times, the runs
of all commands interleaved (so a busy moment of a shared machine hits every command alike), and the
median wall time of each is printed beside its baseline from the same run, as a ratio:

* ``import bhoga`` and ``from bhoga import Router`` against ``import msgspec`` (target ≤ 1.25×);
* ``bhoga status`` and ``bhoga best MODEL`` against ``python -c pass`` (target ≤ 3×), answered by a
  real ``bhogad`` started for the run in a temporary directory.

Run: ``.venv/bin/python bench/bench_startup.py [--runs 40]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def start_daemon(root: Path) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    run = root / "run"
    run.mkdir(mode=0o700)
    # The machine's own credentials and bhoga settings stay out of the benchmark's daemon.
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_TOKEN"))}
    env = {k: v for k, v in env.items() if not k.startswith("BHOGA_")}
    env.update(
        BHOGA_SOCKET=str(run / "bhogad.sock"),
        BHOGA_STATE=str(root / "state"),
        BHOGA_CONFIG=str(root / "none.yaml"),
        HOME=str(root),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "bhogad", "--log-level", "error"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while not (run / "bhogad.sock").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("bhogad did not start")
        time.sleep(0.05)
    # Give the daemon something to rank, so `best` prints a provider and exits 0.
    bhoga = [str(Path(sys.executable).with_name("bhoga"))]
    subprocess.run([*bhoga, "set-quota", "claude_code", "80"], env=env, check=True, capture_output=True)
    return proc, env


def measure(commands: dict[str, list[str]], env: dict[str, str], runs: int) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in commands}
    for argv in commands.values():  # one warm-up each: the page cache, .pyc files
        subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
    for _ in range(runs):
        for name, argv in commands.items():
            start = time.perf_counter()
            subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=40, help="runs of each command (default 40)")
    args = parser.parse_args()
    py = sys.executable
    bhoga = str(Path(py).with_name("bhoga"))
    root = Path(tempfile.mkdtemp(prefix="bhoga-bench-", dir="/tmp"))
    proc, env = start_daemon(root)
    try:
        commands = {
            "python -c pass": [py, "-c", "pass"],
            "import msgspec": [py, "-c", "import msgspec"],
            "import bhoga": [py, "-c", "import bhoga"],
            "from bhoga import Router": [py, "-c", "from bhoga import Router"],
            "bhoga status": [bhoga, "status"],
            "bhoga best claude-opus-4": [bhoga, "best", "claude-opus-4"],
        }
        medians = measure(commands, env, args.runs)
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(root, ignore_errors=True)
    rows: list[tuple[str, str, float | None]] = [
        ("import bhoga", "import msgspec", 1.25),
        ("from bhoga import Router", "import msgspec", 1.25),
        ("bhoga status", "python -c pass", 3.0),
        ("bhoga best claude-opus-4", "python -c pass", 3.0),
        # msgspec is the floor any bhoga command stands on: how far above it each command is.
        ("bhoga status", "import msgspec", None),
        ("bhoga best claude-opus-4", "import msgspec", None),
    ]
    print(f"median wall time of {args.runs} interleaved runs each (ms)")
    print(f"{'measure':<28} {'ms':>7}   {'baseline':<16} {'ms':>7}   {'ratio':>6}  target")
    for name, base, target in rows:
        ratio = medians[name] / medians[base]
        verdict = "" if target is None else f"≤{target:g}× {'ok' if ratio <= target else 'OVER'}"
        print(
            f"{name:<28} {medians[name] * 1e3:7.1f}   {base:<16} {medians[base] * 1e3:7.1f}   "
            f"{ratio:5.2f}×  {verdict}"
        )


if __name__ == "__main__":
    main()
