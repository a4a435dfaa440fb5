"""Pace arithmetic against the wire spec's worked values (§8), and the burn-rate model.

The windows come from the shared fixtures read the way the daemon reads them, so a change to header
parsing that moved a reset or a percentage would show up here as a wrong pace figure.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bhoga.protocol import Health, QuotaWindow, Source, WindowKind
from bhoga.quota.headers import read_response
from bhogad.domain import pace
from tests.fakes.fixtures import FIXTURE_NOW, load

NOW = FIXTURE_NOW


def windows(name: str) -> dict[str, QuotaWindow]:
    return {w.key: w for w in read_response(load(name), now=NOW).windows}


def copilot_premium() -> QuotaWindow:
    # 57 % remaining of a 30-day allowance that resets 2026-10-01T00:00Z (the fixture's numbers).
    return QuotaWindow(
        name="monthly",
        pct_used=43,
        resets_at=datetime(2026, 10, 1, tzinfo=UTC),
        window_min=30 * 24 * 60,
        updated_at=NOW,
        source=Source.OAUTH,
    )


# The table in fixtures/providers/README.md: expected %, delta, and the run-out at the average rate.
@pytest.mark.parametrize(
    ("window", "delta", "empty_in_s", "lasts"),
    [
        (lambda: windows("anthropic-unified-headers.json")["burst"], -23.0, None, True),
        (lambda: windows("anthropic-unified-headers.json")["weekly"], 2.071, 227_862, False),
        (lambda: windows("codex-headers.json")["burst"], -18.0, None, True),
        (lambda: windows("codex-headers.json")["weekly"], 0.143, 343_591, False),
        (lambda: windows("codex-headers.json")["weekly/limit:codex_bengalfox"], -2.286, None, True),
        (copilot_premium, -35.333, None, True),
    ],
    ids=["claude-5h", "claude-7d", "codex-5h", "codex-7d", "spark-7d", "copilot-month"],
)
def test_fixture_pace_figures(window: object, delta: float, empty_in_s: int | None, lasts: bool) -> None:
    w: QuotaWindow = window()  # type: ignore[operator]
    assert pace.pace_delta(w, NOW) == pytest.approx(delta, abs=0.001)
    burn = pace.burn_rate(None, 0.0, w, NOW)
    assert burn is not None and burn.basis == "average since the window began"
    o = pace.outlook(w, NOW, burn)
    assert o.lasts is lasts
    if empty_in_s is not None:
        assert o.empty_in is not None and o.empty_in * 3600 == pytest.approx(empty_in_s, abs=1)


def test_codex_weekly_runs_out_34_minutes_before_its_reset() -> None:
    w = windows("codex-headers.json")["weekly"]
    o = pace.outlook(w, NOW, pace.burn_rate(None, 0.0, w, NOW))
    assert o.hours_left is not None and o.empty_in is not None
    # 345 600 s to the reset, 343 591 s to empty: 2 009 s, the README's "34 min" before unrounding.
    assert (o.hours_left - o.empty_in) * 3600 == pytest.approx(2009, abs=1)
    assert "runs out in 3d23h, 33m before its reset" in pace.describe(o)


def test_spare_pace_prefers_quota_that_resets_soon() -> None:
    """The issue's example: quota resetting in an hour is worth spending before quota that must last
    six days. Half a 5-hour window left with an hour to go is 2.5x even pace to spare; half a weekly
    window with six days to go is 0.6x."""
    soon = QuotaWindow(name="burst", pct_used=50, resets_at=NOW + timedelta(hours=1), window_min=300)
    late = QuotaWindow(name="weekly", pct_used=50, resets_at=NOW + timedelta(days=6), window_min=10080)
    assert pace.outlook(soon, NOW, None).spare == pytest.approx(2.5)
    assert pace.outlook(late, NOW, None).spare == pytest.approx(50 * 168 / (100 * 144))


def test_a_window_that_reset_has_its_full_length_ahead() -> None:
    # effective_window leaves a reset 5-hour window open-ended: it restarts at the next message.
    w = QuotaWindow(name="burst", pct_used=0, resets_at=None, window_min=300)
    o = pace.outlook(w, NOW, pace.Burn(pct_per_h=10, basis="ledger"))
    assert o.hours_left == 5 and o.surplus == pytest.approx(50) and o.lasts


def test_no_time_information_is_just_what_is_left() -> None:
    w = QuotaWindow(name="quota", pct_used=30)
    o = pace.outlook(w, NOW, None)
    assert o.hours_left is None and o.spare == pytest.approx(0.7) and o.lasts


def test_average_burn_needs_some_of_the_window_behind_it() -> None:
    # One minute into a weekly window, 3 % used would project as 180 %/h: too noisy to use.
    w = QuotaWindow(
        name="weekly", pct_used=3, resets_at=NOW + timedelta(days=7, minutes=-1), window_min=10080
    )
    assert pace.average_burn(w, NOW) is None
    assert pace.average_burn(w, NOW + timedelta(hours=10)) == pytest.approx(3 / (10 + 1 / 60))


# -- token flow ----------------------------------------------------------------------------------


def test_token_flow_reads_a_steady_rate_and_decays_when_idle() -> None:
    flow = pace.TokenFlow()
    tau_h = 1.0
    at = NOW
    # 10 000 tokens every 6 minutes for 5 hours: a steady 100 000 tokens/h.
    for _ in range(50):
        at += timedelta(minutes=6)
        flow = pace.add_tokens(flow, 10_000, at, tau_h)
    assert pace.flow_now(flow, at, tau_h) == pytest.approx(100_000, rel=0.06)
    assert pace.flow_now(flow, at + timedelta(hours=1), tau_h) == pytest.approx(
        pace.flow_now(flow, at, tau_h) / 2.718281828, rel=1e-6
    )
    # A late report (an older timestamp) adds its tokens without rewinding the clock.
    late = pace.add_tokens(flow, 5_000, at - timedelta(hours=2), tau_h)
    assert late.at == at and late.tokens_per_h == pytest.approx(flow.tokens_per_h + 5_000)


# -- calibration ---------------------------------------------------------------------------------


def reading(pct: float, at: datetime, reset: datetime | None, source: Source = Source.HEADERS) -> QuotaWindow:
    return QuotaWindow(
        name="weekly", pct_used=pct, resets_at=reset, window_min=10080, updated_at=at, source=source
    )


def test_calibration_learns_percent_per_token_over_the_period() -> None:
    reset = NOW + timedelta(days=3)
    record = pace.observe(None, reading(40, NOW, reset), consumed=1_000_000)
    assert record is not None and record.pct_per_mtok is None
    # One point of growth is within rounding: not enough to learn from.
    record = pace.observe(record, reading(41, NOW + timedelta(hours=1), reset), consumed=1_500_000)
    assert record is not None and record.pct_per_mtok is None
    record = pace.observe(record, reading(44, NOW + timedelta(hours=2), reset), consumed=3_000_000)
    assert record is not None and record.pct_per_mtok == pytest.approx(2.0)  # 4 points over 2M tokens
    # A window shorter than a day is projected at the ledger's flow through that calibration...
    short = QuotaWindow(name="burst", pct_used=44, resets_at=NOW + timedelta(hours=2), window_min=300)
    assert pace.burn_rate(record, 500_000, short, NOW) == pace.Burn(pct_per_h=1.0, basis="ledger")
    # ...a weekly one at its average since it began, which already counts nights and weekends and
    # does not follow the last hour's traffic (the ranking's own choice).
    burn = pace.burn_rate(record, 500_000, reading(44, NOW, reset), NOW)
    assert burn == pace.Burn(pct_per_h=pytest.approx(44 / 96), basis="average since the window began")


def test_a_reset_starts_a_new_period_and_keeps_what_a_token_costs() -> None:
    reset = NOW + timedelta(days=1)
    record = pace.observe(None, reading(10, NOW, reset), consumed=0)
    record = pace.observe(record, reading(30, NOW + timedelta(hours=5), reset), consumed=2_000_000)
    assert record is not None and record.pct_per_mtok == pytest.approx(10.0)
    after = reset + timedelta(hours=1)
    record = pace.observe(record, reading(1, after, reset + timedelta(days=7)), consumed=2_100_000)
    assert record is not None
    assert (record.anchor_pct, record.anchor_tokens, record.period_reset) == (
        1,
        2_100_000,
        reset + timedelta(days=7),
    )
    assert record.pct_per_mtok == pytest.approx(10.0)


def test_usage_dropping_is_a_reset_even_without_a_reset_time() -> None:
    record = pace.observe(None, reading(60, NOW, None), consumed=0)
    record = pace.observe(record, reading(5, NOW + timedelta(hours=1), None), consumed=10)
    assert record is not None and record.anchor_pct == 5


def test_hand_set_windows_and_rate_buckets_teach_nothing() -> None:
    assert pace.observe(None, reading(50, NOW, None, Source.MANUAL), consumed=0) is None
    bucket = QuotaWindow(name="tokens", pct_used=50, kind=WindowKind.RATE, updated_at=NOW)
    assert pace.observe(None, bucket, consumed=0) is None


# -- scoring -------------------------------------------------------------------------------------


def test_paid_keys_come_after_subscriptions_that_run_out() -> None:
    runs_out = reading(90, NOW, NOW + timedelta(days=3))
    sub = pace.score(
        [runs_out],
        {"weekly": pace.Burn(pct_per_h=1, basis="ledger")},
        NOW,
        paid=False,
        health=Health.HEALTHY,
        priority=1,
        quota_pct=0.1,
    )
    key = pace.score([], {}, NOW, paid=True, health=Health.HEALTHY, priority=2, quota_pct=0.9)
    assert sub.key < key.key
    assert sub.score is not None and sub.score < 0 and "runs out in 10h" in sub.note
    assert key.score is None and key.note.startswith("paid overflow")


def test_unhealthy_is_demoted_below_everything_and_degraded_below_its_tier() -> None:
    w = [reading(10, NOW, NOW + timedelta(days=3))]
    healthy = pace.score(w, {}, NOW, paid=False, health=Health.HEALTHY, priority=1, quota_pct=0.9)
    degraded = pace.score(w, {}, NOW, paid=False, health=Health.DEGRADED, priority=1, quota_pct=0.9)
    unhealthy = pace.score(w, {}, NOW, paid=False, health=Health.UNHEALTHY, priority=1, quota_pct=0.9)
    paid = pace.score([], {}, NOW, paid=True, health=Health.HEALTHY, priority=2, quota_pct=-1)
    assert sorted([unhealthy.key, paid.key, degraded.key, healthy.key]) == [
        healthy.key,
        degraded.key,
        paid.key,
        unhealthy.key,
    ]
    assert degraded.note.endswith("; degraded") and unhealthy.note.endswith("; unhealthy")
