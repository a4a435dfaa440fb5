"""The pure state model and ranking, scenario by scenario.

Each test names the library bug from bhoga-behaviour.md §7 it guards against, where there is one.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bhoga.protocol import ProviderKind, ProviderStatus, QuotaWindow, SetQuotaParams, Source, Turn, WindowKind
from bhoga.quota.headers import read_response
from bhogad.config import build
from bhogad.domain.routing import rank
from bhogad.domain.state import (
    Availability,
    PollResult,
    ProviderState,
    apply_poll,
    apply_turn,
    effective_window,
    manual_windows,
    merge_windows,
    model_view,
    new_provider,
    scope_applies,
)

NOW = datetime(2026, 9, 24, 12, 0, tzinfo=UTC)
CFG = build()


def window(name: str, used: float, **kw: object) -> QuotaWindow:
    kw.setdefault("updated_at", NOW)
    kw.setdefault("source", Source.OAUTH)
    return QuotaWindow(name=name, pct_used=used, **kw)  # type: ignore[arg-type]


def provider(pid: str, *windows: QuotaWindow, available: bool = True) -> ProviderState:
    p = new_provider(pid)
    p.detected = Availability(available=available, reason="test credentials" if available else "none")
    merge_windows(p, list(windows))
    return p


def set_quota(
    p: ProviderState, pct: float, weekly: float | None = None, model: str = "*", at: datetime = NOW
) -> None:
    kind = CFG.providers[p.id].kind if p.id in CFG.providers else ProviderKind.API_KEY
    merge_windows(
        p,
        manual_windows(
            SetQuotaParams(provider=p.id, pct_remaining=pct, weekly_pct=weekly, model=model), kind, at
        ),
    )


def order(model: str, *providers: ProviderState, now: datetime = NOW) -> list[str]:
    ranking = rank(model, {p.id: p for p in providers}, CFG, now)
    return [c.provider_id for c in ranking.candidates if c.eligible]


# -- ranking -------------------------------------------------------------------------------------


def test_most_remaining_in_tightest_window_wins() -> None:
    claude = provider("claude_code", window("burst", 10), window("weekly", 85))  # 15 % left
    api = provider("anthropic_api", window("quota", 50))  # 50 % left
    assert order("claude-opus-4", claude, api) == ["anthropic_api", "claude_code"]


def test_priority_breaks_ties_and_unknown_ranks_after_known() -> None:
    claude = provider("claude_code", window("burst", 97))  # 3 % left, known
    api = provider("anthropic_api")  # unknown
    copilot = provider("github-copilot", window("monthly", 97))
    assert order("claude-sonnet-4.6", api, copilot, claude) == [
        "claude_code",
        "github-copilot",
        "anthropic_api",
    ]


def test_unavailable_exhausted_and_cooling_providers_are_rejected_with_reasons() -> None:
    claude = provider("claude_code", window("weekly", 100, resets_at=NOW + timedelta(days=2)))
    api = provider("anthropic_api", window("quota", 80))
    api.cooldown_until, api.cooldown_reason = NOW + timedelta(seconds=30), "429 rate limited"
    copilot = provider("github-copilot", available=False)
    ranking = rank("claude-opus-4", {p.id: p for p in (claude, api, copilot)}, CFG, NOW)
    assert ranking.recommendation is None
    reasons = {c.provider_id: c.reason for c in ranking.candidates}
    assert "'weekly' window exhausted until 2026-09-26 12:00 UTC" in reasons["claude_code"]
    assert "cooling down" in reasons["anthropic_api"] and "429" in reasons["anthropic_api"]
    assert reasons["github-copilot"].startswith("unavailable")
    statuses = {c.provider_id: c.status for c in ranking.candidates}
    assert statuses == {
        "claude_code": ProviderStatus.EXHAUSTED,
        "anthropic_api": ProviderStatus.THROTTLED,
        "github-copilot": ProviderStatus.UNAVAILABLE,
        "openrouter": ProviderStatus.UNAVAILABLE,
    }


def test_cooldown_expires_on_its_own() -> None:
    """§7 item 21: THROTTLED used to stick until something recomputed; now time alone releases it."""
    api = provider("anthropic_api", window("quota", 20))
    api.cooldown_until, api.cooldown_reason = NOW + timedelta(seconds=30), "429"
    assert order("claude-opus-4", api) == []
    assert order("claude-opus-4", api, now=NOW + timedelta(seconds=31)) == ["anthropic_api"]


def test_google_models_fall_back_to_copilot_instead_of_none() -> None:
    """§7 item 17: the library gave Google models an empty list and so always None."""
    copilot = provider("github-copilot", window("monthly", 10))
    assert order("gemini-2.5-pro", copilot) == ["github-copilot"]


def test_vendor_prefixed_models_route_by_their_family() -> None:
    """§7 item 17: ``anthropic/claude-...`` used to be family 'other' (copilot only)."""
    claude = provider("claude_code", window("burst", 10))
    assert order("anthropic/claude-opus-4", claude) == ["claude_code"]


def test_unhealthy_provider_is_demoted_not_dropped() -> None:
    claude = provider("claude_code", window("burst", 10))
    claude.consecutive_failures = 9
    api = provider("anthropic_api", window("quota", 80))
    assert order("claude-opus-4", claude, api) == ["anthropic_api", "claude_code"]
    assert order("claude-opus-4", claude) == ["claude_code"]


# -- windows, resets, staleness -------------------------------------------------------------------


def test_window_past_reset_counts_as_reset_and_fixed_windows_roll_on() -> None:
    weekly = window("weekly", 90, resets_at=NOW - timedelta(hours=1), window_min=10080)
    now = effective_window(weekly, NOW, timedelta(hours=1))
    assert now.pct_used == 0.0 and not now.stale
    assert now.resets_at == NOW - timedelta(hours=1) + timedelta(days=7)
    burst = effective_window(
        window("burst", 90, resets_at=NOW - timedelta(hours=1), window_min=300), NOW, timedelta(hours=1)
    )
    assert burst.pct_used == 0.0 and burst.resets_at is None  # a 5-hour window restarts on the next message


def test_stale_windows_say_so_and_stop_counting_toward_the_fraction() -> None:
    old = NOW - timedelta(hours=3)
    p = provider("claude_code", window("burst", 20, updated_at=old), window("weekly", 50))
    view = model_view(p, "claude-opus-4", CFG.providers["claude_code"], CFG, NOW)
    stale = {w.name: w.stale for w in view.windows}
    assert stale == {"burst": True, "weekly": False}
    assert view.quota_pct == pytest.approx(0.5)


def test_stale_exhausted_window_still_blocks_until_its_reset() -> None:
    """Usage only grows inside a window: an old 100 % reading is still true until the reset."""
    old = NOW - timedelta(hours=5)
    p = provider("claude_code", window("weekly", 100, updated_at=old, resets_at=NOW + timedelta(days=1)))
    assert order("claude-opus-4", p) == []


def test_remaining_fraction_is_clamped() -> None:
    """§7 item 12: quota above 100 % used to beat everything."""
    p = provider("anthropic_api", window("quota", -50))
    assert model_view(p, "x", None, CFG, NOW).quota_pct == 1.0


def test_rate_buckets_block_until_refill_but_do_not_set_the_fraction() -> None:
    """§7 item 11: per-minute buckets are not budgets."""
    bucket = window(
        "tokens", 100, kind=WindowKind.RATE, resets_at=NOW + timedelta(seconds=20), source=Source.HEADERS
    )
    api = provider("anthropic_api", bucket)
    view = model_view(api, "claude-opus-4", CFG.providers["anthropic_api"], CFG, NOW)
    assert view.status is ProviderStatus.THROTTLED and view.quota_pct == -1.0
    half = window(
        "tokens", 60, kind=WindowKind.RATE, resets_at=NOW + timedelta(seconds=20), source=Source.HEADERS
    )
    api = provider("anthropic_api", half)
    assert model_view(api, "claude-opus-4", None, CFG, NOW).quota_pct == -1.0


# -- scopes and the shadowing bug ----------------------------------------------------------------


def test_scope_matching() -> None:
    assert scope_applies("*", "claude-opus-4")
    assert scope_applies("opus", "claude-opus-4") and scope_applies("opus", "anthropic/claude-opus-4-1")
    assert not scope_applies("opus", "claude-sonnet-4")
    assert scope_applies("claude-opus-4", "claude-opus-4") and not scope_applies(
        "claude-opus-4", "claude-opus-4-1"
    )
    assert not scope_applies("limit:codex_bengalfox", "gpt-5.4")


def test_per_model_windows_add_limits_instead_of_hiding_the_account_ones() -> None:
    """§7 item 19: an exact-model entry used to shadow every later provider-wide update."""
    p = provider("claude_code")
    set_quota(p, 90, model="claude-opus-4")
    set_quota(p, 5, at=NOW + timedelta(seconds=1))  # provider-wide, set afterwards
    assert model_view(p, "claude-opus-4", None, CFG, NOW).quota_pct == pytest.approx(0.05)
    assert model_view(p, "claude-sonnet-4", None, CFG, NOW).quota_pct == pytest.approx(0.05)
    p2 = provider("claude_code", window("weekly", 95, scope="opus"))
    set_quota(p2, 80)
    assert model_view(p2, "claude-opus-4", None, CFG, NOW).quota_pct == pytest.approx(0.05)
    assert model_view(p2, "claude-sonnet-4", None, CFG, NOW).quota_pct == pytest.approx(0.80)


def test_a_turn_never_forks_or_hides_a_later_set_quota() -> None:
    """§7 item 19: after one record_turn, set_quota used to stop affecting that model."""
    p = provider("claude_code")
    turn = Turn(provider="claude_code", model="claude-opus-4", input_tokens=5)
    apply_turn(p, turn, read_response({}, now=NOW), NOW)
    set_quota(p, 1.0)
    assert order("claude-opus-4", p) == ["claude_code"]
    assert model_view(p, "claude-opus-4", None, CFG, NOW).status is ProviderStatus.LOW


def test_manual_quota_wins_until_a_newer_observation_of_the_same_window() -> None:
    p = provider("claude_code")
    set_quota(p, 80, weekly=70)
    older = PollResult(
        at=NOW,
        availability=Availability(available=True, reason="x"),
        windows=[window("weekly", 10, updated_at=NOW - timedelta(minutes=1))],
    )
    apply_poll(p, older)
    assert p.windows["weekly"].source is Source.MANUAL
    newer = PollResult(
        at=NOW,
        availability=Availability(available=True, reason="x"),
        windows=[window("weekly", 10, updated_at=NOW + timedelta(minutes=1))],
    )
    apply_poll(p, newer)
    assert p.windows["weekly"].source is Source.OAUTH and p.windows["weekly"].pct_used == 10


def test_set_quota_on_an_api_key_is_a_known_quota() -> None:
    """§7 item 15: set_quota on token providers left the quota unknown."""
    api = provider("anthropic_api")
    set_quota(api, 50)
    assert model_view(api, "claude-opus-4", None, CFG, NOW).quota_pct == pytest.approx(0.5)


def test_a_failed_poll_keeps_the_last_good_windows() -> None:
    p = provider("claude_code", window("burst", 30))
    apply_poll(
        p,
        PollResult(
            at=NOW,
            availability=Availability(available=True, reason="creds"),
            error="Claude Code token expired — run `claude` to refresh it",
        ),
    )
    assert p.windows["burst"].pct_used == 30
    assert p.last_poll_error is not None and "expired" in p.last_poll_error


# -- turns: health, auth, cooldowns ---------------------------------------------------------------


def _turn(p: ProviderState, status: int, headers: dict[str, str] | None = None, at: datetime = NOW) -> None:
    turn = Turn(provider=p.id, model="claude-opus-4", status_code=status, headers=headers or {})
    apply_turn(p, turn, read_response(turn.headers, status_code=status, now=at), at)


def test_health_degrades_on_server_errors_and_one_success_restores_it() -> None:
    p = provider("anthropic_api", window("quota", 10))
    for code in (500, 529, 503, 502, 500):
        _turn(p, code)
    assert model_view(p, "m", None, CFG, NOW).health == "unhealthy"
    _turn(p, 200)
    assert model_view(p, "m", None, CFG, NOW).health == "healthy"


def test_auth_failure_makes_provider_unavailable_until_a_success() -> None:
    p = provider("anthropic_api", window("quota", 10))
    _turn(p, 401)
    view = model_view(p, "m", None, CFG, NOW)
    assert not view.available and "credentials refused" in view.reason
    _turn(p, 200)
    assert model_view(p, "m", None, CFG, NOW).available


def test_429_cooldown_only_ever_extends() -> None:
    p = provider("anthropic_api")
    _turn(p, 429, {"Retry-After": "120"})
    first = p.cooldown_until
    assert first == NOW + timedelta(seconds=120)
    _turn(p, 429, {"retry-after": "5"})
    assert p.cooldown_until == first
    _turn(p, 429, {"retry-after": "Thu, 24 Sep 2026 12:10:00 GMT"})  # §7 item 8: HTTP date no longer crashes
    assert p.cooldown_until == NOW + timedelta(minutes=10)


def test_successful_turn_makes_a_provider_available_without_local_credentials() -> None:
    """A systemd service may not see the harness's API key; a successful call proves it works."""
    p = new_provider("openai_api")
    p.detected = Availability(available=False, reason="no API key")
    _turn(p, 200)
    assert model_view(p, "gpt-5.4", CFG.providers["openai_api"], CFG, NOW).available
