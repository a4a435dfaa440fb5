"""One quota model, one boundary for untrusted values (issues 9 and 10).

``bhoga.calibrate`` and the daemon decide a provider's status, fraction and cooldown with the same
functions (``bhoga.quota.model``), so they must agree on any headers; and every class of
out-of-range value (far-future dates, non-finite and huge numbers, thousands of header families)
stops at ``bhoga.quota.values`` wherever it enters: headers, a provider's answer, a harness's turn,
a stored record.
"""

from __future__ import annotations

import math
import sqlite3
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from structlog.testing import capture_logs

from bhoga.protocol import (
    ProviderQuota,
    ProviderStatus,
    QuotaWindow,
    SetQuotaParams,
    Source,
    Turn,
    WindowKind,
)
from bhoga.quota import model
from bhoga.quota.headers import calibrate, mark_throttled, read_response, refresh_status
from bhoga.quota.values import (
    LONGEST_WINDOW,
    MAX_FAMILIES,
    MAX_PCT,
    MAX_TOKENS,
    MAX_WINDOWS,
    RESET_HORIZON,
    window_problem,
)
from bhogad import config
from bhogad.discovery.providers.openrouter import parse_credits, parse_key
from bhogad.domain.keeper import InvalidInput, QuotaKeeper
from bhogad.domain.state import (
    Availability,
    PollResult,
    ProviderState,
    apply_poll,
    apply_turn,
    new_provider,
    provider_quota,
    repair,
)
from bhogad.storage.store import Store
from tests.fakes.fixtures import load

NOW = datetime(2026, 9, 24, 12, 0, tzinfo=UTC)
CFG = config.build()
PID = "openai-codex"
OK = Availability(available=True, reason="credentials found")
DEFAULT_COOLDOWN = timedelta(seconds=CFG.routing.default_cooldown_s)

_FIXTURE_NAMES = sorted(
    {
        name
        for fixture in (
            "anthropic-api-headers.json",
            "anthropic-api-headers-429.json",
            "anthropic-unified-headers.json",
            "anthropic-unified-headers-429.json",
            "codex-headers.json",
            "openai-api-headers.json",
        )
        for name in load(fixture)
    }
    | {
        "retry-after",
        "retry-after-ms",
        "x-codex-primary-reset-after-seconds",
        "x-codex-bengalfox-primary-used-percent",
        "x-codex-bengalfox-primary-window-minutes",
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
    }
)
_VALUES = [
    *("0", "1", "5", "50", "99.5", "100", "130", "-5", "0.37", "1.0", "nan", "inf", "1e308", "1e-300"),
    *("300", "10080", "43200", "99999999", "6m0s", "20ms", "1790258400", "1790294400000", "99999999999"),
    *("rejected", "allowed", "allowed_warning", "five_hour", "seven_day", "true", "false"),
    *("Wed, 21 Oct 2099 07:28:00 GMT", "Thu, 24 Sep 2026 12:01:00 GMT", "2026-09-24T12:00:04Z"),
    *("9999-12-30T00:00:00Z", "1970-01-01T00:00:00Z", str(40 * 86400), str(20 * 86400)),
]
header_dicts = st.dictionaries(
    st.sampled_from(_FIXTURE_NAMES),
    st.sampled_from(_VALUES)
    | st.integers(0, 100).map(str)  # percents, counts and seconds
    | st.floats(0, 1).map(lambda f: f"{f:.2f}")  # Anthropic's utilisation fractions
    | st.integers(-(10**14), 10**14).map(str)
    | st.text(max_size=12),
    max_size=14,
)


