"""The two provider-value bounds the fault-injection suite needed: percentages stay finite, and a
window's length stays one date arithmetic can add."""

from __future__ import annotations

import math

from bhoga.quota.values import MAX_PCT_USED, MAX_WINDOW_MIN, clamp_low, minutes


def test_percent_used_is_always_finite_and_keeps_real_overage() -> None:
    assert clamp_low(101.33) == 101.33 and clamp_low(-5.0) == 0.0
    assert clamp_low(math.inf) == MAX_PCT_USED and clamp_low(100.0 * 1e308 / 1e-300) == MAX_PCT_USED
    assert clamp_low(math.nan) == 0.0 and clamp_low(-math.inf) == 0.0


def test_window_lengths_beyond_a_year_are_not_reported() -> None:
    assert minutes(10080) == 10080 and minutes(MAX_WINDOW_MIN) == MAX_WINDOW_MIN
    assert minutes(MAX_WINDOW_MIN + 1) is None and minutes(1e308 / 60) is None and minutes(2**70) is None
