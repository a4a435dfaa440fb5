"""Header calibration: real provider fixtures in, windows and cooldowns out.

The fixtures are the recorded wire-shape examples (``tests/data/providers``); their clock is
FIXTURE_NOW = 2026-09-24T12:00:00Z, and the numbers asserted here are the ones their README states.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, strategies as st

from bhoga.protocol import ProviderQuota, ProviderStatus, QuotaWindow, Source, WindowKind
from bhoga.quota.headers import (
    HeaderReading,
    calibrate,
    mark_throttled,
    parse_go_duration,
    parse_reset,
    parse_retry_after,
    read_response,
    window_name,
)

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "providers"
NOW = datetime(2026, 9, 24, 12, 0, 0, tzinfo=UTC)
assert NOW.timestamp() == 1790251200

CLAUDE_5H_RESET = datetime.fromtimestamp(1790258400, UTC)
CLAUDE_7D_RESET = datetime.fromtimestamp(1790499600, UTC)
CODEX_5H_RESET = datetime.fromtimestamp(1790262000, UTC)
CODEX_7D_RESET = datetime.fromtimestamp(1790596800, UTC)
SPARK_7D_RESET = datetime.fromtimestamp(1790769600, UTC)
OPENROUTER_RESET = datetime(2026, 9, 25, 0, 0, tzinfo=UTC)


def fixture(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return loaded


def by_key(reading: HeaderReading) -> dict[str, QuotaWindow]:
    windows = {w.key: w for w in reading.windows}
    assert len(windows) == len(reading.windows), "two windows share a key"
    return windows


def quota(**kwargs: Any) -> ProviderQuota:
    return ProviderQuota(**({"provider_id": "p"} | kwargs))


# --------------------------------------------------------------------------------------------------
# Anthropic API key buckets


def test_anthropic_api_buckets_are_per_minute_rate_windows() -> None:
    reading = read_response(fixture("anthropic-api-headers.json"), now=NOW)
    windows = by_key(reading)
    assert set(windows) == {"requests", "tokens", "input_tokens", "output_tokens"}
    tokens = windows["tokens"]
    assert tokens.pct_used == pytest.approx(5.0)  # 91 200 of 96 000 left
    assert (tokens.limit, tokens.remaining) == (96000, 91200)
    assert tokens.resets_at == datetime(2026, 9, 24, 12, 0, 4, tzinfo=UTC)
    assert windows["requests"].pct_used == pytest.approx(0.1)
    assert all(w.kind is WindowKind.RATE and w.window_min == 1 for w in reading.windows)
    assert all(w.source is Source.HEADERS and w.updated_at == NOW for w in reading.windows)
    assert reading.cooldown_until is None and reading.cooldown_reason is None


def test_anthropic_api_429_cools_down_for_retry_after() -> None:
    reading = read_response(fixture("anthropic-api-headers-429.json"), status_code=429, now=NOW)
    windows = by_key(reading)
    assert windows["input_tokens"].pct_used == 100.0
    assert windows["output_tokens"].pct_used == pytest.approx(43.125)
    assert reading.cooldown_until == NOW + timedelta(seconds=17)
    assert reading.cooldown_reason == "429 rate limited (retry-after 17s)"


# --------------------------------------------------------------------------------------------------
# Anthropic subscription "unified" headers


def test_unified_fractions_become_percent_windows() -> None:
    reading = read_response(fixture("anthropic-unified-headers.json"), now=NOW)
    windows = by_key(reading)
    assert set(windows) == {"burst", "weekly"}
    assert windows["burst"].pct_used == pytest.approx(37.0)  # 0.37 on the wire
    assert windows["weekly"].pct_used == pytest.approx(61.0)
    assert (windows["burst"].resets_at, windows["burst"].window_min) == (CLAUDE_5H_RESET, 300)
    assert (windows["weekly"].resets_at, windows["weekly"].window_min) == (CLAUDE_7D_RESET, 10080)
    assert all(w.kind is WindowKind.QUOTA for w in reading.windows)


def test_rejected_overage_alone_does_not_stop_the_account() -> None:
    # The fixture's overage is "rejected" (not provisioned) while 5h and 7d are allowed.
    reading = read_response(fixture("anthropic-unified-headers.json"), now=NOW)
    assert reading.cooldown_until is None
    assert max(w.pct_used for w in reading.windows) < 100
    assert reading.credits == {"overage_status": "rejected", "overage_disabled_reason": "org_level_disabled"}


def test_unified_weekly_rejection_exhausts_weekly_until_its_reset() -> None:
    case = fixture("anthropic-unified-headers-429.json")
    reading = read_response(case, status_code=429, now=NOW)
    windows = by_key(reading)
    assert windows["weekly"].pct_used == 100.0
    assert windows["burst"].pct_used == pytest.approx(12.0)
    assert reading.cooldown_until == CLAUDE_7D_RESET  # 69 h away
    assert reading.cooldown_reason == "usage limit reached (weekly)"


def test_unified_rejection_stops_even_on_a_200() -> None:
    headers = fixture("anthropic-unified-headers.json") | {
        "anthropic-ratelimit-unified-5h-status": "rejected"
    }
    reading = read_response(headers, status_code=200, now=NOW)
    assert by_key(reading)["burst"].pct_used == 100.0
    assert reading.cooldown_until == CLAUDE_5H_RESET
    assert reading.cooldown_reason == "usage limit reached (burst)"


def test_request_billed_to_overage_is_not_a_cooldown() -> None:
    headers = fixture("anthropic-unified-headers.json") | {
        "anthropic-ratelimit-unified-status": "rejected",
        "anthropic-ratelimit-unified-7d-status": "rejected",
        "anthropic-ratelimit-unified-overage-status": "allowed",
    }
    reading = read_response(headers, status_code=200, now=NOW)
    assert by_key(reading)["weekly"].pct_used == 100.0  # included quota is gone...
    assert reading.cooldown_until is None  # ...but the request went through on extra usage


def test_per_model_rejection_refuses_the_request_without_filling_account_windows() -> None:
    headers = fixture("anthropic-unified-headers.json") | {
        "anthropic-ratelimit-unified-status": "rejected",
        "anthropic-ratelimit-unified-representative-claim": "seven_day_opus",
    }
    reading = read_response(headers, status_code=429, now=NOW)
    windows = by_key(reading)
    assert windows["burst"].pct_used == pytest.approx(37.0)
    assert windows["weekly"].pct_used == pytest.approx(61.0)
    assert reading.cooldown_until == CLAUDE_7D_RESET  # unified-reset of the claim
    assert reading.cooldown_reason == "usage limit reached"


# --------------------------------------------------------------------------------------------------
# Codex


def test_codex_windows_are_named_by_length_and_spark_is_scoped() -> None:
    reading = read_response(fixture("codex-headers.json"), now=NOW)
    windows = by_key(reading)
    assert set(windows) == {"burst", "weekly", "burst/limit:codex_bengalfox", "weekly/limit:codex_bengalfox"}
    assert (windows["burst"].pct_used, windows["burst"].resets_at) == (22.0, CODEX_5H_RESET)
    assert (windows["weekly"].pct_used, windows["weekly"].resets_at) == (43.0, CODEX_7D_RESET)
    spark = windows["weekly/limit:codex_bengalfox"]
    assert (spark.pct_used, spark.resets_at, spark.window_min) == (12.0, SPARK_7D_RESET, 10080)
    assert windows["burst"].scope == "*"
    assert reading.limit_names == {"codex_bengalfox": "GPT-5.3-Codex-Spark"}
    assert reading.plan == "plus"
    assert reading.credits == {"has_credits": "false", "unlimited": "false", "balance": "0"}
    assert reading.cooldown_until is None


def test_codex_weekly_only_plan_gives_one_weekly_window() -> None:
    reading = read_response(fixture("codex-headers-weekly-only.json"), now=NOW)
    assert [(w.name, w.pct_used, w.window_min, w.resets_at) for w in reading.windows] == [
        ("weekly", 22.0, 10080, CODEX_7D_RESET)
    ]
    assert reading.plan == "pro"


@pytest.mark.parametrize(
    ("minutes", "name"), [("300", "burst"), ("10080", "weekly"), ("43200", "monthly"), ("1440", "1440m")]
)
def test_codex_primary_slot_is_classified_by_its_length(minutes: str, name: str) -> None:
    headers = {"x-codex-primary-used-percent": "5", "x-codex-primary-window-minutes": minutes}
    assert [w.name for w in read_response(headers, now=NOW).windows] == [name]
    assert window_name(int(minutes)) == name


def test_codex_reset_after_seconds_is_used_when_reset_at_is_blank() -> None:
    headers = {
        "x-codex-primary-used-percent": "12.5",
        "x-codex-primary-window-minutes": "300",
        "x-codex-primary-reset-at": "",
        "x-codex-primary-reset-after-seconds": "10800",
    }
    (window,) = read_response(headers, now=NOW).windows
    assert (window.pct_used, window.resets_at) == (12.5, NOW + timedelta(hours=3))


@pytest.mark.parametrize(
    ("raw", "expected"), [("True", "true"), ("true", "true"), ("1", "true"), ("0", "false")]
)
def test_codex_credit_flags_accept_every_spelling(raw: str, expected: str) -> None:
    reading = read_response(
        {"x-codex-credits-has-credits": raw, "x-codex-credits-unlimited": "maybe"}, now=NOW
    )
    assert reading.credits == {"has_credits": expected}


def test_codex_usage_limit_body_stops_until_the_reset() -> None:
    case = fixture("codex-usage-limit-error.json")
    reading = read_response(case["headers"], status_code=case["status"], error_body=case["body"], now=NOW)
    assert reading.cooldown_until == CODEX_5H_RESET
    assert reading.cooldown_reason == "usage limit reached"
    assert by_key(reading)["burst"].pct_used == 100.0
    assert reading.plan == "plus"  # from the body, as the headers carry no plan here


def test_codex_usage_limit_body_alone_gives_the_reset() -> None:
    body = fixture("codex-usage-limit-error.json")["body"]
    reading = read_response({}, status_code=429, error_body=body, now=NOW)
    assert (reading.cooldown_until, reading.cooldown_reason) == (CODEX_5H_RESET, "usage limit reached")
    relative_only = {"error": {"type": "usage_limit_reached", "resets_in_seconds": 600}}
    reading = read_response({}, status_code=429, error_body=relative_only, now=NOW)
    assert reading.cooldown_until == NOW + timedelta(minutes=10)


# --------------------------------------------------------------------------------------------------
# OpenAI, Copilot, OpenRouter


def test_openai_go_duration_resets_are_relative_to_now() -> None:
    windows = by_key(read_response(fixture("openai-api-headers.json"), now=NOW))
    assert windows["requests"].resets_at == NOW + timedelta(milliseconds=12)
    assert windows["tokens"].resets_at == NOW + timedelta(milliseconds=189)
    assert windows["tokens"].limit == 800000  # the old library never read the limit
    assert windows["tokens"].pct_used == pytest.approx(100 * 2532 / 800000)
    assert all(w.kind is WindowKind.RATE for w in windows.values())


def test_openai_429_prefers_retry_after_ms() -> None:
    reading = read_response(fixture("openai-api-headers-429.json"), status_code=429, now=NOW)
    assert by_key(reading)["tokens"].resets_at == NOW + timedelta(minutes=6)  # "6m0s"
    assert by_key(reading)["requests"].resets_at == NOW + timedelta(seconds=1.52)
    assert reading.cooldown_until == NOW + timedelta(milliseconds=5844)
    assert reading.cooldown_reason == "429 rate limited (retry-after 5.844s)"


@pytest.mark.parametrize("limit", ["-1", "0"])
def test_openai_unknown_limits_make_no_window(limit: str) -> None:
    headers = {"x-ratelimit-limit-tokens": limit, "x-ratelimit-remaining-tokens": "0"}
    assert read_response(headers, now=NOW).windows == []


def test_copilot_request_headers_give_a_requests_window() -> None:
    headers = {"x-ratelimit-limit-requests": "300", "x-ratelimit-remaining-requests": "30"}
    (window,) = read_response(headers, now=NOW).windows
    assert (window.name, window.pct_used, window.resets_at) == ("requests", 90.0, None)


def test_openrouter_429_waits_for_the_unix_ms_reset() -> None:
    reading = read_response(fixture("openrouter-headers-429.json"), status_code=429, now=NOW)
    (window,) = reading.windows
    assert (window.name, window.pct_used, window.resets_at) == ("requests", 100.0, OPENROUTER_RESET)
    assert reading.cooldown_until == OPENROUTER_RESET
    assert reading.cooldown_reason == "429 rate limited (requests exhausted until its reset)"


def test_openrouter_headers_copied_into_the_error_body_are_read() -> None:
    reading = read_response({}, status_code=429, error_body=fixture("openrouter-429-body.json"), now=NOW)
    assert [(w.name, w.limit, w.remaining) for w in reading.windows] == [("requests", 50, 0)]
    assert reading.cooldown_until == OPENROUTER_RESET


def test_real_headers_win_over_body_copies() -> None:
    body = fixture("openrouter-429-body.json")
    reading = read_response({"X-RateLimit-Remaining": "25"}, status_code=200, error_body=body, now=NOW)
    assert [w.pct_used for w in reading.windows] == [50.0]


# --------------------------------------------------------------------------------------------------
# Cooldown rules


def test_429_without_any_reset_uses_the_default_cooldown() -> None:
    # The Claude usage endpoint's "retry-after: 0" is a throttle symptom, not leave to retry at once.
    case = fixture("claude-oauth-usage-429.json")
    reading = read_response(case["headers"], status_code=429, now=NOW, default_cooldown_s=300)
    assert reading.cooldown_until == NOW + timedelta(minutes=5)
    assert reading.cooldown_reason == "429 rate limited (no reset given, 300s default)"


def test_earliest_reset_of_an_empty_bucket_sets_the_429_cooldown() -> None:
    headers = fixture("anthropic-api-headers-429.json")
    del headers["retry-after"]
    headers["anthropic-ratelimit-tokens-reset"] = "2026-09-24T12:00:30Z"
    reading = read_response(headers, status_code=429, now=NOW)
    assert reading.cooldown_until == datetime(2026, 9, 24, 12, 0, 17, tzinfo=UTC)  # input_tokens
    assert reading.cooldown_reason == "429 rate limited (input_tokens exhausted until its reset)"


@pytest.mark.parametrize("status", [200, 500, 529])
def test_only_a_429_turns_retry_after_into_a_cooldown(status: int) -> None:
    reading = read_response({"retry-after": "30"}, status_code=status, now=NOW)
    assert reading.cooldown_until is None


def test_http_date_retry_after_is_honoured() -> None:
    headers = {"Retry-After": "Thu, 24 Sep 2026 12:02:00 GMT"}
    reading = read_response(headers, status_code=429, now=NOW)
    assert reading.cooldown_until == NOW + timedelta(minutes=2)
    assert reading.cooldown_reason == "429 rate limited (retry-after 120s)"


def test_reasons_never_echo_header_values() -> None:
    secret = "sk-ant-api03-FIXTURE-SECRET"
    headers = {"retry-after": secret, "authorization": f"Bearer {secret}", "x-codex-plan-type": "plus"}
    reading = read_response(headers, status_code=429, now=NOW)
    assert reading.cooldown_until == NOW + timedelta(seconds=60)
    assert secret not in (reading.cooldown_reason or "")
    assert all(secret not in value for value in reading.credits.values())


# --------------------------------------------------------------------------------------------------
# Robustness: case, garbage, naive clocks


def test_header_names_are_case_insensitive() -> None:
    for name in ("openai-api-headers-429.json", "anthropic-unified-headers-429.json", "codex-headers.json"):
        lower = fixture(name)
        upper = {key.upper(): value for key, value in lower.items()}
        title = {key.title(): value for key, value in lower.items()}
        expected = read_response(lower, status_code=429, now=NOW)
        assert expected.windows
        assert read_response(upper, status_code=429, now=NOW) == expected
        assert read_response(title, status_code=429, now=NOW) == expected


@pytest.mark.parametrize("garbage", [None, "", "  ", "False", "abc", "nan", "inf", "1e999", "None"])
def test_garbage_values_skip_the_field(garbage: Any) -> None:
    headers = fixture("anthropic-api-headers.json") | {
        "anthropic-ratelimit-tokens-limit": garbage,
        "anthropic-ratelimit-requests-reset": garbage,
        "x-codex-primary-used-percent": garbage,
        "x-codex-primary-window-minutes": "300",
    }
    windows = by_key(read_response(headers, status_code=429, now=NOW))
    assert set(windows) == {"requests", "input_tokens", "output_tokens"}  # tokens skipped, codex too
    assert windows["requests"].resets_at is None
    assert windows["requests"].pct_used == pytest.approx(0.1)


def test_numbers_from_json_bodies_and_odd_mappings_do_not_crash() -> None:
    headers: dict[Any, Any] = {
        "x-ratelimit-limit-requests": 100,
        "x-ratelimit-remaining-requests": 25.0,
        None: "x",
        "x-ratelimit-reset-requests": True,
    }
    (window,) = read_response(headers, error_body={"error": "nope"}, now=NOW).windows
    assert (window.pct_used, window.resets_at) == (75.0, None)


def test_naive_now_is_taken_as_utc() -> None:
    reading = read_response(fixture("openai-api-headers.json"), now=NOW.replace(tzinfo=None))
    assert all(w.resets_at is not None and w.resets_at.utcoffset() == timedelta(0) for w in reading.windows)
    assert by_key(reading)["tokens"].resets_at == NOW + timedelta(milliseconds=189)


def test_usage_over_100_percent_is_clamped() -> None:
    headers = {"x-codex-primary-used-percent": "130", "x-codex-primary-window-minutes": "300"}
    assert read_response(headers, now=NOW).windows[0].pct_used == 100.0
    headers = {"x-ratelimit-limit-requests": "10", "x-ratelimit-remaining-requests": "25"}
    assert read_response(headers, now=NOW).windows[0].pct_used == 0.0


# --------------------------------------------------------------------------------------------------
# Parsers


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("6m0s", 360.0),
        ("1s", 1.0),
        ("20ms", 0.02),
        ("1.52s", 1.52),
        ("1h2m3s", 3723.0),
        ("500us", 0.0005),
        ("10µs", 1e-5),
        ("10μs", 1e-5),
        ("3ns", 3e-9),
        ("0", 0.0),
        ("2m59.56s", 179.56),
        ("-1.5h", -5400.0),
        (".5s", 0.5),
    ],
)
def test_parse_go_duration(text: str, seconds: float) -> None:
    assert parse_go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "6", "6x", "m", "1.5.5s", "6m0", "1h 2m", "abc", "٣s", "ms"])
def test_parse_go_duration_rejects_non_durations(text: str) -> None:
    assert parse_go_duration(text) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-09-24T12:00:04Z", NOW + timedelta(seconds=4)),
        ("2026-09-24t12:00:04z", NOW + timedelta(seconds=4)),
        ("2026-07-03T00:30:00.282668+00:00", datetime(2026, 7, 3, 0, 30, 0, 282668, tzinfo=UTC)),
        ("2025-12-23T16:00:00.000Z", datetime(2025, 12, 23, 16, tzinfo=UTC)),
        ("2026-09-24T14:00:00+02:00", NOW),
        ("2026-09-24T12:00:00", NOW),  # naive: UTC
        ("2026-10-01", datetime(2026, 10, 1, tzinfo=UTC)),  # Copilot's bare date
        ("1790258400", CLAUDE_5H_RESET),  # unix seconds
        ("1790294400000", OPENROUTER_RESET),  # unix milliseconds
        ("6m0s", NOW + timedelta(minutes=6)),  # Go duration from now
        ("60", NOW + timedelta(seconds=60)),  # relative seconds, never 1970
        ("1.5", NOW + timedelta(seconds=1.5)),
        ("Thu, 24 Sep 2026 12:00:30 GMT", NOW + timedelta(seconds=30)),
    ],
)
def test_parse_reset_formats(text: str, expected: datetime) -> None:
    parsed = parse_reset(text, NOW)
    assert parsed == expected
    assert parsed is not None and parsed.tzinfo is UTC


@pytest.mark.parametrize("text", ["", "-5", "-1s", "soon", "False", "nan", "2026-13-45T00:00:00Z", "9" * 400])
def test_parse_reset_garbage_is_none(text: str) -> None:
    assert parse_reset(text, NOW) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30", NOW + timedelta(seconds=30)),
        ("0.5", NOW + timedelta(seconds=0.5)),
        ("0", NOW),
        ("Thu, 24 Sep 2026 12:01:00 GMT", NOW + timedelta(minutes=1)),
        ("Thu, 24 Sep 2026 14:01:00 +0200", NOW + timedelta(minutes=1)),
        ("Thu, 24 Sep 2026 12:01:00 -0000", NOW + timedelta(minutes=1)),
        ("soon", None),
        ("-3", None),
        ("", None),
    ],
)
def test_parse_retry_after(text: str, expected: datetime | None) -> None:
    parsed = parse_retry_after(text, NOW)
    assert parsed == expected
    assert parsed is None or parsed.tzinfo is UTC


@given(st.text())
def test_parse_go_duration_never_raises(text: str) -> None:
    seconds = parse_go_duration(text)
    assert seconds is None or isinstance(seconds, float)


@given(st.text() | st.from_regex(r"\A-?[0-9]{1,25}(\.[0-9]{0,5})?[a-zµ]{0,3}\Z"))
def test_parse_reset_and_retry_after_never_raise(text: str) -> None:
    for parsed in (parse_reset(text, NOW), parse_retry_after(text, NOW)):
        assert parsed is None or parsed.tzinfo is UTC


@given(st.integers(0, 10_000), st.integers(0, 59), st.integers(0, 59), st.integers(0, 999))
def test_go_durations_as_go_prints_them_round_trip(
    hours: int, minutes: int, seconds: int, millis: int
) -> None:
    text = f"{hours}h{minutes}m{seconds}.{millis:03d}s"
    expected = hours * 3600 + minutes * 60 + seconds + millis / 1000
    assert parse_go_duration(text) == pytest.approx(expected)


_KNOWN_NAMES = sorted(
    {
        key
        for name in FIXTURES.glob("*head*.json")
        for key in fixture(name.name).get("headers", fixture(name.name))
    }
    | {"retry-after-ms", "x-codex-primary-reset-after-seconds"}
)


@given(
    st.dictionaries(st.sampled_from(_KNOWN_NAMES) | st.text(max_size=30), st.text(max_size=30), max_size=25),
    st.sampled_from([200, 429, 529]),
)
def test_read_response_never_raises_and_keeps_percent_in_range(headers: dict[str, str], status: int) -> None:
    reading = read_response(headers, status_code=status, now=NOW)
    assert all(0.0 <= w.pct_used <= 100.0 for w in reading.windows)
    assert reading.cooldown_until is None or reading.cooldown_until.tzinfo is UTC
    if status != 429 and reading.cooldown_until is not None:
        assert (reading.cooldown_reason or "").startswith("usage limit reached")


# --------------------------------------------------------------------------------------------------
# calibrate and mark_throttled on a ProviderQuota


def test_calibrate_fills_windows_and_status() -> None:
    q = quota(provider_id="openai-codex")
    assert calibrate(q, fixture("codex-headers.json"), now=NOW) is q
    assert set(q.windows) >= {"burst", "weekly"}
    assert q.quota_pct == pytest.approx(0.57)  # weekly 43 % used is the tightest account window
    assert q.status is ProviderStatus.OK
    assert q.cooldown_until is None


def test_calibrate_reads_upper_case_headers_like_requests_gives_them() -> None:
    q = quota(provider_id="openai_api")
    calibrate(q, {"X-RateLimit-Limit-Tokens": "1000", "X-RateLimit-Remaining-Tokens": "50"}, now=NOW)
    assert q.windows["tokens"].pct_used == pytest.approx(95.0)
    # One quota model: a per-minute rate bucket blocks while empty but says nothing about how much
    # of a budget is left, so it sets no fraction (the daemon's rule, README "How ranking works").
    assert q.status is ProviderStatus.UNKNOWN and q.quota_pct == -1.0
    calibrate(q, {"X-RateLimit-Limit-Tokens": "1000", "X-RateLimit-Remaining-Tokens": "0"}, now=NOW)
    assert q.status is ProviderStatus.THROTTLED  # an empty bucket throttles, it does not exhaust


def test_calibrate_on_429_throttles_with_header_case_ignored() -> None:
    q = calibrate(quota(), {"Retry-After": "30"}, status_code=429, now=NOW)
    assert q.status is ProviderStatus.THROTTLED
    assert q.cooldown_until == NOW + timedelta(seconds=30)
    assert q.cooldown_reason == "429 rate limited (retry-after 30s)"
    # Once the cooldown has passed, nothing else is known: the provider is usable again.
    later = calibrate(q, {}, now=NOW + timedelta(seconds=31))
    assert later.status is ProviderStatus.UNKNOWN


def test_exhausted_window_blocks_until_its_reset_only() -> None:
    q = calibrate(quota(), fixture("codex-usage-limit-error.json")["headers"], now=NOW)
    assert q.status is ProviderStatus.EXHAUSTED and q.quota_pct == 0.0
    later = calibrate(q, {}, now=CODEX_5H_RESET + timedelta(seconds=1))
    # Past its reset the window counts as reset (0 % used, read at the reset): the daemon's rule.
    assert (later.status, later.quota_pct) == (ProviderStatus.OK, 1.0)


def test_full_scoped_family_does_not_exhaust_the_account() -> None:
    headers = fixture("codex-headers.json") | {"x-codex-bengalfox-primary-used-percent": "100"}
    q = calibrate(quota(), headers, now=NOW)
    assert q.windows["burst/limit:codex_bengalfox"].pct_used == 100.0
    assert q.status is ProviderStatus.OK


def test_older_reading_never_overwrites_a_newer_window() -> None:
    q = quota()
    calibrate(q, {"x-ratelimit-limit-requests": "100", "x-ratelimit-remaining-requests": "10"}, now=NOW)
    calibrate(
        q,
        {"x-ratelimit-limit-requests": "100", "x-ratelimit-remaining-requests": "99"},
        now=NOW - timedelta(minutes=1),
    )
    assert q.windows["requests"].pct_used == 90.0
    calibrate(
        q,
        {"x-ratelimit-limit-requests": "100", "x-ratelimit-remaining-requests": "60"},
        now=NOW + timedelta(minutes=1),
    )
    assert q.windows["requests"].pct_used == 40.0


def test_calibrate_keeps_windows_the_response_does_not_mention() -> None:
    manual = QuotaWindow(name="monthly", pct_used=30.0, updated_at=NOW, source=Source.MANUAL)
    q = quota(windows={"monthly": manual})
    calibrate(q, fixture("codex-headers.json"), now=NOW + timedelta(seconds=1))
    assert q.windows["monthly"] is manual


def test_cooldown_is_only_ever_extended() -> None:
    q = calibrate(quota(), fixture("anthropic-unified-headers-429.json"), status_code=429, now=NOW)
    assert q.cooldown_until == CLAUDE_7D_RESET
    mark_throttled(q, 30, now=NOW)
    assert q.cooldown_until == CLAUDE_7D_RESET
    assert q.cooldown_reason == "usage limit reached (weekly)"
    calibrate(q, {"retry-after": "5"}, status_code=429, now=NOW)
    assert q.cooldown_until == CLAUDE_7D_RESET
    assert q.status is ProviderStatus.THROTTLED


def test_mark_throttled_extends_a_shorter_cooldown() -> None:
    q = mark_throttled(quota(), 30, now=NOW)
    assert (q.status, q.cooldown_until) == (ProviderStatus.THROTTLED, NOW + timedelta(seconds=30))
    mark_throttled(q, 120, now=NOW)
    assert q.cooldown_until == NOW + timedelta(seconds=120)
    assert q.cooldown_reason == "throttled (retry-after 120s)"


@pytest.mark.parametrize("retry_after", [0.0, -5.0, float("nan"), float("inf")])
def test_mark_throttled_without_a_positive_delay_does_not_stick(retry_after: float) -> None:
    q = mark_throttled(quota(), retry_after, now=NOW)
    assert q.status is not ProviderStatus.THROTTLED
    assert q.cooldown_until is None
    # An expired cooldown plus a bad delay must not revive the throttle either.
    q = mark_throttled(quota(), 10, now=NOW)
    mark_throttled(q, retry_after, now=NOW + timedelta(seconds=11))
    assert q.status is not ProviderStatus.THROTTLED


def test_mark_throttled_defaults_to_sixty_seconds_from_the_clock() -> None:
    before = datetime.now(UTC)
    q = mark_throttled(quota())
    assert q.cooldown_until is not None
    assert before + timedelta(seconds=59) < q.cooldown_until < datetime.now(UTC) + timedelta(seconds=61)
    assert q.status is ProviderStatus.THROTTLED


def test_naive_state_from_the_old_library_compares_without_crashing() -> None:
    naive = QuotaWindow(name="requests", pct_used=10.0, updated_at=datetime(2026, 9, 24, 11, 0))
    q = quota(windows={"requests": naive}, cooldown_until=datetime(2026, 9, 24, 11, 59))
    calibrate(q, {"x-ratelimit-limit-requests": "10", "x-ratelimit-remaining-requests": "5"}, now=NOW)
    assert q.windows["requests"].pct_used == 50.0
    # A half-full rate bucket and a cooldown that ended: nothing blocks, no budget fraction is known.
    assert q.status is ProviderStatus.UNKNOWN
    assert q.cooldown_until == datetime(2026, 9, 24, 11, 59, tzinfo=UTC)


def test_unavailable_provider_stays_unavailable() -> None:
    q = calibrate(quota(status=ProviderStatus.UNAVAILABLE), fixture("codex-headers.json"), now=NOW)
    assert q.status is ProviderStatus.UNAVAILABLE
    assert q.quota_pct == pytest.approx(0.57)


def test_other_timezones_are_converted_to_utc() -> None:
    tokyo = timezone(timedelta(hours=9))
    reading = read_response({"retry-after": "10"}, status_code=429, now=NOW.astimezone(tokyo))
    assert reading.cooldown_until == NOW + timedelta(seconds=10)
    assert reading.cooldown_until is not None and reading.cooldown_until.tzinfo is UTC


def test_importing_headers_stays_light() -> None:
    # Harnesses pay this import on every start; the daemon's dependencies must not come with it.
    code = (
        "import sys, bhoga.quota.headers; "
        "print(sorted(m for m in ('anyio', 'httpx', 'yaml', 'structlog') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