# --------------------------------------------------------------------------------------------------
# calibrate and the daemon agree


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(header_dicts, st.sampled_from([200, 429, 500, 529]), st.integers(0, 300)),
        min_size=1,
        max_size=4,
    ),
    st.integers(0, 500),
)
def test_calibrate_and_the_daemon_agree_on_the_same_headers(
    responses: list[tuple[dict[str, str], int, int]], later_s: int
) -> None:
    """The same responses, in the same order, give the same status, fraction and cooldown whether a
    harness calibrates a ``ProviderQuota`` itself or the daemon folds them into its state. (The span
    stays inside the staleness horizon, which only the daemon knows.)"""
    q = ProviderQuota(provider_id=PID)
    p = new_provider(PID)
    p.detected = OK
    at = NOW
    for headers, status, gap_s in responses:
        at += timedelta(seconds=gap_s)
        calibrate(q, headers, status_code=status, now=at)
        reading = read_response(
            headers, status_code=status, now=at, default_cooldown_s=CFG.routing.default_cooldown_s
        )
        turn = Turn(provider=PID, model="gpt-5", status_code=status, headers=headers, at=at)
        apply_turn(p, turn, reading, at)
    then = at + timedelta(seconds=later_s)
    refresh_status(q, now=then)
    daemon = provider_quota(p, CFG.providers[PID], CFG, then)
    assert daemon.available
    assert (q.status, q.quota_pct) == (daemon.status, daemon.quota_pct)
    live = q.cooldown_until if q.cooldown_until is not None and q.cooldown_until > then else None
    assert live == daemon.cooldown_until
    assert set(q.windows) == set(daemon.windows)


def test_the_two_old_disagreements_are_settled_the_daemons_way() -> None:
    # An empty rate bucket: throttled until it refills (it was "low 0.0" in the library).
    empty = {
        "x-ratelimit-limit-requests": "100",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "20s",
    }
    q = calibrate(ProviderQuota(provider_id=PID), empty, now=NOW)
    assert (q.status, q.quota_pct) == (ProviderStatus.THROTTLED, -1.0)
    # A window never read says nothing about what is left (it counted in the library).
    never_read = QuotaWindow(name="weekly", pct_used=20.0, updated_at=None, source=Source.OAUTH)
    q = refresh_status(ProviderQuota(provider_id=PID, windows={"weekly": never_read}), now=NOW)
    assert (q.status, q.quota_pct) == (ProviderStatus.UNKNOWN, -1.0)


# --------------------------------------------------------------------------------------------------
# Cooldowns a person can see the end of


@pytest.mark.parametrize(
    "headers",
    [
        {"retry-after": "Wed, 21 Oct 2099 07:28:00 GMT"},
        {"retry-after": "99999999999"},
        {"retry-after": str(40 * 86400)},
        {"retry-after-ms": "1e15"},
        {"retry-after": "Fri, 31 Dec 9999 23:59:59 GMT"},
    ],
)
def test_retry_after_beyond_any_real_window_is_not_believed(headers: dict[str, str]) -> None:
    reading = read_response(headers, status_code=429, now=NOW)
    assert reading.cooldown_until == NOW + DEFAULT_COOLDOWN
    assert "default" in (reading.cooldown_reason or "")


def test_a_believable_long_cooldown_is_capped_at_the_longest_window() -> None:
    reading = read_response(
        {"retry-after": str(int((RESET_HORIZON).total_seconds()) - 60)}, status_code=429, now=NOW
    )
    assert reading.cooldown_until == NOW + LONGEST_WINDOW
    q = mark_throttled(ProviderQuota(provider_id=PID), 1e9, now=NOW)
    assert q.cooldown_until == NOW + LONGEST_WINDOW
    assert mark_throttled(ProviderQuota(provider_id=PID), 1e300, now=NOW).cooldown_until is None


def test_a_rejected_window_with_an_absurd_reset_cools_for_the_default() -> None:
    headers = load("anthropic-unified-headers-429.json") | {
        "anthropic-ratelimit-unified-7d-reset": "99999999999"
    }
    reading = read_response(headers, status_code=429, now=NOW)
    assert reading.cooldown_until is not None
    assert reading.cooldown_until <= NOW + RESET_HORIZON
    assert "weekly" not in {w.key for w in reading.windows}


