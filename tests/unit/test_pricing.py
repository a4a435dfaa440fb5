"""Turn cost: the built-in table, cache-aware arithmetic, config overrides and where a price came from."""

from __future__ import annotations

import msgspec
import pytest

from bhogad import config
from bhogad.domain.pricing import BUILTIN, PRICES_AS_OF, Price, PriceBook, match, normalise, price_turn


def test_a_turn_with_cache_tokens_costs_what_the_price_list_says() -> None:
    """Sonnet 4.5 at $3 input, $15 output, $0.30 cache read, $3.75 cache write (5-minute) per MTok:
    1 200 fresh input, 800 output, 50 000 read from the cache and 10 000 written to it is
    0.0036 + 0.012 + 0.015 + 0.0375 = $0.0681."""
    priced = price_turn(
        "claude-sonnet-4-5-20250929", 1_200, 800, 50_000, 10_000, overrides={}, subscription=False
    )
    assert priced.cost_usd == pytest.approx(0.0681)
    assert priced.source == f"built-in {PRICES_AS_OF}: claude-sonnet-4"


def test_openai_cached_input_is_a_tenth_and_writing_the_cache_costs_plain_input() -> None:
    # gpt-5.4: $2.50 input, $0.25 cached, $15 output. 10k fresh + 90k cached + 2k out.
    priced = price_turn("gpt-5.4", 10_000, 2_000, 90_000, 0, overrides={}, subscription=False)
    assert priced.cost_usd == pytest.approx(0.025 + 0.0225 + 0.03)
    assert BUILTIN["gpt-5.4"].cache_write == BUILTIN["gpt-5.4"].input


def test_the_most_specific_price_wins() -> None:
    assert match("claude-opus-4-5", BUILTIN) == ("claude-opus-4-5", BUILTIN["claude-opus-4-5"])
    assert match("claude-opus-4-1-20250805", BUILTIN) == ("claude-opus-4-1", BUILTIN["claude-opus-4-1"])
    assert match("claude-opus-4", BUILTIN) == ("claude-opus-4", BUILTIN["claude-opus-4"])
    assert BUILTIN["claude-opus-4-5"].input == 5.0 and BUILTIN["claude-opus-4-1"].input == 15.0
    assert match("gpt-5.4-mini", BUILTIN) == ("gpt-5.4-mini", BUILTIN["gpt-5.4-mini"])
    # A prefix must end at a word boundary: gpt-50 is not gpt-5.
    assert match("gpt-50", BUILTIN) is None


@pytest.mark.parametrize(
    ("model", "bare"),
    [
        ("anthropic/claude-sonnet-4.5", "claude-sonnet-4-5"),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("Claude-Opus-4-5-latest", "claude-opus-4-5"),
        ("openai/gpt-5.4", "gpt-5.4"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
    ],
)
def test_vendor_prefixes_dates_and_dotted_claude_versions_name_the_same_price(model: str, bare: str) -> None:
    assert normalise(model) == bare


def test_config_prices_win_and_unset_cache_prices_are_plain_input() -> None:
    cfg = config.build({"pricing": {"claude-sonnet-4-5": {"input": 2.0, "output": 10.0}}})
    priced = price_turn(
        "claude-sonnet-4-5", 1_000_000, 0, 1_000_000, 0, overrides=cfg.pricing, subscription=False
    )
    assert priced.cost_usd == pytest.approx(4.0)
    assert priced.source == "config: claude-sonnet-4-5"
    # Models the override does not name keep the built-in price.
    other = price_turn("claude-haiku-4-5", 1_000_000, 0, 0, 0, overrides=cfg.pricing, subscription=False)
    assert other.cost_usd == pytest.approx(1.0) and other.source.startswith("built-in")


def test_bad_prices_are_refused_at_load() -> None:
    with pytest.raises(msgspec.ValidationError, match="pricing"):
        config.build({"pricing": {"x": {"input": -1, "output": 1}}})
    with pytest.raises(msgspec.ValidationError):
        config.build({"pricing": {"x": {"input": 1}}})


def test_a_cost_the_harness_reports_wins_and_unknown_models_stay_unpriced() -> None:
    reported = price_turn("claude-opus-4-5", 10, 10, 0, 0, overrides={}, subscription=False, reported_usd=0.0)
    assert (reported.cost_usd, reported.source) == (0.0, "reported by the harness")
    unknown = price_turn("mystery-model-7", 1000, 1000, 0, 0, overrides={}, subscription=False)
    assert (unknown.cost_usd, unknown.source) == (None, "unpriced")


def test_subscription_turns_carry_their_api_equivalent_value_and_say_so() -> None:
    priced = price_turn("gpt-5.4", 1_000_000, 0, 0, 0, overrides={}, subscription=True)
    assert priced.cost_usd == pytest.approx(2.5)
    assert priced.source.endswith("(API-equivalent; subscription)")


def test_price_arithmetic() -> None:
    price = Price(input=1.0, output=2.0, cache_read=0.5, cache_write=3.0)
    assert price.cost(1_000_000, 1_000_000, 1_000_000, 1_000_000) == pytest.approx(6.5)


@pytest.mark.parametrize(
    "model", ["claude-opus-4-5", "anthropic/claude-sonnet-4.5", "gpt-5.4", "my-model", "nope"]
)
@pytest.mark.parametrize("subscription", [False, True])
@pytest.mark.parametrize("reported", [None, 0.25])
def test_the_daemons_price_book_answers_as_price_turn_does(
    model: str, subscription: bool, reported: float | None
) -> None:
    overrides = {"my-model": Price(input=1.0, output=2.0)}
    book = PriceBook(overrides)
    for _ in range(2):  # the second time from its cache
        assert book.price_turn(
            model, 1000, 200, 30, 4, subscription=subscription, reported_usd=reported
        ) == price_turn(
            model, 1000, 200, 30, 4, overrides=overrides, subscription=subscription, reported_usd=reported
        )
