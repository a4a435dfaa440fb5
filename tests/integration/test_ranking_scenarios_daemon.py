"""``router.rank`` receipts from a real daemon: the pace strategy from config, scores and reasons,
budget skips, and an agent over its budget, as a harness and a person see them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.conftest import DaemonProcess

OPUS = "claude-opus-4-5"


def unified(
    now: datetime, five_hour: float, five_hour_reset: timedelta, week: float, week_reset: timedelta
) -> dict[str, str]:
    return {
        "anthropic-ratelimit-unified-status": "allowed",
        "anthropic-ratelimit-unified-5h-utilization": f"{five_hour:.2f}",
        "anthropic-ratelimit-unified-5h-reset": str(int((now + five_hour_reset).timestamp())),
        "anthropic-ratelimit-unified-7d-utilization": f"{week:.2f}",
        "anthropic-ratelimit-unified-7d-reset": str(int((now + week_reset).timestamp())),
    }


def test_pace_receipts(make_daemon: Any) -> None:
    """Claude: 10 % of its 5-hour window used with 3 h to go, 70 % of its week with 20 h to go.
    Copilot, set by hand: 60 % of its 5-hour window left and 70 % of its week, resetting in two days.

    Expected order, pace: claude_code (binding 5-hour window at 1.25x even pace to spare; its week,
    about to reset, has 1.7x), github-copilot (0.6x: its 5-hour window), anthropic_api (paid).
    Headroom would put Copilot first: 60 % left against Claude's 30 %."""
    daemon: DaemonProcess = make_daemon(
        config="routing:\n  strategy: pace\n", env={"ANTHROPIC_API_KEY": "sk-ant-test"}
    )
    now = datetime.now(UTC).replace(microsecond=0)
    with daemon.router() as router:
        router.record_turn(
            "claude_code",
            OPUS,
            100,
            10,
            unified(now, 0.10, timedelta(hours=3), 0.70, timedelta(hours=20)),
            wait=True,
        )
        router.set_quota("github-copilot", 60, 70, resets_at=now + timedelta(days=2))
        ranking = router.rank(OPUS)
    assert ranking.strategy == "pace"
    assert [c.provider_id for c in ranking.candidates] == [
        "claude_code",
        "github-copilot",
        "anthropic_api",
        "openrouter",
    ]
    claude, copilot, api, openrouter = ranking.candidates
    assert claude.score == pytest.approx((90 - 10 / 2 * 3) * 5 / (100 * 3), abs=0.02)
    assert claude.reason.startswith("chosen: 'burst' 90% left, resets in 3h00m, pace -30")
    assert "(average since the window began) → lasts" in claude.reason and "weekly 30% left" in claude.reason
    assert copilot.score == pytest.approx(0.6) and copilot.reason.startswith("'burst' 60% left")
    assert api.eligible and api.score is None and api.reason.startswith("paid overflow")
    assert not openrouter.eligible and openrouter.reason.startswith("unavailable")
    assert ranking.recommendation is not None and ranking.recommendation.provider_id == "claude_code"

    explained = daemon.cli("best", OPUS, "--explain")
    lines = explained.stdout.splitlines()
    assert lines[0] == f"{OPUS} (family anthropic, strategy pace):"
    assert lines[1].split()[:2] == ["1.", "claude_code"] and "score +1.25" in lines[1]
    status = json.loads(daemon.cli("daemon", "--json").stdout)
    assert status["strategy"] == "pace"


def test_headroom_stays_the_default(daemon: DaemonProcess) -> None:
    with daemon.router() as router:
        router.set_quota("claude_code", 30)
        router.set_quota("github-copilot", 60)
        ranking = router.rank(OPUS)
    assert ranking.strategy == "headroom"
    assert [c.provider_id for c in ranking.candidates if c.eligible] == ["github-copilot", "claude_code"]
    assert ranking.candidates[0].score == pytest.approx(0.6)