@settings(max_examples=300, deadline=None)
@given(header_dicts, st.sampled_from([200, 429]), st.integers(0, 2**40) | st.floats(allow_nan=True))
def test_no_response_cools_longer_than_the_longest_window(
    headers: dict[str, str], status: int, throttle_s: float
) -> None:
    reading = read_response(headers, status_code=status, now=NOW)
    assert reading.cooldown_until is None or reading.cooldown_until <= NOW + LONGEST_WINDOW
    assert all(window_problem(w, NOW) is None for w in reading.windows)
    p = new_provider(PID)
    apply_turn(p, Turn(provider=PID, model="gpt-5", status_code=status, headers=headers), reading, NOW)
    assert p.cooldown_until is None or p.cooldown_until <= NOW + LONGEST_WINDOW
    q = mark_throttled(
        calibrate(ProviderQuota(provider_id=PID), headers, status_code=status, now=NOW), throttle_s, now=NOW
    )
    assert q.cooldown_until is None or q.cooldown_until <= NOW + LONGEST_WINDOW


# --------------------------------------------------------------------------------------------------
# Resets and percentages out of range


@pytest.mark.parametrize(
    "reset",
    ["x-codex-primary-reset-at", "x-codex-primary-reset-after-seconds"],
)
def test_a_window_resetting_in_the_year_5138_is_not_reported(reset: str) -> None:
    headers = {
        "x-codex-primary-used-percent": "100",
        "x-codex-primary-window-minutes": "300",
        reset: "99999999999",
    }
    assert read_response(headers, now=NOW).windows == []
    q = calibrate(ProviderQuota(provider_id=PID), headers, now=NOW)
    assert q.status is ProviderStatus.UNKNOWN  # not exhausted for three thousand years


def test_a_bucket_with_an_absurd_limit_is_not_reported() -> None:
    headers = {"x-ratelimit-limit-requests": "1e300", "x-ratelimit-remaining-requests": "1e299"}
    assert read_response(headers, now=NOW).windows == []


def test_openrouter_infinite_percent_is_a_poll_failure_with_a_reason() -> None:
    key = parse_key({"data": {"limit": 1e-300, "usage_monthly": 1e308, "limit_reset": "monthly"}}, NOW)
    credits = parse_credits({"data": {"total_credits": 10, "total_usage": 4}}, NOW)
    assert key.window is not None and credits is not None
    p = new_provider("openrouter")
    apply_poll(p, PollResult(at=NOW, availability=OK, windows=[key.window, credits]))
    assert set(p.windows) == {"credits"}  # the good part of the answer stands
    assert p.last_poll_error is not None and "percent used inf" in p.last_poll_error
    q = provider_quota(p, CFG.providers["openrouter"], CFG, NOW)
    # What goes on the wire is finite and decodes into the client's type.
    assert (
        msgspec.json.decode(msgspec.json.encode(q), type=ProviderQuota).last_poll_error == p.last_poll_error
    )


finite_or_not = st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(2**70), 2**70)


@settings(max_examples=300, deadline=None)
@given(finite_or_not, finite_or_not, finite_or_not, st.sampled_from(["daily", "weekly", "monthly", None]))
def test_any_openrouter_numbers_leave_only_finite_windows(
    limit: Any, used: Any, credits: Any, period: Any
) -> None:
    body = {"data": {"limit": limit, "usage": used, "limit_remaining": None, "limit_reset": period}}
    windows = [
        w
        for w in (
            parse_key(body, NOW).window,
            parse_credits({"data": {"total_credits": credits, "total_usage": used}}, NOW),
        )
        if w
    ]
    p = new_provider("openrouter")
    apply_poll(p, PollResult(at=NOW, availability=OK, windows=windows))
    for w in p.windows.values():
        assert math.isfinite(w.pct_used) and 0 <= w.pct_used <= MAX_PCT
    q = provider_quota(p, CFG.providers["openrouter"], CFG, NOW)
    msgspec.json.decode(msgspec.json.encode(q), type=ProviderQuota)


# --------------------------------------------------------------------------------------------------
# Windows and header families bounded in number


def test_five_thousand_header_families_make_a_bounded_number_of_windows() -> None:
    flood = {f"x-f{i}-primary-used-percent": "50" for i in range(5000)}
    headers = load("codex-headers.json") | flood | {"x-" + "a" * 40 + "-primary-used-percent": "1"}
    reading = read_response(headers, now=NOW)
    scopes = {w.scope for w in reading.windows}
    assert len(scopes) <= 1 + MAX_FAMILIES
    assert "*" in scopes  # Codex's own family always counts
    assert not any("a" * 40 in s for s in scopes)


