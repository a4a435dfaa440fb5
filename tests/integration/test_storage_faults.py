"""The disk under the ledger misbehaves: full, read-only, not ours to read, or the daemon is killed while
clients retry. Acknowledged turns are never lost, a good ledger is never moved aside, and clients and
people are told what is wrong in words that name the fix.

Some of these need root (to mount a small tmpfs, or to drop root's power to read any file); .ci/run runs
as root. Elsewhere they skip and say why, or use the unprivileged equivalent (chmod)."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from bhoga import BhogaError, Router
from bhoga.errors import RemoteError
from tests.conftest import DaemonProcess

ROOT = os.geteuid() == 0


@contextmanager
def tmpfs(where: Path, size: str) -> Iterator[None]:
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(where)])
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs at {where} (mount exited {done.returncode})")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _stored_ids(daemon: DaemonProcess) -> set[int]:
    with daemon.router() as router:
        ids: set[int] = set()
        after = 0
        while batch := router.turns(after_id=after, limit=10_000):
            ids.update(t.id for t in batch)
            after = batch[-1].id
        return ids


def _moved_aside(state: Path) -> list[str]:
    return [p.name for p in state.iterdir() if ".unusable-" in p.name]


@pytest.mark.skipif(not ROOT, reason="needs root to mount a small tmpfs as a full disk")
def test_a_full_disk_is_named_loses_no_acknowledged_turn_and_recovers(make_daemon: Any) -> None:
    daemon: DaemonProcess = make_daemon(start=False)
    with tmpfs(daemon.state, "3m"):
        daemon.start()
        filler = daemon.state / "filler"
        with daemon.router(timeout=30) as router:
            acked = [router.record_turn("anthropic_api", "m", 1, 1, wait=True)]
            # Leave almost nothing free: SQLite's next growth of the WAL or the database fails.
            with filler.open("wb", buffering=0) as f, pytest.raises(OSError):
                while True:
                    f.write(b"\0" * 4096)
            failure: RemoteError | None = None
            for i in range(20_000):
                try:
                    acked.append(router.record_turn("anthropic_api", "m", i, 1, session="s" * 200, wait=True))
                except RemoteError as exc:
                    failure = exc
                    break
            assert failure is not None, "the disk never filled"
            assert failure.kind == "storage_disk_full", failure
            assert "full" in str(failure)
            # The daemon is alive and answers everything that needs no disk.
            assert router.hello().daemon_version
            assert router.quotas()
            filler.unlink()
            acked.append(router.record_turn("anthropic_api", "m", 1, 1, wait=True))
        assert "commit failed" in daemon.log_text()
        daemon.restart()
        stored = _stored_ids(daemon)
        daemon.stop()
    assert set(acked) <= stored and len(set(acked)) == len(acked)


@contextmanager
def read_only(state: Path) -> Iterator[str]:
    """Make ``state`` read-only the way the machine would: a read-only mount as root, else chmod."""
    if ROOT:
        # Copy the ledger onto a tmpfs, then remount it read-only.
        saved = state.with_name("saved")
        shutil.copytree(state, saved)
        with tmpfs(state, "8m"):
            for p in saved.iterdir():
                shutil.copy2(p, state / p.name)
            subprocess.run(["mount", "-o", "remount,ro", str(state)], check=True)
            yield "read-only"
            subprocess.run(["mount", "-o", "remount,rw", str(state)], check=True)
            for p in state.iterdir():
                shutil.copy2(p, saved / p.name)
        shutil.rmtree(state)
        saved.rename(state)
    else:
        state.chmod(0o500)
        try:
            yield "permission"
        finally:
            state.chmod(0o700)


def test_a_read_only_state_directory_stops_the_daemon_with_the_path_and_the_fix(make_daemon: Any) -> None:
    daemon: DaemonProcess = make_daemon()
    with daemon.router() as router:
        first = router.record_turn("anthropic_api", "m", 3, 4, wait=True)
    daemon.stop()
    for extra in ("-wal", "-shm"):
        Path(f"{daemon.state / 'state.db'}{extra}").unlink(missing_ok=True)
    with read_only(daemon.state) as how:
        daemon.start(wait=False)
        assert daemon.proc is not None and daemon.proc.wait(30) == 1
        text = daemon.log_text()
        assert str(daemon.state) in text
        assert "to fix" in text
        assert ("read-only" in text or "Read-only" in text) if how == "read-only" else "ermission" in text
        assert "Traceback" not in text
        assert _moved_aside(daemon.state) == []
    daemon.start()
    assert _stored_ids(daemon) == {first}


def test_an_unreadable_ledger_is_not_moved_aside(make_daemon: Any) -> None:
    daemon: DaemonProcess = make_daemon()
    with daemon.router() as router:
        first = router.record_turn("anthropic_api", "m", 3, 4, wait=True)
    daemon.stop()
    db = daemon.state / "state.db"
    db.chmod(0o000)
    command = [sys.executable, "-m", "bhogad"]
    if ROOT:
        if shutil.which("setpriv") is None:
            pytest.skip("needs setpriv (util-linux) to run as root without the power to read any file")
        # Root reads every file; drop exactly that power, as an ordinary user would lack it.
        command = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", *command]
    try:
        done = subprocess.run(command, env=daemon.env, capture_output=True, text=True, timeout=60)
    finally:
        db.chmod(0o600)
    assert done.returncode == 1, done.stderr
    assert str(db) in done.stderr
    assert "storage_permission_denied" in done.stderr or "ermission" in done.stderr
    assert "to fix" in done.stderr
    assert _moved_aside(daemon.state) == []
    daemon.start()
    assert _stored_ids(daemon) == {first}


def test_clients_retrying_with_keys_across_kill_9_store_every_turn_exactly_once(make_daemon: Any) -> None:
    daemon: DaemonProcess = make_daemon()
    workers, per_worker = 6, 60
    acked: dict[str, int] = {}
    errors: list[str] = []
    lock = threading.Lock()
    halfway = threading.Barrier(workers + 1)

    def work(w: int) -> None:
        with Router(socket_path=daemon.socket, timeout=30) as router:
            for j in range(per_worker):
                key = f"w{w}-t{j}"
                if j == per_worker // 2:
                    halfway.wait(60)  # everyone mid-stream when the daemon dies
                for _attempt in range(200):
                    try:
                        turn_id = router.record_turn(
                            "anthropic_api", "m", j, 1, wait=True, idempotency_key=key
                        )
                    except (BhogaError, OSError):
                        threading.Event().wait(0.05)  # the daemon is restarting: send the same turn again
                        continue
                    assert turn_id is not None
                    with lock:
                        acked[key] = turn_id
                    break
                else:
                    errors.append(f"{key} never acknowledged")

    threads = [threading.Thread(target=work, args=(w,)) for w in range(workers)]
    for t in threads:
        t.start()
    halfway.wait(120)
    daemon.stop(signal.SIGKILL)
    daemon.start()
    for t in threads:
        t.join(300)
    assert errors == []
    assert len(acked) == workers * per_worker
    stored = _stored_ids(daemon)
    assert set(acked.values()) == stored  # none lost, none stored twice
    daemon.stop()
    conn = sqlite3.connect(daemon.state / "state.db")
    keys = dict(conn.execute("SELECT key, turn_id FROM turn_keys"))
    conn.close()
    assert keys == acked
