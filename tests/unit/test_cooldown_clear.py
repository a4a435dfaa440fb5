"""``clear_cooldown``: what a person's "try it again now" lifts, and what it leaves alone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bhoga.protocol import QuotaWindow, Source, WindowKind
from bhogad.domain.state import Failures, ProviderState, clear_cooldown, extend_cooldown

NOW = datetime(2026, 9, 24, 12, 0, tzinfo=UTC)


def _window(name: str, scope: str, kind: WindowKind, pct_used: float = 100.0) -> QuotaWindow:
    return QuotaWindow(
        name=name,
        pct_used=pct_used,
        resets_at=NOW + timedelta(hours=1),
        updated_at=NOW,
        scope=scope,
        source=Source.HEADERS,
        kind=kind,
    )


def _state() -> ProviderState:
    p = ProviderState(id="anthropic_api")
    extend_cooldown(p, NOW + timedelta(days=400), "429 rate limited (retry-after 34560000s)", NOW)
    for w in (
        _window("requests", "*", WindowKind.RATE),
        _window("tokens", "claude-opus-4", WindowKind.RATE),
        _window("tokens", "claude-sonnet-4", WindowKind.RATE),
        _window("weekly", "*", WindowKind.QUOTA),
    ):
        p.windows[w.key] = w
    p.model_failures["claude-opus-4"] = Failures(count=7, last_at=NOW)
    return p


def test_whole_provider_lifts_cooldown_and_every_empty_bucket_but_no_quota() -> None:
    p = _state()
    lifted = clear_cooldown(p, "*", NOW)
    # 400 days were asked for; a cooldown is bounded to 31 days from when it was set.
    assert lifted[0].startswith("cooldown until 2026-10-25") and len(lifted) == 4
    assert p.cooldown_until is None and p.cooldown_since is None
    assert set(p.windows) == {"weekly"}  # an exhausted week is the account's fact, not a cooldown
    assert "claude-opus-4" in p.model_failures  # health is per model: only a model clear forgets it


def test_one_model_lifts_only_what_holds_that_model_back() -> None:
    p = _state()
    lifted = clear_cooldown(p, "anthropic/claude-opus-4", NOW)
    assert p.cooldown_until is None
    assert set(p.windows) == {"weekly", "tokens/claude-sonnet-4"}
    assert not p.model_failures and lifted[-1] == "7 consecutive failures of claude-opus-4"


def test_nothing_running_lifts_nothing() -> None:
    p = ProviderState(id="x")
    p.windows["tokens"] = _window("tokens", "*", WindowKind.RATE, pct_used=40.0)
    assert clear_cooldown(p, "*", NOW) == [] and "tokens" in p.windows
    expired = ProviderState(id="y")
    extend_cooldown(expired, NOW - timedelta(seconds=1), "old", NOW - timedelta(hours=1))
    assert clear_cooldown(expired, "*", NOW) == [] and expired.cooldown_until is None