def test_a_provider_never_holds_more_than_the_window_cap() -> None:
    p = new_provider(PID)
    at = NOW
    for batch in range(60):
        at += timedelta(seconds=1)
        headers = load("codex-headers.json") | {
            f"x-b{batch}n{i}-primary-used-percent": "50" for i in range(MAX_FAMILIES)
        }
        apply_turn(p, Turn(provider=PID, model="gpt-5", headers=headers), read_response(headers, now=at), at)
    assert len(p.windows) == MAX_WINDOWS
    assert {"burst", "weekly"} <= set(p.windows)  # the least recently read went first
    q = calibrate(ProviderQuota(provider_id=PID), {}, now=NOW)
    for batch in range(60):
        headers = {f"x-b{batch}n{i}-primary-used-percent": "50" for i in range(MAX_FAMILIES)}
        calibrate(q, headers, now=NOW + timedelta(seconds=batch))
    assert len(q.windows) == MAX_WINDOWS


# --------------------------------------------------------------------------------------------------
# A harness's turn: refused with the field named, or accepted and harmless


@pytest.fixture(scope="module")
def store_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="bhg-model-") as path:
        yield Path(path)


def _record(store_dir: Path, turn: Turn) -> str | None:
    """Record ``turn`` through a real keeper on a real store; the refused field, or None."""
    refused: list[str | None] = [None]

    async def main() -> None:
        store = Store.open(store_dir)
        try:
            keeper = QuotaKeeper(CFG, store, lambda: NOW)
            keeper.load()
            try:
                keeper.record_turn(turn)
            except InvalidInput as exc:
                refused[0] = str((exc.data or {}).get("field"))
            # Whatever happened, every reader still works.
            keeper.rank("claude-opus-4")
            msgspec.json.encode(keeper.quotas())
            await keeper.writer.flush()
        finally:
            store.close()

    anyio.run(main)
    return refused[0]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("input_tokens", 2**63),
        ("cache_read_tokens", MAX_TOKENS + 1),
        ("output_tokens", -1),
        ("latency_ms", float("inf")),
        ("latency_ms", -3.0),
        ("at", datetime(9999, 12, 30, tzinfo=UTC)),
        ("at", datetime(1970, 1, 1, tzinfo=UTC)),
        ("at", NOW + timedelta(minutes=6)),
    ],
)
def test_a_turn_out_of_range_is_refused_naming_the_field(store_dir: Path, field: str, value: Any) -> None:
    turn = Turn(provider="anthropic_api", model="claude-opus-4", **{field: value})
    assert _record(store_dir, turn) == field


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.datetimes(timezones=st.just(UTC)) | st.datetimes())
def test_any_turn_time_is_refused_or_harmless(store_dir: Path, at: datetime) -> None:
    refused = _record(store_dir, Turn(provider="anthropic_api", model="claude-opus-4", at=at))
    plausible = (
        datetime(2000, 1, 1, tzinfo=UTC) <= at.replace(tzinfo=at.tzinfo or UTC) <= NOW + timedelta(minutes=5)
    )
    assert (refused is None) == plausible


# --------------------------------------------------------------------------------------------------
# Records stored by an older version: repaired or dropped with a log line, never a crash


def _broken_record(pid: str) -> ProviderState:
    far = datetime(9999, 12, 30, tzinfo=UTC)
    return ProviderState(
        id=pid,
        windows={
            "weekly": QuotaWindow(name="weekly", pct_used=1e308, updated_at=NOW, source=Source.OAUTH),
            "burst": QuotaWindow(name="burst", pct_used=40.0, resets_at=far, updated_at=NOW),
            "monthly": QuotaWindow(name="monthly", pct_used=30.0, updated_at=far, source=Source.OAUTH),
            "tokens": QuotaWindow(name="tokens", pct_used=10.0, updated_at=NOW, kind=WindowKind.RATE),
        },
        cooldown_until=datetime(2099, 10, 21, 7, 28, tzinfo=UTC),
        cooldown_reason="429",
        accepted_at=far,
        last_turn_at=far,
        last_failure_at=datetime(1970, 1, 1, tzinfo=UTC),
        consumed=-5,
    )


