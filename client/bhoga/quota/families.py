"""Model families, the default provider order for each, and how Hermes names providers and models.

Pure functions: no I/O. The daemon routes with these, and the Hermes integration names models with
them. The Hermes rules mirror ``hermes-agent==0.19.0`` (``hermes_cli/model_normalize.py``,
``hermes_cli/auth.py``); ``tests/hermes_compat`` checks them against that package.
"""

from __future__ import annotations

import re
from typing import Final

#: Vendor prefixes that name who made a model (``anthropic/claude-opus-4``); they decide the family
#: before the bare name is looked at, so ``anthropic/...`` is never routed as "other".
_VENDOR_FAMILY: Final = {
    "anthropic": "anthropic",
    "openai": "openai",
    "google": "google",
}

#: Ordered prefix rules on the bare model name (see ``_matches`` for what may follow a prefix).
_PREFIXES: Final = (
    ("claude", "anthropic"),
    ("opus", "anthropic"),
    ("sonnet", "anthropic"),
    ("haiku", "anthropic"),
    ("chatgpt", "openai"),
    ("gpt", "openai"),
    ("codex", "openai"),
    ("o1", "openai"),
    ("o3", "openai"),
    ("o4", "openai"),
    ("gemini", "google"),
    ("gemma", "google"),
    ("palm", "google"),
)

#: The library's provider order per family; ``other`` also applies to families with no list.
DEFAULT_HIERARCHY: Final[dict[str, tuple[str, ...]]] = {
    "anthropic": ("claude_code", "anthropic_api", "github-copilot", "openrouter"),
    "openai": ("openai-codex", "openai_api", "github-copilot", "openrouter"),
    "google": ("github-copilot", "openrouter"),
    "other": ("github-copilot", "openrouter"),
}

_SEPARATORS: Final = frozenset("-_.:@ ")


def split_vendor(model: str) -> tuple[str | None, str]:
    """``"anthropic/claude-opus-4"`` → ``("anthropic", "claude-opus-4")``; no prefix gives ``None``."""
    vendor, sep, bare = model.rpartition("/")
    return (vendor.lower() or None, bare) if sep else (None, model)


def _matches(name: str, prefix: str) -> bool:
    """``prefix`` starts ``name`` as a whole word.

    A word prefix (``claude``, ``gpt``) may be followed by a separator or a digit (``gpt4o``); an
    o-series prefix already ends in its number, so only a separator may follow: ``o3-mini`` is
    OpenAI, ``o30`` is not (the library matched plain string prefixes and over-matched both).
    """
    if not name.startswith(prefix):
        return False
    rest = name[len(prefix) :]
    if not rest:
        return True
    if prefix[-1].isdigit():
        return rest[0] in _SEPARATORS
    return rest[0] in _SEPARATORS or rest[0].isdigit()


def model_family(model: str) -> str:
    """``anthropic``, ``openai``, ``google`` or ``other``."""
    vendor, bare = split_vendor(model.strip().lower())
    if vendor is not None and vendor.split("/")[-1] in _VENDOR_FAMILY:
        return _VENDOR_FAMILY[vendor.split("/")[-1]]
    bare = bare.removeprefix("ft:")
    for prefix, family in _PREFIXES:
        if _matches(bare, prefix):
            return family
    return "other"


# --------------------------------------------------------------------------------------------------
# Hermes: provider ids


#: bhoga provider id → Hermes 0.19 canonical provider id (``PROVIDER_REGISTRY`` in hermes_cli/auth.py).
#: Canonical ids only: Hermes has three alias tables that disagree, so an alias may resolve
#: differently in different code paths.
HERMES_PROVIDER: Final[dict[str, str]] = {
    # Hermes has one ``anthropic`` provider for both; it picks the credential itself (OAuth token,
    # ~/.claude/.credentials.json, then ANTHROPIC_API_KEY) and rotates within that pool on a 429.
    "claude_code": "anthropic",
    "anthropic_api": "anthropic",
    "openai-codex": "openai-codex",
    # Not ``openrouter`` (the library's mistake: quota was tracked for OpenAI while Hermes was sent
    # to OpenRouter) and not ``openai``, which Hermes rejects as a main provider.
    "openai_api": "openai-api",
    "github-copilot": "copilot",
    "openrouter": "openrouter",
}

#: Hermes ids that a bhoga provider id may already be spelled as (``bhoga`` configs can name them).
_HERMES_NATIVE: Final = frozenset(HERMES_PROVIDER.values())

#: Why a provider id that looks usable is not, so ``bhoga hermes apply`` can say so.
_HERMES_REJECTS: Final[dict[str, str]] = {
    "openai": "Hermes 0.19 has no main provider 'openai'; use openai_api (written as 'openai-api')",
    "copilot-acp": "copilot-acp drives an external Copilot process; bhoga cannot see its quota",
}

#: api_mode Hermes uses (and for most providers forces) per Hermes provider id.
_HERMES_API_MODE: Final[dict[str, str]] = {
    "anthropic": "anthropic_messages",
    "openai-codex": "codex_responses",
    "openai-api": "codex_responses",
    "openrouter": "chat_completions",
}

#: ``runtime_provider._VALID_API_MODES``: anything else is silently dropped by Hermes.
HERMES_API_MODES: Final = frozenset(
    {"chat_completions", "codex_responses", "anthropic_messages", "bedrock_converse", "codex_app_server"}
)


def hermes_provider(pid: str) -> str | None:
    """The Hermes provider id for bhoga provider ``pid``, or ``None`` if Hermes cannot use it."""
    if pid in HERMES_PROVIDER:
        return HERMES_PROVIDER[pid]
    return pid if pid in _HERMES_NATIVE else None


