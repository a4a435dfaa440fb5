"""Ranking scenarios with the expected order written down, health transitions, cooldown rules, and
which reading wins between a poll and a response's headers. All through the pure state and routing
functions, with time passed in.

Providers in the ``anthropic`` family, in config order: claude_code (subscription, priority 1),
anthropic_api (API key, priority 2), github-copilot (subscription, priority 3).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

from bhoga.protocol import Health, ProviderStatus, QuotaWindow, Source, Turn
from bhoga.quota.headers import read_response
from bhogad import config
from bhogad.domain.keeper import InvalidInput, QuotaKeeper
from bhogad.domain.routing import rank
from bhogad.domain.state import (
    Availability,
    PollResult,
    ProviderState,
    apply_poll,
    apply_turn,
    merge_windows,
    model_view,
    new_provider,
    provider_quota,
)
from bhogad.storage.store import Store
from tests.fakes.fixtures import load

NOW = datetime(2026, 9, 24, 12, 0, tzinfo=UTC)
HEADROOM = config.build()
PACE = config.build({"routing": {"strategy": "pace"}})
MODEL = "claude-sonnet-4-5"


def weekly(used: float, resets_in: timedelta, at: datetime = NOW, **kw: Any) -> QuotaWindow:
    return QuotaWindow(
        name="weekly",
        pct_used=used,
        resets_at=at + resets_in,
        window_min=10080,
        updated_at=at,
        source=kw.pop("source", Source.OAUTH),
        **kw,
    )


def monthly(used: float, resets_in: timedelta, at: datetime = NOW) -> QuotaWindow:
    return QuotaWindow(
        name="monthly",
        pct_used=used,
        resets_at=at + resets_in,
        window_min=43200,
        updated_at=at,
        source=Source.OAUTH,
    )


def burst(used: float, resets_in: timedelta, at: datetime = NOW) -> QuotaWindow:
    return QuotaWindow(
        name="burst",
        pct_used=used,
        resets_at=at + resets_in,
        window_min=300,
        updated_at=at,
        source=Source.OAUTH,
    )


def provider(pid: str, *windows: QuotaWindow) -> ProviderState:
    p = new_provider(pid)
    p.detected = Availability(available=True, reason="test credentials")
    merge_windows(p, list(windows))
    return p


def order(cfg: config.Config, *providers: ProviderState, now: datetime = NOW) -> list[str]:
    ranking = rank(MODEL, {p.id: p for p in providers}, cfg, now)
    return [c.provider_id for c in ranking.candidates if c.eligible]


def api_key() -> ProviderState:
    return provider("anthropic_api")


def turn(p: ProviderState, status: int, at: datetime, model: str = MODEL, tokens: int = 0, **kw: Any) -> None:
    t = Turn(provider=p.id, model=model, status_code=status, input_tokens=tokens, at=at, **kw)
    apply_turn(p, t, read_response(t.headers, status_code=status, error_body=t.error_body, now=at), at)


# --------------------------------------------------------------------------------------------------
# Ranking scenarios


def test_use_it_or_lose_it() -> None:
    """Claude has 30 % of its week left and it resets in 20 hours; Copilot has 70 % of its month left
    with twenty days to go. Headroom takes the larger remainder (Copilot) and lets Claude's lapse.
    Pace projects both at their average rate so far: Claude ends its week with 20.5 % unspent (1.7x
    even pace to spare), Copilot with 10 % (0.15x), so Claude is spent first."""
    claude = provider("claude_code", weekly(70, timedelta(hours=20)))
    copilot = provider("github-copilot", monthly(30, timedelta(days=20)))
    everyone = (claude, copilot, api_key())
    assert order(HEADROOM, *everyone) == ["github-copilot", "claude_code", "anthropic_api"]
    assert order(PACE, *everyone) == ["claude_code", "github-copilot", "anthropic_api"]
    receipt = {c.provider_id: c for c in rank(MODEL, {p.id: p for p in everyone}, PACE, NOW).candidates}
    claude_surplus = 30 - 70 / 148 * 20  # used / elapsed hours, times the hours left
    assert receipt["claude_code"].score == pytest.approx(claude_surplus * 168 / (100 * 20))
    assert receipt["claude_code"].reason.startswith("chosen: 'weekly' 30% left, resets in 20h00m, pace -18;")
    assert "→ lasts, 1.73x even pace to spare" in receipt["claude_code"].reason
    copilot_surplus = 70 - 30 / 240 * 480
    assert receipt["github-copilot"].score == pytest.approx(copilot_surplus * 720 / (100 * 480))
    assert receipt["anthropic_api"].score is None
    assert receipt["anthropic_api"].reason.startswith("paid overflow")


def test_never_a_window_that_runs_out_when_another_lasts() -> None:
    """Claude has 60 % of its week left, but harnesses are burning it at 1 %/h and it resets in four
    days: empty in 60 h, 36 h early. Copilot has 40 % left and, at its average rate, lasts. Headroom
    picks Claude (60 > 40); pace picks Copilot, and the receipt says when Claude would run out."""
    claude = provider("claude_code")
    reset = NOW + timedelta(days=4)
    # Readings two hours apart with 2M tokens reported between them: 1 % per 500k tokens.
    start = NOW - timedelta(hours=2)
    merge_windows(claude, [weekly(36, reset - start, at=start)])
    for minute in range(0, 120, 6):
        turn(claude, 200, start + timedelta(minutes=minute + 6), tokens=100_000)
    merge_windows(claude, [weekly(40, reset - NOW)])
    assert claude.burn["weekly"].pct_per_mtok == pytest.approx(2.0)
    copilot = provider("github-copilot", monthly(60, timedelta(days=10)))
    everyone = (claude, copilot, api_key())
    assert order(HEADROOM, *everyone) == ["claude_code", "github-copilot", "anthropic_api"]
    assert order(PACE, *everyone) == ["github-copilot", "claude_code", "anthropic_api"]
    receipt = {c.provider_id: c for c in rank(MODEL, {p.id: p for p in everyone}, PACE, NOW).candidates}
    assert "(ledger)" in receipt["claude_code"].reason and "before its reset" in receipt["claude_code"].reason
    assert receipt["claude_code"].score is not None and receipt["claude_code"].score < 0
    # An hour without traffic later the flow has decayed (time constant 1 h), and so has the burn.
    later = rank(MODEL, {p.id: p for p in everyone}, PACE, NOW + timedelta(hours=4))
    assert later.recommendation is not None and later.recommendation.provider_id == "claude_code"


def test_a_nearly_spent_five_hour_window_loses_to_a_fresh_one() -> None:
    """Both strategies agree: Claude's 5-hour window has 5 % left for four more hours."""
    claude = provider("claude_code", burst(95, timedelta(hours=4)), weekly(20, timedelta(days=3)))
    copilot = provider("github-copilot", monthly(50, timedelta(days=15)))
    assert order(HEADROOM, claude, copilot) == ["github-copilot", "claude_code"]
    assert order(PACE, claude, copilot) == ["github-copilot", "claude_code"]
    receipt = rank(MODEL, {"claude_code": claude, "github-copilot": copilot}, PACE, NOW)
    assert "'burst' 5% left" in receipt.candidates[1].reason


