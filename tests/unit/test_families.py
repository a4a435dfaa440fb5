"""Family rules and Hermes naming, one case per row of the reference tables.

Sources: bhoga-behaviour.md §3.1, §5.3 and §7 items 17–18 (what the library did, and its bugs), and
hermes-contract.md §1–2 (what Hermes 0.19 does). ``tests/hermes_compat`` runs the Hermes columns
against the real package, so the expectations here cannot drift from it unnoticed.
"""

from __future__ import annotations

import pytest

from bhoga.quota.families import (
    DEFAULT_HIERARCHY,
    HERMES_API_MODES,
    HERMES_PROVIDER,
    hermes_api_mode,
    hermes_provider,
    hermes_unusable_reason,
    model_family,
    split_vendor,
    to_hermes_model,
)

# -- model_family -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "family"),
    [
        # The library's prefix table (§3.1), in its order.
        ("claude-sonnet-4.6", "anthropic"),
        ("opus-4", "anthropic"),
        ("sonnet-4.5", "anthropic"),
        ("haiku-3", "anthropic"),
        ("gpt-5.4", "openai"),
        ("gpt4o", "openai"),
        ("o1", "openai"),
        ("o1-preview", "openai"),
        ("o3-mini", "openai"),
        ("o4-mini", "openai"),
        ("codex-mini-latest", "openai"),
        ("gemini-2.5-pro", "google"),
        ("palm-2", "google"),
        ("gemma-3-27b", "google"),
        # §7 item 17: vendor-prefixed ids were "other" (routed to Copilot only).
        ("anthropic/claude-opus-4", "anthropic"),
        ("openai/gpt-5.4", "openai"),
        ("google/gemini-3-flash-preview", "google"),
        ("openrouter/anthropic/claude-3.5-sonnet", "anthropic"),
        # ...and chatgpt-* and fine-tunes were "other" too.
        ("chatgpt-4o-latest", "openai"),
        ("ft:gpt-4o-mini:acme::abc123", "openai"),
        # o-series prefixes over-matched: "o30" is not o3.
        ("o30", "other"),
        ("o3x", "other"),
        # Whole words only.
        ("claudette-1", "other"),
        ("gptq-llama", "other"),
        ("codexify", "other"),
        # Case and whitespace do not matter.
        ("  Claude-Opus-4  ", "anthropic"),
        ("O3-MINI", "openai"),
        # A foreign vendor is not overridden by the bare name's look.
        ("meta-llama/llama-3-70b", "other"),
        ("llama-3", "other"),
        ("", "other"),
    ],
)
def test_model_family(model: str, family: str) -> None:
    assert model_family(model) == family


def test_every_family_has_providers() -> None:
    """§7 item 17: google had an empty list, so best_for returned None for every Gemini model."""
    assert all(DEFAULT_HIERARCHY[f] for f in ("anthropic", "openai", "google", "other"))
    assert DEFAULT_HIERARCHY["anthropic"][:3] == ("claude_code", "anthropic_api", "github-copilot")
    assert DEFAULT_HIERARCHY["openai"][:3] == ("openai-codex", "openai_api", "github-copilot")


@pytest.mark.parametrize(
    ("model", "split"),
    [
        ("anthropic/claude-opus-4", ("anthropic", "claude-opus-4")),
        ("Anthropic/claude", ("anthropic", "claude")),
        ("a/b/c", ("a/b", "c")),
        ("claude", (None, "claude")),
        ("/x", (None, "x")),
    ],
)
def test_split_vendor(model: str, split: tuple[str | None, str]) -> None:
    assert split_vendor(model) == split


# -- Hermes provider ids -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pid", "hermes"),
    [
        ("claude_code", "anthropic"),
        ("anthropic_api", "anthropic"),
        ("openai-codex", "openai-codex"),
        # §7 item 31: the library wrote openrouter here.
        ("openai_api", "openai-api"),
        ("github-copilot", "copilot"),
        ("openrouter", "openrouter"),
        # Already a Hermes id.
        ("copilot", "copilot"),
        ("openai-api", "openai-api"),
    ],
)
def test_hermes_provider(pid: str, hermes: str) -> None:
    assert hermes_provider(pid) == hermes
    assert hermes_unusable_reason(pid) is None


