"""A fresh statusline reading lets the poller back off: Anthropic's usage endpoint rate-limits
pollers, and Claude Code already handed us the same numbers. Real keeper, store, HTTP and driver."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import anyio

from bhoga.protocol import QuotaWindow, ReportParams, Source
from bhogad.discovery.poller import Poller
from bhogad.domain.keeper import QuotaKeeper
from tests.fakes.driving import base_env
from tests.fakes.http_server import FakeServer
from tests.unit.test_poller import START, USAGE, Clock, claude, claude_home, only, run, until

__all__ = ["claude"]  # the fixture, used by name below


def test_a_fresh_statusline_reading_holds_off_the_poll(claude: FakeServer, tmp_path: Path) -> None:
    clock = Clock()
    clock.now = START.now
    env = base_env(claude_home(tmp_path, clock))

    async def body(daemon: QuotaKeeper, poller: Poller) -> None:
        # Before the first poll is due (it comes within 50 ms), Claude Code's statusline reports.
        window = QuotaWindow(name="burst", pct_used=20.0, window_min=300, source=Source.STATUSLINE)
        daemon.report_windows(ReportParams(provider="claude_code", windows=[window]))
        await anyio.sleep(1.0)
        assert claude.to(USAGE) == []  # the reading is fresher than a poll interval
        assert daemon.quota("claude_code").windows["burst"].source == "statusline"
        # A poll interval later (by the daemon's clock) the endpoint is asked again.
        clock.now += timedelta(seconds=3)
        # (The request reaches the fake server before its answer reaches the keeper: wait for that.)
        await until(lambda: daemon.quota("claude_code").windows["burst"].source == "oauth", within=10)
        assert len(claude.to(USAGE)) == 1

    run(tmp_path, only("claude_code", base_url=claude.url, poll_interval_s=2.0), env, body, clock)