def test_budget_skips_show_in_receipts(make_daemon: Any) -> None:
    daemon: DaemonProcess = make_daemon(
        config=("budgets:\n  providers:\n    anthropic_api: 0.50\n  agents:\n    nightly: 0.10\n"),
        env={"ANTHROPIC_API_KEY": "sk-ant-test"},
    )
    with daemon.router() as router:
        # $0.25 on the API key, billed to "nightly": over its $0.10, not yet over the key's $0.50.
        router.record_turn("anthropic_api", OPUS, 50_000, agent="nightly", wait=True)
        assert router.best_for(OPUS).provider_id == "anthropic_api"  # type: ignore[union-attr]
        assert router.best_for(OPUS, agent="nightly") is None
        nightly = router.rank(OPUS, agent="nightly")
        reason = next(c.reason for c in nightly.candidates if c.provider_id == "anthropic_api")
        assert reason.startswith("agent 'nightly' is over its monthly budget ($0.25 of $0.10 billed")
        router.record_turn("anthropic_api", OPUS, 50_000, wait=True)  # $0.50 in all
        ranking = router.rank(OPUS)
    api = next(c for c in ranking.candidates if c.provider_id == "anthropic_api")
    assert not api.eligible and api.reason.startswith("over its monthly budget: $0.50 of $0.50 spent")
    # Durable: the ledger is the record, so a restart changes nothing.
    daemon.restart()
    best = daemon.cli("best", OPUS, "--explain")
    assert best.returncode == 3 and "over its monthly budget: $0.50 of $0.50" in best.stdout
    as_agent = daemon.cli("best", OPUS, "--agent", "someone", "--json")
    assert as_agent.returncode == 3


def test_an_unknown_strategy_is_refused_with_the_choices(make_daemon: Any) -> None:
    daemon: DaemonProcess = make_daemon(config="routing:\n  strategy: fastest\n", start=False)
    daemon.start(wait=False)
    assert daemon.proc is not None and daemon.proc.wait(15) != 0
    assert "unknown strategy 'fastest'; choose one of headroom, pace" in daemon.log_text()


def test_two_sessions_keep_their_providers_until_a_margin_or_eligibility_moves_them(
    daemon: DaemonProcess,
) -> None:
    """Two harness sessions alternate calls against a real daemon (headroom, margin 0.1). Each keeps
    the provider it used, and its prompt cache, until another is better by the margin plus what the
    cache is worth, or its provider stops being eligible; every receipt says which."""
    with daemon.router() as router:
        router.set_quota("claude_code", 60)
        router.set_quota("github-copilot", 55)
        first = router.best_for(OPUS, session="s1")
        assert first is not None and first.provider_id == "claude_code"
        router.record_turn("claude_code", OPUS, 2_000, 500, cache_read_tokens=50_000, session="s1", wait=True)

        router.set_quota("github-copilot", 70)
        second = router.best_for(OPUS, session="s2")
        assert second is not None and second.provider_id == "github-copilot"
        router.record_turn("github-copilot", OPUS, 2_000, 500, session="s2", wait=True)

        # s1 stays: Copilot is better by 0.10, but moving would re-send 50k cached tokens of Opus.
        kept = router.best_for(OPUS, session="s1")
        assert kept is not None and kept.provider_id == "claude_code"
        assert kept.reason.startswith("chosen: kept: session s1 is on claude_code (switching would cost ~$0.")
        assert "github-copilot is better by only 0.10" in kept.reason
        # s2 is where it would be sent anyway, and is told so.
        same = router.best_for(OPUS, session="s2")
        assert same is not None and same.reason.startswith("chosen: kept: session s2 is on github-copilot")

        # A clear margin moves a session (s2 holds no cache, so the margin is the configured 0.1).
        router.set_quota("claude_code", 100)
        moved = router.best_for(OPUS, session="s2")
        assert moved is not None and moved.provider_id == "claude_code"
        assert "moved: session s2 was on github-copilot; claude_code is better by 0.30" in moved.reason

        # An eligibility change moves one whatever its cache: Claude answers 429 for ten minutes.
        router.record_turn("claude_code", OPUS, status_code=429, headers={"retry-after": "600"}, wait=True)
        throttled = router.rank(OPUS, session="s1")
        assert throttled.recommendation is not None
        assert throttled.recommendation.provider_id == "github-copilot"
        assert (
            "moved: session s1 was on claude_code, now cooling down until" in throttled.recommendation.reason
        )
        # Asking without a session is unaffected by either session's affinity.
        plain = router.best_for(OPUS)
        assert plain is not None and plain.provider_id == "github-copilot" and "session" not in plain.reason