@pytest.mark.parametrize("pid", ["openai", "copilot-acp", "some_local_thing", ""])
def test_providers_hermes_cannot_use_say_why(pid: str) -> None:
    assert hermes_provider(pid) is None
    reason = hermes_unusable_reason(pid)
    assert reason
    if pid == "openai":
        assert "openai-api" in reason


def test_only_canonical_ids_are_written() -> None:
    """Hermes's alias tables disagree with each other; aliases like github-copilot are never written."""
    canonical = {"anthropic", "openai-codex", "openai-api", "copilot", "openrouter"}
    assert set(HERMES_PROVIDER.values()) == canonical


@pytest.mark.parametrize(
    ("hermes", "model", "mode"),
    [
        ("anthropic", "claude-sonnet-4-6", "anthropic_messages"),
        ("openai-codex", "gpt-5.4", "codex_responses"),
        ("openai-api", "gpt-5.4", "codex_responses"),
        ("openrouter", "anthropic/claude-sonnet-4.6", "chat_completions"),
        # Copilot: per model (models._should_use_copilot_responses_api).
        ("copilot", "gpt-5.4", "codex_responses"),
        ("copilot", "gpt-5", "codex_responses"),
        ("copilot", "gpt-5.3-codex", "codex_responses"),
        ("copilot", "gpt-6", "codex_responses"),
        ("copilot", "gpt-5-mini", "chat_completions"),
        ("copilot", "gpt-4.1", "chat_completions"),
        ("copilot", "claude-sonnet-4.6", "chat_completions"),
        ("copilot", "gemini-3-flash-preview", "chat_completions"),
    ],
)
def test_hermes_api_mode(hermes: str, model: str, mode: str) -> None:
    assert hermes_api_mode(hermes, model) == mode
    assert mode in HERMES_API_MODES


# -- to_hermes_model ---------------------------------------------------------------------------------

#: hermes-contract.md §2's table, per bhoga provider: (input, what bhoga writes). Where Hermes's own
#: ``normalize_model_for_provider`` gives something else, the comment says what and why we differ.
CONTRACT_TABLE = {
    "openrouter": [
        ("claude-sonnet-4.6", "anthropic/claude-sonnet-4.6"),
        ("anthropic/claude-sonnet-4.6", "anthropic/claude-sonnet-4.6"),
        # Hermes: anthropic/claude-sonnet-4-6, a slug OpenRouter does not serve (its Claude ids are dotted).
        ("claude-sonnet-4-6", "anthropic/claude-sonnet-4.6"),
        ("gpt-5.4", "openai/gpt-5.4"),
        ("openai/gpt-5.4", "openai/gpt-5.4"),
        ("openai/o3", "openai/o3"),
        ("glm-5.1", "z-ai/glm-5.1"),
        ("deepseek-r1", "deepseek/deepseek-r1"),
        ("google/gemini-3-flash-preview", "google/gemini-3-flash-preview"),
    ],
    "claude_code": [
        ("claude-sonnet-4.6", "claude-sonnet-4-6"),
        ("anthropic/claude-sonnet-4.6", "claude-sonnet-4-6"),
        ("claude-sonnet-4-6", "claude-sonnet-4-6"),
        # Wrong pairings (bhoga never routes them) come out as Hermes would send them.
        ("gpt-5.4", "gpt-5-4"),
        ("openai/gpt-5.4", "openai/gpt-5.4"),
        ("openai/o3", "openai/o3"),
        ("glm-5.1", "glm-5-1"),
        ("deepseek-r1", "deepseek-r1"),
        ("google/gemini-3-flash-preview", "google/gemini-3-flash-preview"),
    ],
    "github-copilot": [
        ("claude-sonnet-4.6", "claude-sonnet-4.6"),
        ("anthropic/claude-sonnet-4.6", "claude-sonnet-4.6"),
        ("claude-sonnet-4-6", "claude-sonnet-4.6"),
        ("gpt-5.4", "gpt-5.4"),
        ("openai/gpt-5.4", "gpt-5.4"),
        # Hermes's alias table swaps in gpt-5.3-codex; bhoga picks providers, never other models.
        ("openai/o3", "o3"),
        ("glm-5.1", "glm-5.1"),
        ("deepseek-r1", "deepseek-r1"),
        ("google/gemini-3-flash-preview", "gemini-3-flash-preview"),
    ],
    "openai-codex": [
        ("claude-sonnet-4.6", "claude-sonnet-4.6"),
        ("anthropic/claude-sonnet-4.6", "anthropic/claude-sonnet-4.6"),
        ("claude-sonnet-4-6", "claude-sonnet-4-6"),
        ("gpt-5.4", "gpt-5.4"),
        ("openai/gpt-5.4", "gpt-5.4"),
        ("openai/o3", "o3"),
        ("glm-5.1", "glm-5.1"),
        ("deepseek-r1", "deepseek-r1"),
        ("google/gemini-3-flash-preview", "google/gemini-3-flash-preview"),
    ],
    # Hermes passes openai-api names through untouched, so bhoga writes the bare OpenAI id.
    "openai_api": [
        ("gpt-5.4", "gpt-5.4"),
        ("openai/gpt-5.4", "gpt-5.4"),
        ("openai/o3", "o3"),
        ("o4-mini", "o4-mini"),
    ],
}

