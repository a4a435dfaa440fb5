"""``get_codex_models()``: the Codex models this machine can use, best first, with no network.

Sources, in order: Codex's ``models_cache.json`` (sorted by its ``priority``, then name), the
``model`` in Codex's ``config.toml``, then a built-in list; duplicates are dropped, first kept.

Unlike the library this grows from, ``$CODEX_HOME`` is honoured, and one malformed cache entry
(``"slug": null``, a string where an object belongs) skips that entry only, not the whole cache.
"""

from __future__ import annotations

import json
import logging
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

log = logging.getLogger("bhoga")

DEFAULT_MODELS: Final = (
    "gpt-5.4-mini",
    "gpt-5.4",
    "gpt-5.3-codex",
    "gpt-5.2-codex",
    "gpt-5.1-codex-max",
    "gpt-5.1-codex-mini",
)
#: Where an entry without a usable ``priority`` sorts: after every ranked one.
_UNRANKED: Final = 10000
_HIDDEN: Final = frozenset({"hide", "hidden"})


def codex_home(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    configured = env.get("CODEX_HOME", "").strip()
    return Path(configured).expanduser() if configured else Path.home() / ".codex"


def _rank(priority: object) -> float:
    # A bool is an int to Python, but ``"priority": true`` is not a rank.
    if isinstance(priority, bool) or not isinstance(priority, int | float):
        return _UNRANKED
    return float(priority) if priority == priority else _UNRANKED  # NaN sorts last


def _cached_entry(item: object) -> tuple[float, str] | None:
    if not isinstance(item, Mapping):
        return None
    slug = item.get("slug")
    if not isinstance(slug, str) or not slug.strip():
        return None
    if item.get("supported_in_api") is False:
        return None
    visibility = item.get("visibility")
    if isinstance(visibility, str) and visibility.strip().lower() in _HIDDEN:
        return None
    return _rank(item.get("priority")), slug.strip()


def models_from_cache(data: Any) -> list[str]:
    """Usable slugs of a parsed ``models_cache.json``, best first."""
    models = data.get("models") if isinstance(data, Mapping) else None
    if not isinstance(models, list):
        return []
    entries = [entry for item in models if (entry := _cached_entry(item)) is not None]
    return [slug for _, slug in sorted(entries)]


def _read_cache(path: Path) -> list[str]:
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        log.debug("ignoring %s: %s", path, exc)
        return []
    return models_from_cache(data)


def _read_config_model(path: Path) -> list[str]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        log.debug("ignoring %s: %s", path, exc)
        return []
    model = data.get("model")
    return [model.strip()] if isinstance(model, str) and model.strip() else []


def get_codex_models(codex_home_dir: str | os.PathLike[str] | None = None) -> list[str]:
    """Model ids for Codex, best first: the models cache, then ``config.toml``'s model, then defaults.

    :param codex_home_dir: Codex's home; default ``$CODEX_HOME``, else ``~/.codex``.
    """
    home = Path(codex_home_dir).expanduser() if codex_home_dir is not None else codex_home()
    found = [
        *_read_cache(home / "models_cache.json"),
        *_read_config_model(home / "config.toml"),
        *DEFAULT_MODELS,
    ]
    return list(dict.fromkeys(model for model in found if model))