def test_every_subscription_spent_sends_the_turn_to_the_paid_key() -> None:
    claude = provider("claude_code", weekly(100, timedelta(days=2)))
    copilot = provider("github-copilot", monthly(100, timedelta(days=9)))
    for cfg in (HEADROOM, PACE):
        ranking = rank(MODEL, {p.id: p for p in (claude, copilot, api_key())}, cfg, NOW)
        assert ranking.recommendation is not None and ranking.recommendation.provider_id == "anthropic_api"
        assert [c.status for c in ranking.candidates[1:3]] == [ProviderStatus.EXHAUSTED] * 2


def test_unknown_subscriptions_come_after_known_ones_and_before_paid_keys() -> None:
    claude = provider("claude_code")  # nothing known
    copilot = provider("github-copilot", monthly(97, timedelta(days=3)))  # 3 % left, but known
    assert order(PACE, claude, copilot, api_key()) == ["github-copilot", "claude_code", "anthropic_api"]
    assert order(HEADROOM, claude, copilot, api_key()) == ["github-copilot", "claude_code", "anthropic_api"]


def test_priority_breaks_exact_ties() -> None:
    claude = provider("claude_code", weekly(50, timedelta(days=3)))
    copilot = provider("github-copilot", weekly(50, timedelta(days=3)))
    assert order(PACE, copilot, claude) == ["claude_code", "github-copilot"]
    assert order(HEADROOM, copilot, claude) == ["claude_code", "github-copilot"]


