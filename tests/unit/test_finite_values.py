"""The two provider-value bounds the fault-injection suite needed: percentages stay finite, and a
window's length stays one date arithmetic can add."""

from __future__ import annotations

import math
from datetime import UTC, datetime

from bhoga.protocol import QuotaWindow
from bhoga.quota.values import MAX_PCT, MAX_WINDOW_MIN, clamp_low, minutes, window_problem

NOW = datetime(2026, 9, 24, 12, 0, tzinfo=UTC)


def test_percent_used_keeps_real_overage_and_never_takes_a_non_finite_value() -> None:
    assert clamp_low(101.33) == 101.33 and clamp_low(-5.0) == 0.0
    for pct in (math.inf, 100.0 * 1e308 / 1e-300, math.nan, MAX_PCT * 2):
        problem = window_problem(QuotaWindow(name="monthly", pct_used=pct), NOW)
        assert problem is not None and "percent used" in problem, pct
    assert window_problem(QuotaWindow(name="monthly", pct_used=101.33), NOW) is None


def test_window_lengths_beyond_the_longest_real_window_are_not_reported() -> None:
    assert minutes(10080) == 10080 and minutes(MAX_WINDOW_MIN) == MAX_WINDOW_MIN
    assert minutes(MAX_WINDOW_MIN + 1) is None and minutes(1e308 / 60) is None and minutes(2**70) is None