def hermes_unusable_reason(pid: str) -> str | None:
    """Why Hermes cannot be pointed at ``pid``, or ``None`` when it can."""
    if hermes_provider(pid) is not None:
        return None
    return _HERMES_REJECTS.get(pid, f"no Hermes provider corresponds to bhoga provider {pid!r}")


_COPILOT_RESPONSES = re.compile(r"^gpt-(\d+)")


def hermes_api_mode(hermes_pid: str, model: str) -> str:
    """The ``model.api_mode`` to write for ``model`` (as written by ``to_hermes_model``).

    Copilot is the one provider where it depends on the model: Hermes sends GPT-5 and later (except
    ``gpt-5-mini``) to the Responses API and everything else to Chat Completions
    (``models._should_use_copilot_responses_api``). Writing it explicitly also clears a mode left by
    an earlier model, which Hermes would otherwise honour for the same provider.
    """
    if hermes_pid == "copilot":
        match = _COPILOT_RESPONSES.match(model)
        if match and int(match.group(1)) >= 5 and not model.startswith("gpt-5-mini"):
            return "codex_responses"
        return "chat_completions"
    return _HERMES_API_MODE.get(hermes_pid, "chat_completions")


# --------------------------------------------------------------------------------------------------
# Hermes: model names


#: First token of a bare name → the vendor slug aggregators use (``model_normalize._VENDOR_PREFIXES``),
#: extended where Hermes has a gap (``chatgpt-*``, ``codex-*`` are OpenAI models too).
_AGGREGATOR_VENDOR: Final = {
    "claude": "anthropic",
    "gpt": "openai",
    "chatgpt": "openai",
    "codex": "openai",
    "o1": "openai",
    "o3": "openai",
    "o4": "openai",
    "gemini": "google",
    "gemma": "google",
    "deepseek": "deepseek",
    "glm": "z-ai",
    "kimi": "moonshotai",
    "minimax": "minimax",
    "grok": "x-ai",
    "qwen": "qwen",
    "mimo": "xiaomi",
    "trinity": "arcee-ai",
    "nemotron": "nvidia",
    "llama": "meta-llama",
    "step": "stepfun",
}

_FAMILY_VENDOR: Final = {"anthropic": "anthropic", "openai": "openai", "google": "google"}

#: A trailing snapshot date (``-20250929``): Copilot serves undated ids only.
_DATE_SUFFIX: Final = re.compile(r"-\d{8}$")
#: A dash between two version numbers whose second is one digit: ``4-6`` in ``claude-sonnet-4-6``.
_DASHED_VERSION: Final = re.compile(r"(?<=\d)-(\d)(?=-|$)")


def _vendor_for_aggregator(bare: str) -> str | None:
    family = model_family(bare)
    if family in _FAMILY_VENDOR:
        return _FAMILY_VENDOR[family]
    lower = bare.lower()
    first = lower.split("-", 1)[0]
    if first in _AGGREGATOR_VENDOR:
        return _AGGREGATOR_VENDOR[first]
    # Like Hermes: ``qwen3.5-plus`` has no exact first token, so fall back to a prefix match.
    for prefix, vendor in _AGGREGATOR_VENDOR.items():
        if lower.startswith(prefix):
            return vendor
    return None


def _claude_dotted(bare: str) -> str:
    """Anthropic's dashed version → the dotted one Copilot and OpenRouter use.

    ``claude-sonnet-4-6`` → ``claude-sonnet-4.6``, ``claude-3-5-sonnet`` → ``claude-3.5-sonnet``;
    a ``.0`` minor is dropped as Copilot does (``claude-sonnet-4-0`` → ``claude-sonnet-4``).
    """
    if not bare.lower().startswith("claude"):
        return bare
    dotted = _DASHED_VERSION.sub(r".\1", bare)
    return re.sub(r"(?<=\d)\.0(?=-|$)", "", dotted)


def _strip_prefix(model: str, *prefixes: str) -> str:
    vendor, bare = split_vendor(model)
    return bare if vendor in prefixes else model


def to_hermes_model(pid: str, mid: str) -> str:
    """The model name to write into Hermes's config when it is served by bhoga provider ``pid``.

    The result is the name the provider's API accepts, already in the form Hermes's own
    ``normalize_model_for_provider`` leaves alone, so what Hermes sends is what was written.
    Hermes skips normalisation of the main model for aggregators (openrouter), so the vendor slug
    must be written here. A model is never swapped for a different one (Hermes's Copilot alias table
    does that for o-series models; bhoga does not pick models, only providers).
    """
    model = mid.strip()
    target = hermes_provider(pid)
    if target == "anthropic":
        # Dots become dashes (``claude-sonnet-4.6`` → ``claude-sonnet-4-6``); a foreign vendor
        # prefix is left as it is, as Hermes does, since stripping it would change the model.
        bare = _strip_prefix(model, "anthropic")
        return bare if "/" in bare else bare.replace(".", "-")
    if target == "copilot":
        _, bare = split_vendor(model)
        return _claude_dotted(_DATE_SUFFIX.sub("", bare) if bare.lower().startswith("claude") else bare)
    if target in ("openai-codex", "openai-api"):
        return _strip_prefix(model, "openai", target)
    if target == "openrouter":
        vendor, bare = split_vendor(model)
        if vendor is None:
            vendor = _vendor_for_aggregator(bare)
        if vendor is None:
            return model
        return f"{vendor}/{_claude_dotted(bare) if vendor == 'anthropic' else bare}"
    return model