CASES = [(pid, model, out) for pid, rows in CONTRACT_TABLE.items() for model, out in rows]


@pytest.mark.parametrize(("pid", "model", "expected"), CASES)
def test_to_hermes_model_contract_table(pid: str, model: str, expected: str) -> None:
    assert to_hermes_model(pid, model) == expected


@pytest.mark.parametrize(("pid", "model", "expected"), CASES)
def test_to_hermes_model_is_idempotent(pid: str, model: str, expected: str) -> None:
    """Writing a name that is already in Hermes form changes nothing (follow rewrites stay stable)."""
    assert to_hermes_model(pid, expected) == expected


@pytest.mark.parametrize(
    ("pid", "model", "expected"),
    [
        # The library's §5.3 table, with its quirks fixed.
        ("claude_code", "claude-3.5-sonnet-20240620", "claude-3-5-sonnet-20240620"),
        ("anthropic_api", "claude-sonnet-4.6", "claude-sonnet-4-6"),
        ("openai-codex", "openai/gpt-5.4", "gpt-5.4"),
        ("github-copilot", "anthropic/claude-sonnet-4.6", "claude-sonnet-4.6"),
        ("openrouter", "gemini-2.5-pro", "google/gemini-2.5-pro"),
        # §7 item 18: the vendor came from the unstripped id, so this became openai/claude-opus-4.
        ("openrouter", "anthropic/claude-opus-4", "anthropic/claude-opus-4"),
        # The library wrote openai/llama-3 for every unknown family.
        ("openrouter", "llama-3", "meta-llama/llama-3"),
        ("openrouter", "chatgpt-4o-latest", "openai/chatgpt-4o-latest"),
        ("openrouter", "qwen3.5-plus", "qwen/qwen3.5-plus"),
        ("openrouter", "my-local-model", "my-local-model"),
        # Copilot's dotted form, undated.
        ("github-copilot", "claude-sonnet-4-5-20250929", "claude-sonnet-4.5"),
        ("github-copilot", "claude-opus-4-6", "claude-opus-4.6"),
        ("github-copilot", "claude-haiku-4-5", "claude-haiku-4.5"),
        ("github-copilot", "claude-sonnet-4-0", "claude-sonnet-4"),
        ("github-copilot", "claude-3-5-sonnet", "claude-3.5-sonnet"),
        ("github-copilot", "gpt-4.1", "gpt-4.1"),
        ("openrouter", "claude-3-5-sonnet-20240620", "anthropic/claude-3.5-sonnet-20240620"),
        # Whitespace from a config file or a command line.
        ("claude_code", " claude-opus-4.1 ", "claude-opus-4-1"),
        # An id Hermes cannot use is left as it is rather than guessed at (the library sent it to openrouter).
        ("somewhere", "claude-opus-4.1", "claude-opus-4.1"),
    ],
)
def test_to_hermes_model_rules(pid: str, model: str, expected: str) -> None:
    assert to_hermes_model(pid, model) == expected
