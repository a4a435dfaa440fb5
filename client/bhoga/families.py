"""Model families and the default provider order for each.

Pure functions: no I/O. The daemon routes with these, and Hermes integration names models with them.
"""

from __future__ import annotations

from typing import Final

#: Vendor prefixes that name who made a model (``anthropic/claude-opus-4``); stripped before matching.
_VENDOR_FAMILY: Final = {
    "anthropic": "anthropic",
    "openai": "openai",
    "google": "google",
}

#: Ordered prefix rules on the bare model name. A prefix must be followed by a separator or a digit,
#: so ``o3`` matches ``o3-mini`` but ``o30`` does not and ``claude`` never matches ``claudette``.
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
    ("palm", "google"),
)

#: The library's provider order per family; ``other`` also applies to families with no list.
DEFAULT_HIERARCHY: Final[dict[str, tuple[str, ...]]] = {
    "anthropic": ("claude_code", "anthropic_api", "github-copilot", "openrouter"),
    "openai": ("openai-codex", "openai_api", "github-copilot", "openrouter"),
    "google": ("github-copilot", "openrouter"),
    "other": ("github-copilot", "openrouter"),
}


def split_vendor(model: str) -> tuple[str | None, str]:
    """``"anthropic/claude-opus-4"`` → ``("anthropic", "claude-opus-4")``; no prefix gives ``None``."""
    vendor, sep, bare = model.rpartition("/")
    return (vendor.lower() or None, bare) if sep else (None, model)


def _matches(name: str, prefix: str) -> bool:
    if not name.startswith(prefix):
        return False
    rest = name[len(prefix) :]
    return not rest or not rest[0].isalpha() or prefix in ("gpt", "chatgpt")


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


_HERMES_PROVIDER: Final = {
    "claude_code": "anthropic",
    "anthropic_api": "anthropic",
    "openai-codex": "openai-codex",
    "openai_api": "openai-api",
    "github-copilot": "copilot",
    "openrouter": "openrouter",
}


def to_hermes_model(pid: str, mid: str) -> str:
    """The model name as Hermes expects it for the provider that bhoga id ``pid`` maps to."""
    target = _HERMES_PROVIDER.get(pid, "openrouter")
    _, bare = split_vendor(mid)
    if target == "anthropic":
        return bare.replace(".", "-")
    if target == "openrouter":
        family = model_family(mid)
        vendor = family if family != "other" else None
        return f"{vendor}/{bare}" if vendor else mid
    return bare