def test_a_broken_stored_record_is_repaired_on_load(tmp_path: Path) -> None:
    async def main() -> None:
        store = Store.open(tmp_path)
        store.close()
        with sqlite3.connect(tmp_path / "state.db") as db:
            db.execute(
                "INSERT OR REPLACE INTO providers (id, record) VALUES (?, ?)",
                ("claude_code", msgspec.json.encode(_broken_record("claude_code"))),
            )
        store = Store.open(tmp_path)
        try:
            keeper = QuotaKeeper(CFG, store, lambda: NOW)
            with capture_logs() as logs:
                keeper.load()
            p = keeper.providers["claude_code"]
            assert set(p.windows) == {"monthly", "tokens"}
            assert p.windows["monthly"].updated_at == NOW
            assert p.cooldown_until == NOW + LONGEST_WINDOW
            assert p.accepted_at == NOW and p.last_turn_at == NOW and p.last_failure_at is None
            assert p.consumed == 0
            assert sum(1 for e in logs if e["event"] == "stored provider record repaired") >= 7
            keeper.rank("claude-opus-4")
            msgspec.json.encode(keeper.quotas())
        finally:
            store.close()

    anyio.run(main)


windows = st.builds(
    QuotaWindow,
    name=st.sampled_from(["burst", "weekly", "x"]),
    pct_used=st.floats(allow_nan=True),
    resets_at=st.none() | st.datetimes(timezones=st.just(UTC)),
    window_min=st.none() | st.integers(-5, 10**9),
    updated_at=st.none() | st.datetimes(timezones=st.just(UTC)),
    kind=st.sampled_from(WindowKind),
    limit=st.none() | st.floats(allow_nan=True),
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(windows, max_size=5),
    st.none() | st.datetimes(timezones=st.just(UTC)),
    st.none() | st.datetimes(timezones=st.just(UTC)),
    st.integers(0, 10**6),
)
def test_any_stored_record_repairs_into_one_every_reader_can_use(
    ws: list[QuotaWindow], cooldown: datetime | None, seen: datetime | None, later_s: int
) -> None:
    p = ProviderState(
        id=PID, windows={w.key: w for w in ws}, cooldown_until=cooldown, accepted_at=seen, last_turn_at=seen
    )
    p.detected = OK
    repair(p, NOW)
    assert all(window_problem(w, NOW) is None for w in p.windows.values())
    assert p.cooldown_until is None or p.cooldown_until <= NOW + LONGEST_WINDOW
    for then in (NOW, NOW + timedelta(seconds=later_s)):
        q = provider_quota(p, CFG.providers[PID], CFG, then, "gpt-5")
        msgspec.json.decode(msgspec.json.encode(q), type=ProviderQuota)
        assert model.standing(list(q.windows.values()), q.cooldown_until, q.cooldown_reason, then)


@pytest.mark.parametrize(
    ("resets_at", "refused"),
    [
        (datetime(9999, 12, 30, tzinfo=UTC), True),
        (NOW + RESET_HORIZON + timedelta(minutes=1), True),
        (datetime(1999, 12, 31, tzinfo=UTC), True),
        (NOW + timedelta(days=30), False),
        (NOW - timedelta(hours=1), False),  # already past: the window counts as reset
    ],
)
def test_set_quota_resets_at_is_bounded(store_dir: Path, resets_at: datetime, refused: bool) -> None:
    field: list[str | None] = [None]

    async def main() -> None:
        store = Store.open(store_dir)
        try:
            keeper = QuotaKeeper(CFG, store, lambda: NOW)
            keeper.load()
            try:
                keeper.set_quota(
                    SetQuotaParams(provider="claude_code", pct_remaining=50, resets_at=resets_at)
                )
            except InvalidInput as exc:
                field[0] = str((exc.data or {}).get("field"))
            await keeper.writer.flush()
        finally:
            store.close()

    anyio.run(main)
    assert field[0] == ("resets_at" if refused else None)