def test_receipts_name_the_strategy_and_the_health() -> None:
    claude = provider("claude_code", weekly(10, timedelta(days=3)))
    for minute in range(2):
        turn(claude, 503, NOW - timedelta(minutes=minute))
    for cfg, name in ((HEADROOM, "headroom"), (PACE, "pace")):
        ranking = rank(MODEL, {"claude_code": claude}, cfg, NOW)
        assert ranking.strategy == name
        assert ranking.candidates[0].reason.endswith("; degraded")


# --------------------------------------------------------------------------------------------------
# Health


def health(
    p: ProviderState, cfg: config.Config = HEADROOM, now: datetime = NOW, model: str = MODEL
) -> Health:
    return model_view(p, model, cfg.providers.get(p.id), cfg, now).health


def test_health_walks_healthy_degraded_unhealthy_and_one_success_restores_it() -> None:
    p = provider("anthropic_api")
    seen = []
    for i, code in enumerate((500, 529, 408, 0, 502)):
        turn(p, code, NOW + timedelta(seconds=i))
        seen.append(health(p, now=NOW + timedelta(seconds=i)))
    assert seen == [Health.HEALTHY, Health.DEGRADED, Health.DEGRADED, Health.DEGRADED, Health.UNHEALTHY]
    turn(p, 200, NOW + timedelta(seconds=9))
    assert health(p, now=NOW + timedelta(seconds=9)) is Health.HEALTHY and p.last_error is None


def test_thresholds_are_configurable() -> None:
    cfg = config.build({"routing": {"degraded_after": 1, "unhealthy_after": 3}})
    p = provider("anthropic_api")
    turn(p, 500, NOW)
    assert health(p, cfg) is Health.DEGRADED
    turn(p, 500, NOW)
    turn(p, 500, NOW)
    assert health(p, cfg) is Health.UNHEALTHY
    with pytest.raises(Exception, match="unhealthy_after must be at least degraded_after"):
        config.build({"routing": {"degraded_after": 4, "unhealthy_after": 3}})


def test_429_is_quota_not_health_and_529_is_health_not_quota() -> None:
    p = provider("anthropic_api")
    for _ in range(6):
        turn(p, 429, NOW, headers={"retry-after": "30"})
    assert health(p) is Health.HEALTHY and p.cooldown_until == NOW + timedelta(seconds=30)
    q = provider("claude_code")
    for _ in range(6):
        turn(q, 529, NOW)
    assert health(q) is Health.UNHEALTHY and q.cooldown_until is None
    assert q.last_error == f"HTTP 529: {MODEL} overloaded"


def test_a_model_that_keeps_failing_is_unhealthy_on_its_own() -> None:
    """Opus overloaded while Sonnet answers: only Opus is demoted."""
    p = provider("claude_code", weekly(10, timedelta(days=3)))
    for i in range(5):
        turn(p, 529, NOW + timedelta(seconds=2 * i), model="claude-opus-4-5")
        turn(p, 200, NOW + timedelta(seconds=2 * i + 1), model=MODEL)
    assert health(p, model="claude-opus-4-5") is Health.UNHEALTHY
    assert health(p, model="anthropic/claude-opus-4-5") is Health.UNHEALTHY
    assert health(p, model=MODEL) is Health.HEALTHY
    assert health(p, model="*") is Health.HEALTHY
    # quota.list (and so `bhoga status`) shows the demoted model, not just a healthy provider.
    listed = provider_quota(p, None, HEADROOM, NOW + timedelta(seconds=10))
    assert listed.health is Health.HEALTHY and listed.model_health == {"claude-opus-4-5": Health.UNHEALTHY}
    # An outage of the whole provider reaches models nobody has tried yet.
    for _ in range(5):
        turn(p, 503, NOW + timedelta(seconds=20), model=MODEL)
    assert health(p, model="claude-haiku-4-5") is Health.UNHEALTHY


