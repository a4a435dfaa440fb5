"""A SIGHUP before the event loop's handlers exist is remembered, not fatal (Python's default)."""

from __future__ import annotations

import os
import signal

from bhogad.app import EarlyHangup


def test_a_sighup_before_the_loop_is_remembered_once() -> None:
    previous = signal.getsignal(signal.SIGHUP)
    try:
        early = EarlyHangup().install()
        assert not early.take()
        os.kill(os.getpid(), signal.SIGHUP)  # delivered to the main thread before kill() returns
        os.kill(os.getpid(), signal.SIGHUP)
        assert early.take()  # two requests before serving are one reload
        assert not early.take()
    finally:
        signal.signal(signal.SIGHUP, previous)
