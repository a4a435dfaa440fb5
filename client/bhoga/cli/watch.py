"""``bhoga watch``: the status table, live.

One connection subscribes to ``quota.changed`` and asks for a snapshot on the same connection, so
replies and events arrive in the order the daemon produced them: events older than the snapshot are
dropped, newer ones are applied on top of it. A periodic ``quota.list`` refreshes what only time
changes (countdowns, staleness) and keeps the connection from idling out. When the daemon restarts,
watch waits and resubscribes.

On a terminal the table is redrawn in place; otherwise each change is appended as a new snapshot
under a ``---`` line, so the output can be logged or piped.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from datetime import UTC, datetime
from typing import TextIO

import msgspec

from bhoga import operations as ops
from bhoga.aio import subscribe
from bhoga.cli.common import Add
from bhoga.cli.render import render_status
from bhoga.client import Router
from bhoga.errors import DaemonNotRunning
from bhoga.protocol import Lagged, ProviderFilter, ProviderQuota, QuotaChanged

_HOME_CLEAR = "\x1b[H"
_CLEAR_LINE = "\x1b[K"
_CLEAR_BELOW = "\x1b[J"
_HIDE_CURSOR, _SHOW_CURSOR = "\x1b[?25l", "\x1b[?25h"
_event_decoder = msgspec.json.Decoder(QuotaChanged)
_encoder = msgspec.json.Encoder()


class Screen:
    """Where snapshots go: redrawn in place on a terminal, appended otherwise."""

    def __init__(self, out: TextIO, tty: bool, as_json: bool = False) -> None:
        self.out = out
        self.tty = tty and not as_json
        self.as_json = as_json
        self._last: bytes | None = None

    def show(self, quotas: dict[str, ProviderQuota], cause: str) -> None:
        now = datetime.now(UTC)
        state = _encoder.encode(sorted(quotas.items()))
        if not self.tty and state == self._last:
            return  # nothing a reader of a log would see changed; countdowns alone are not news
        self._last = state
        if self.as_json:
            # One JSON object per line: every provider's quota after each change.
            line = {"at": now, "cause": cause, "quotas": sorted(quotas.values(), key=lambda q: q.provider_id)}
            self.out.write(_encoder.encode(line).decode() + "\n")
            self.out.flush()
            return
        header = f"bhoga watch · {now.astimezone():%H:%M:%S} · {cause}"
        table = render_status(list(quotas.values()), now)
        if self.tty:
            lines = [header + "   (Ctrl-C to quit)", "", *table.splitlines()]
            self.out.write(_HOME_CLEAR + "".join(line + _CLEAR_LINE + "\n" for line in lines) + _CLEAR_BELOW)
        else:
            self.out.write(f"--- {header}\n{table}")
        self.out.flush()

    def note(self, text: str) -> None:
        if self.as_json:
            return
        if self.tty:
            self.out.write(_HOME_CLEAR + text + _CLEAR_LINE + "\n" + _CLEAR_BELOW)
        else:
            self.out.write(f"--- {text}\n")
        self.out.flush()


async def _session(path: str, screen: Screen, interval: float) -> None:
    """One subscribed connection, until the daemon closes it."""
    # The snapshot travels on the subscribed connection, so it is ordered exactly among the events.
    listing: ops.Call[list[ProviderQuota]] = ops.Call(ops.LIST_QUOTAS, ProviderFilter())
    async with subscribe(path) as events:
        snapshot_id = await events.send(listing)
        quotas: dict[str, ProviderQuota] | None = None
        cause = "connected"
        while True:
            try:
                message = await events.next(interval)
            except TimeoutError:
                snapshot_id = await events.send(listing)
                cause = "refresh"
                continue
            if message is None:
                return
            if isinstance(message, QuotaChanged):
                if quotas is None:
                    continue  # older than the snapshot on its way
                quotas[message.provider] = message.quota
                screen.show(quotas, f"{message.cause} on {message.provider}")
            elif isinstance(message, Lagged):
                # We fell behind and missed events: start again from a fresh snapshot.
                snapshot_id = await events.send(listing)
                cause = "resynchronised"
            elif message.id == snapshot_id:
                listed: list[ProviderQuota] = message.result
                quotas = {q.provider_id: q for q in listed}
                screen.show(quotas, cause)


async def watch(path: str, screen: Screen, interval: float) -> None:
    connected_once = False
    while True:
        try:
            await _session(path, screen, interval)
            connected_once = True
            screen.note("bhogad closed the connection; reconnecting")
        except DaemonNotRunning:
            if not connected_once:
                raise
            screen.note(f"waiting for bhogad at {path} ...")
            await asyncio.sleep(1.0)
        except (ConnectionResetError, BrokenPipeError):
            connected_once = True
            await asyncio.sleep(0.2)


def cmd_watch(args: argparse.Namespace, router: Router, out: TextIO) -> int:
    if not args.interval > 0:
        raise argparse.ArgumentTypeError("--interval must be a positive number of seconds")
    path = os.fspath(router.socket_path)
    screen = Screen(out, out.isatty(), args.json)
    tty = screen.tty
    if tty:
        out.write(_HIDE_CURSOR + "\x1b[2J")

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # SIGTERM (a closing terminal, `timeout`) stops it as cleanly as Ctrl-C: the cursor comes back.
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        asyncio.run(watch(path, screen, args.interval))
    except KeyboardInterrupt:
        pass  # Ctrl-C is how a person stops watching: not an error
    finally:
        signal.signal(signal.SIGTERM, previous)
        if tty:
            out.write(_SHOW_CURSOR)
            out.flush()
    return 0


def register(add: Add) -> None:
    p = add("watch", cmd_watch, "the status table, live: updated as turns and polls arrive (Ctrl-C quits)")
    p.add_argument(
        "--interval", type=float, default=15.0, help="seconds between refreshes of countdowns (default 15)"
    )
