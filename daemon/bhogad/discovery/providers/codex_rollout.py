"""Finding and reading Codex's session rollout files, the passive last resort for its rate limits.

Codex writes a ``token_count`` line with the current limits after each turn, so the newest such line
is as fresh as the last Codex run — and the windows carry that line's time, so they show as stale
when it is old rather than pretending to be current.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from bhogad.discovery.providers.codex_parse import CodexReading, merge_rollout, newest_readings

#: Only the newest few files are read: older ones cannot hold a newer line.
DEFAULT_FILES: Final = 8
#: Long sessions grow big; the last lines are the ones that matter.
TAIL_BYTES: Final = 4 << 20


def rollout_files(codex_home: Path, limit: int = DEFAULT_FILES) -> list[Path]:
    """The newest rollout files, active sessions and archived ones alike, newest first."""
    candidates: list[tuple[float, Path]] = []
    for pattern, root in (("*/*/*/rollout-*.jsonl", "sessions"), ("*.jsonl", "archived_sessions")):
        try:
            for path in (codex_home / root).glob(pattern):
                try:
                    candidates.append((path.stat().st_mtime, path))
                except OSError:
                    continue
        except OSError:
            continue
    candidates.sort(key=lambda item: item[0], reverse=True)
    return [path for _, path in candidates[:limit]]


def _tail_lines(path: Path) -> list[bytes]:
    try:
        with path.open("rb") as f:
            size = f.seek(0, 2)
            start = max(0, size - TAIL_BYTES)
            f.seek(start)
            data = f.read()
    except OSError:
        return []
    lines = data.split(b"\n")
    # A tail that starts mid-file starts mid-line.
    return lines[1:] if start > 0 else lines


def read_rollouts(codex_home: Path, limit: int = DEFAULT_FILES) -> CodexReading | None:
    """The newest rate limits in the rollout files (blocking: run it in a worker thread)."""
    lines: list[bytes] = []
    for path in rollout_files(codex_home, limit):
        lines.extend(_tail_lines(path))
    return merge_rollout(newest_readings(lines))
