"""What a turn costs: USD per million tokens, with cache reads and cache writes priced on their own.

Pure data and arithmetic; no I/O. The daemon prices every turn when it is recorded and stores the
figure with the name of the price it used, so a total can always be traced to its source.

Token fields follow Anthropic's usage block: ``input_tokens`` is fresh (uncached) input, and cache
reads and writes are counted apart from it. OpenAI's ``prompt_tokens`` *includes* its cached tokens,
so a harness on OpenAI reports ``input_tokens = prompt_tokens - cached_tokens`` and
``cache_read_tokens = cached_tokens``; otherwise cached input is charged twice.

Subscriptions (Claude Code, Codex, Copilot) bill a flat fee, not tokens. A turn on one still gets
the price the same tokens would have cost on the vendor's API: the *API-equivalent value*, which
is what the subscription saved, and the pricing source says so.

Built-in prices: Anthropic's pricing page (platform.claude.com/docs/en/about-claude/pricing) and
OpenAI's (openai.com/api/pricing), standard tier, short context, as published 2026-06 to 2026-10
(PRICES_AS_OF). Cache writes are the 5-minute TTL rate (1.25x input; 1-hour writes cost 2x). OpenAI
charges no premium to write its cache, so its cache writes cost plain input. Long-context surcharges,
batch and priority tiers are not modelled. Prices change: override any of them under ``pricing:``
in config.yaml (USD per million tokens; unset cache prices mean "charged as plain input").
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Annotated, Final

import msgspec

PRICES_AS_OF: Final = "2026-10"

_Rate = Annotated[float, msgspec.Meta(ge=0)]


class Price(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """USD per million tokens. A cache price left unset is charged at the input price."""

    input: _Rate
    output: _Rate
    cache_read: _Rate | None = None
    cache_write: _Rate | None = None

    def cost(self, input_tokens: int, output_tokens: int, cache_read: int = 0, cache_write: int = 0) -> float:
        read = self.input if self.cache_read is None else self.cache_read
        write = self.input if self.cache_write is None else self.cache_write
        micro = (
            input_tokens * self.input + output_tokens * self.output + cache_read * read + cache_write * write
        )
        return micro / 1_000_000


def _anthropic(input: float, output: float, cache_read: float) -> Price:
    # Anthropic prices a 5-minute cache write at 1.25x input (the default TTL Claude Code uses).
    return Price(input=input, output=output, cache_read=cache_read, cache_write=input * 1.25)


def _openai(input: float, output: float, cached: float | None) -> Price:
    return Price(input=input, output=output, cache_read=cached, cache_write=input)


#: Model id prefix → price. The longest prefix that matches at a word boundary wins, so
#: ``claude-opus-4-1`` beats ``claude-opus-4`` and ``gpt-5.4-mini`` beats ``gpt-5.4``.
BUILTIN: Final[dict[str, Price]] = {
    # Anthropic
    "claude-fable-5-1": _anthropic(10.0, 50.0, 0.25),
    "claude-mythos-5-1": _anthropic(10.0, 50.0, 0.25),
    "claude-fable-5": _anthropic(10.0, 50.0, 1.0),
    "claude-mythos-5": _anthropic(10.0, 50.0, 1.0),
    "claude-opus-5-5": _anthropic(4.0, 20.0, 0.20),
    "claude-opus-5": _anthropic(5.0, 25.0, 0.50),
    "claude-opus-4-8": _anthropic(5.0, 25.0, 0.50),
    "claude-opus-4-7": _anthropic(5.0, 25.0, 0.50),
    "claude-opus-4-6": _anthropic(5.0, 25.0, 0.50),
    "claude-opus-4-5": _anthropic(5.0, 25.0, 0.50),
    "claude-opus-4-1": _anthropic(15.0, 75.0, 1.50),
    "claude-opus-4": _anthropic(15.0, 75.0, 1.50),
    "claude-3-opus": _anthropic(15.0, 75.0, 1.50),
    "claude-sonnet-5-5": _anthropic(2.0, 10.0, 0.10),
    "claude-sonnet-5": _anthropic(2.0, 10.0, 0.20),
    "claude-sonnet-4": _anthropic(3.0, 15.0, 0.30),
    "claude-3-7-sonnet": _anthropic(3.0, 15.0, 0.30),
    "claude-3-5-sonnet": _anthropic(3.0, 15.0, 0.30),
    "claude-haiku-5-5": _anthropic(0.10, 0.50, 0.01),
    "claude-haiku-4-5": _anthropic(1.0, 5.0, 0.10),
    "claude-3-5-haiku": _anthropic(0.80, 4.0, 0.08),
    "claude-3-haiku": Price(input=0.25, output=1.25, cache_read=0.03, cache_write=0.30),
    # OpenAI
    "gpt-5.5-pro": _openai(30.0, 180.0, None),
    "gpt-5.5": _openai(5.0, 30.0, 0.50),
    "gpt-5.4-pro": _openai(30.0, 180.0, None),
    "gpt-5.4-mini": _openai(0.75, 4.50, 0.075),
    "gpt-5.4-nano": _openai(0.20, 1.25, 0.02),
    "gpt-5.4": _openai(2.50, 15.0, 0.25),
    "gpt-5.2": _openai(1.75, 14.0, 0.175),
    "gpt-5-pro": _openai(15.0, 120.0, None),
    "gpt-5-mini": _openai(0.25, 2.0, 0.025),
    "gpt-5-nano": _openai(0.05, 0.40, 0.005),
    "gpt-5.1-codex-mini": _openai(0.25, 2.0, 0.025),
    # gpt-5, gpt-5.1 and their -codex variants share one price.
    "gpt-5": _openai(1.25, 10.0, 0.125),
    "gpt-4.1-mini": _openai(0.40, 1.60, 0.10),
    "gpt-4.1-nano": _openai(0.10, 0.40, 0.025),
    "gpt-4.1": _openai(2.0, 8.0, 0.50),
    "gpt-4o-mini": _openai(0.15, 0.60, 0.075),
    "gpt-4o": _openai(2.50, 10.0, 1.25),
    "o4-mini": _openai(1.10, 4.40, 0.275),
    "o3-mini": _openai(1.10, 4.40, 0.55),
    "o3-pro": _openai(20.0, 80.0, None),
    "o1-pro": _openai(150.0, 600.0, None),
    "o3": _openai(2.0, 8.0, 0.50),
    "o1": _openai(15.0, 60.0, 7.50),
}

_DATE_SUFFIX: Final = re.compile(r"(-\d{8}|-\d{4}-\d{2}-\d{2}|-latest)$")
_BOUNDARY: Final = frozenset("-.:@[")


class Priced(msgspec.Struct, kw_only=True, frozen=True):
    cost_usd: float | None
    #: Where the figure came from: ``built-in 2026-10: claude-opus-4-5``, ``config: gpt-5.4``,
    #: ``reported by the harness`` or ``unpriced``; subscriptions add ``(API-equivalent)``.
    source: str


def normalise(model: str) -> str:
    """``anthropic/claude-sonnet-4.5-20250929`` → ``claude-sonnet-4-5``: the form the table uses.

    Vendor prefixes (OpenRouter, Copilot) and date or ``-latest`` suffixes name the same price.
    Claude versions are written with dots by some providers (Copilot's ``claude-sonnet-4.5``) and
    dashes by Anthropic; OpenAI's dots are part of the name (``gpt-5.4`` is not ``gpt-5-4``).
    """
    bare = model.strip().lower().rsplit("/", 1)[-1]
    bare = _DATE_SUFFIX.sub("", bare)
    if bare.startswith("claude"):
        bare = bare.replace(".", "-")
    return bare


def _index(table: Mapping[str, Price]) -> list[tuple[str, str, Price]]:
    # Longest key first, so the first match is the most specific one.
    return sorted(((normalise(k), k, p) for k, p in table.items()), key=lambda e: -len(e[0]))


def _first(bare: str, index: list[tuple[str, str, Price]]) -> tuple[str, Price] | None:
    for k, key, price in index:
        if bare == k or (bare.startswith(k) and bare[len(k)] in _BOUNDARY):
            return key, price
    return None


_BUILTIN_INDEX: Final = _index(BUILTIN)


@functools.lru_cache(maxsize=512)
def _builtin(bare: str) -> tuple[str, Price] | None:
    # Harnesses name the same few models over and over; pricing sits on the turn-recording path.
    return _first(bare, _BUILTIN_INDEX)


def match(model: str, table: Mapping[str, Price]) -> tuple[str, Price] | None:
    """The entry whose key is the longest prefix of ``model`` ending at a word boundary."""
    bare = normalise(model)
    if table is BUILTIN:
        return _builtin(bare)
    return _first(bare, _index(table)) if table else None


def _lookup(model: str, overrides: Mapping[str, Price], subscription: bool) -> tuple[Price | None, str]:
    """The price for ``model`` and the ``source`` label a priced turn carries."""
    suffix = " (API-equivalent; subscription)" if subscription else ""
    found = match(model, overrides)
    origin = "config"
    if found is None:
        found = match(model, BUILTIN)
        origin = f"built-in {PRICES_AS_OF}"
    if found is None:
        return None, "unpriced"
    key, price = found
    return price, f"{origin}: {key}{suffix}"


def price_turn(
    model: str,
    input_tokens: int,
    output_tokens: int,
    cache_read_tokens: int,
    cache_write_tokens: int,
    *,
    overrides: Mapping[str, Price],
    subscription: bool,
    reported_usd: float | None = None,
) -> Priced:
    """The cost of one turn and where its price came from. Config overrides win over the built-ins;
    a cost the harness reports (OpenRouter returns one) wins over both."""
    if reported_usd is not None:
        suffix = " (API-equivalent; subscription)" if subscription else ""
        return Priced(cost_usd=reported_usd, source="reported by the harness" + suffix)
    price, source = _lookup(model, overrides, subscription)
    if price is None:
        return Priced(cost_usd=None, source=source)
    return Priced(
        cost_usd=price.cost(input_tokens, output_tokens, cache_read_tokens, cache_write_tokens), source=source
    )


class PriceBook:
    """``price_turn`` for the daemon's hot path: each model name is looked up once (normalising and
    matching it costs more than the arithmetic). Make a new one when the config's prices change."""

    _MAX: Final = 4096

    def __init__(self, overrides: Mapping[str, Price]) -> None:
        self.overrides = overrides
        self._found: dict[tuple[str, bool], tuple[Price | None, str]] = {}

    def price_turn(
        self,
        model: str,
        input_tokens: int,
        output_tokens: int,
        cache_read_tokens: int,
        cache_write_tokens: int,
        *,
        subscription: bool,
        reported_usd: float | None = None,
    ) -> Priced:
        if reported_usd is not None:
            return price_turn(
                model,
                0,
                0,
                0,
                0,
                overrides=self.overrides,
                subscription=subscription,
                reported_usd=reported_usd,
            )
        found = self._found.get((model, subscription))
        if found is None:
            if len(self._found) >= self._MAX:
                self._found.clear()  # model names come from clients: keep the memory bounded
            found = self._found[(model, subscription)] = _lookup(model, self.overrides, subscription)
        price, source = found
        if price is None:
            return Priced(cost_usd=None, source=source)
        return Priced(
            cost_usd=price.cost(input_tokens, output_tokens, cache_read_tokens, cache_write_tokens),
            source=source,
        )


def cache_loss(model: str, cached_tokens: int, *, overrides: Mapping[str, Price]) -> float | None:
    """What moving a conversation with ``cached_tokens`` of prompt cache to another provider costs on
    its next call: those tokens are sent again at the cache-write (else input) price instead of being
    read from the cache. ``None`` when the model is unpriced."""
    found = match(model, overrides) or match(model, BUILTIN)
    if found is None or cached_tokens <= 0:
        return None if found is None else 0.0
    price = found[1]
    write = price.input if price.cache_write is None else price.cache_write
    read = price.input if price.cache_read is None else price.cache_read
    return max(0.0, write - read) * cached_tokens / 1_000_000
