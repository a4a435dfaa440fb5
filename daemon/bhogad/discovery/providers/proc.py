"""Running a provider's CLI (``gh auth token``, ``codex app-server``, ``security``) without leaving
orphans behind.

Each child gets its own session, so on timeout or cancellation the whole process group is stopped —
``codex`` is a node wrapper around a native binary, and killing only the wrapper would orphan the
binary. Stop order: close stdin (a polite server exits on EOF), SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from typing import Final

import anyio
import anyio.abc

from bhogad.discovery.providers.base import Kind, PollFailure

#: Upper bound on the output of a one-shot command (a token, a version, a keychain item).
MAX_OUTPUT: Final = 256 * 1024
_GRACE_S: Final = 2.0


def _signal_group(process: anyio.abc.Process, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


async def stop(process: anyio.abc.Process) -> None:
    """Make sure ``process`` and its group are gone; safe to call from a cancelled scope."""
    with anyio.CancelScope(shield=True):
        if process.stdin is not None:
            with contextlib.suppress(Exception):
                await process.stdin.aclose()
        with anyio.move_on_after(0.5):
            await process.wait()
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if process.returncode is not None:
                break
            # Signal the group while the leader is unreaped: its id cannot have been reused yet.
            _signal_group(process, sig)
            with anyio.move_on_after(_GRACE_S):
                await process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                with contextlib.suppress(Exception):
                    await stream.aclose()


async def open_process(argv: Sequence[str], env: Mapping[str, str]) -> anyio.abc.Process:
    try:
        return await anyio.open_process(
            list(argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=dict(env),
            start_new_session=True,
        )
    except OSError as exc:
        raise PollFailure(Kind.LOCAL, f"cannot run {os.path.basename(argv[0])}: {exc.strerror}") from None


async def run(argv: Sequence[str], env: Mapping[str, str], within_s: float) -> tuple[int, bytes]:
    """Run a one-shot command with no input; its exit code and stdout (stderr is discarded, since it
    may echo credentials and is never shown)."""
    name = os.path.basename(argv[0])
    process = await open_process(argv, env)
    out = bytearray()
    try:
        assert process.stdin is not None and process.stdout is not None
        await process.stdin.aclose()
        with anyio.move_on_after(within_s) as deadline:
            async for chunk in process.stdout:
                out += chunk
                if len(out) > MAX_OUTPUT:
                    raise PollFailure(Kind.PROTOCOL, f"{name} printed more than {MAX_OUTPUT} bytes")
            await process.wait()
        if deadline.cancelled_caught:
            raise PollFailure(Kind.TRANSIENT, f"`{name}` did not finish within {within_s:g} s (timeout)")
    finally:
        await stop(process)
    assert process.returncode is not None
    return process.returncode, bytes(out)