def test_an_unhealthy_provider_is_offered_again_after_a_quiet_spell() -> None:
    p = provider("anthropic_api")
    for _ in range(5):
        turn(p, 500, NOW)
    probe = timedelta(seconds=HEADROOM.routing.health_probe_after_s)
    assert health(p, now=NOW + probe - timedelta(seconds=1)) is Health.UNHEALTHY
    view = model_view(p, MODEL, None, HEADROOM, NOW)
    assert view.changes_at == NOW + probe  # so a cached ranking expires when the probe opens
    assert health(p, now=NOW + probe) is Health.DEGRADED
    turn(p, 500, NOW + probe)  # the probe failed: straight back to unhealthy
    assert health(p, now=NOW + probe) is Health.UNHEALTHY


def test_credentials_refused_until_a_success_or_a_later_good_poll() -> None:
    p = provider("claude_code", weekly(10, timedelta(days=3)))
    turn(p, 401, NOW)
    view = model_view(p, MODEL, None, HEADROOM, NOW)
    assert not view.available and "credentials refused" in view.reason
    # A poll from before the refusal proves nothing; one after it (new login) does.
    ok = Availability(available=True, reason="credentials found")
    apply_poll(p, PollResult(at=NOW - timedelta(minutes=1), availability=ok))
    assert not model_view(p, MODEL, None, HEADROOM, NOW).available
    apply_poll(p, PollResult(at=NOW + timedelta(minutes=1), availability=ok))
    assert model_view(p, MODEL, None, HEADROOM, NOW).available


# --------------------------------------------------------------------------------------------------
# Cooldowns


def test_cooldowns_extend_and_never_shorten() -> None:
    p = provider("openai-codex")
    case = load("codex-usage-limit-error.json")
    body_at = NOW
    turn(p, 429, body_at, headers=case["headers"], error_body=case["body"])
    first = p.cooldown_until
    assert (
        first is not None and first > NOW + timedelta(hours=1) and p.cooldown_reason == "usage limit reached"
    )
    turn(p, 429, NOW + timedelta(seconds=5), headers={"retry-after": "10"})
    assert p.cooldown_until == first and p.cooldown_reason == "usage limit reached"
    turn(p, 429, NOW + timedelta(seconds=6), headers={"retry-after": str(10 * 24 * 3600)})
    assert p.cooldown_until == NOW + timedelta(seconds=6, days=10)


def test_a_rejected_subscription_window_stops_even_on_a_200_and_lifts_at_its_reset() -> None:
    p = provider("claude_code")
    headers = load("anthropic-unified-headers.json") | {"anthropic-ratelimit-unified-7d-status": "rejected"}
    turn(p, 200, NOW, headers=headers)
    reset = datetime.fromtimestamp(1790499600, UTC)
    assert p.cooldown_until == reset
    assert order(HEADROOM, p) == []
    assert order(HEADROOM, p, now=reset) == ["claude_code"]


# --------------------------------------------------------------------------------------------------
# Headers against polls


def test_a_header_reading_wins_until_the_next_poll() -> None:
    p = provider("claude_code")
    ok = Availability(available=True, reason="credentials found")
    apply_poll(p, PollResult(at=NOW, availability=ok, windows=[weekly(30, timedelta(days=3))]))
    headers = load("anthropic-unified-headers.json")  # weekly 61 %
    turn(p, 200, NOW + timedelta(minutes=1), headers=headers)
    assert (p.windows["weekly"].source, p.windows["weekly"].pct_used) == (Source.HEADERS, 61)
    later = NOW + timedelta(minutes=5)
    apply_poll(p, PollResult(at=later, availability=ok, windows=[weekly(63, timedelta(days=3), at=later)]))
    assert (p.windows["weekly"].source, p.windows["weekly"].pct_used) == (Source.OAUTH, 63)


def test_a_turn_reported_late_does_not_override_a_newer_poll(tmp_path: Path) -> None:
    """The daemon dates a header reading by when the response came (``turn.at``), not by when the
    harness got round to reporting it."""
    clock = [NOW]

    async def main() -> None:
        store = Store.open(tmp_path)
        try:
            daemon = QuotaKeeper(config.build(), store, lambda: clock[0])
            daemon.load()
            ok = Availability(available=True, reason="credentials found")
            daemon.apply_poll(
                "claude_code", PollResult(at=NOW, availability=ok, windows=[weekly(30, timedelta(days=3))])
            )
            headers = load("anthropic-unified-headers.json")
            clock[0] = NOW + timedelta(minutes=2)
            late = Turn(provider="claude_code", model=MODEL, headers=headers, at=NOW - timedelta(minutes=10))
            daemon.record_turn(late)
            assert daemon.providers["claude_code"].windows["weekly"].pct_used == 30
            daemon.record_turn(Turn(provider="claude_code", model=MODEL, headers=headers))
            assert daemon.providers["claude_code"].windows["weekly"].pct_used == 61
            # A harness clock running a little ahead of ours cannot date its reading past our own
            # now; one running far ahead is refused, naming the field (bhoga.quota.values bounds).
            ahead = Turn(
                provider="claude_code", model=MODEL, headers=headers, at=clock[0] + timedelta(minutes=2)
            )
            daemon.record_turn(ahead)
            assert daemon.providers["claude_code"].windows["weekly"].updated_at == clock[0]
            assert daemon.providers["claude_code"].last_turn_at == clock[0]
            far = Turn(provider="claude_code", model=MODEL, headers=headers, at=NOW + timedelta(hours=1))
            with pytest.raises(InvalidInput) as refused:
                daemon.record_turn(far)
            assert str(refused.value).startswith("at ") and "ahead" in str(refused.value)
            await daemon.writer.flush()
        finally:
            store.close()

    anyio.run(main)


def test_pace_rankings_are_reused_only_briefly(tmp_path: Path) -> None:
    clock = [NOW]

    async def main() -> None:
        store = Store.open(tmp_path)
        try:
            daemon = QuotaKeeper(PACE, store, lambda: clock[0])
            daemon.load()
            first = daemon.rank(MODEL)
            assert daemon.rank(MODEL) is first
            clock[0] = NOW + timedelta(seconds=PACE.routing.pace_recompute_s)
            assert daemon.rank(MODEL) is not first
        finally:
            store.close()

    anyio.run(main)


def test_a_named_codex_limit_from_headers_limits_its_model_and_meets_the_poll(tmp_path: Path) -> None:
    """``x-codex-bengalfox-*`` names its model (GPT-5.3-Codex-Spark): the header reading takes the
    same key the poller gives that limit, so the newer of the two wins, and a full Spark window
    blocks Spark without blocking the account's other models."""
    spark = "gpt-5.3-codex-spark"
    clock = [NOW]

    async def main() -> None:
        store = Store.open(tmp_path)
        try:
            daemon = QuotaKeeper(config.build(), store, lambda: clock[0])
            daemon.load()
            full = load("codex-headers.json") | {"x-codex-bengalfox-primary-used-percent": "100"}
            daemon.record_turn(Turn(provider="openai-codex", model=spark, headers=full))
            codex = daemon.providers["openai-codex"]
            assert codex.windows[f"burst/{spark}"].pct_used == 100
            assert not any(key.endswith("limit:codex_bengalfox") for key in codex.windows)
            blocked = daemon.rank(spark)
            assert blocked.recommendation is None or blocked.recommendation.provider_id != "openai-codex"
            reason = next(c.reason for c in blocked.candidates if c.provider_id == "openai-codex")
            assert reason.startswith(f"'burst/{spark}' window exhausted until")
            other = daemon.rank("gpt-5.4").recommendation
            assert other is not None and other.provider_id == "openai-codex"
            await daemon.writer.flush()
        finally:
            store.close()

    anyio.run(main)
