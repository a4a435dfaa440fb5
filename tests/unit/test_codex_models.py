"""get_codex_models(): the library's sources and order, without its bugs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bhoga.codex_models import DEFAULT_MODELS, get_codex_models, models_from_cache


def write_cache(home: Path, models: object) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "models_cache.json").write_text(json.dumps({"models": models}))


def test_defaults_without_files(tmp_path: Path) -> None:
    assert get_codex_models(tmp_path / "none") == list(DEFAULT_MODELS)


def test_cache_then_config_then_defaults(tmp_path: Path) -> None:
    write_cache(
        tmp_path,
        [
            {"slug": "gpt-5.5", "priority": 2},
            {"slug": "gpt-5.4", "priority": 1},
            {"slug": "a-unranked"},
            {"slug": "b-tie", "priority": 2},
            {"slug": "hidden-one", "priority": 0, "visibility": " Hidden "},
            {"slug": "no-api", "priority": 0, "supported_in_api": False},
        ],
    )
    (tmp_path / "config.toml").write_text('model = " gpt-5.5-pro "\n')
    assert get_codex_models(tmp_path) == [
        "gpt-5.4",
        "b-tie",
        "gpt-5.5",
        "a-unranked",
        "gpt-5.5-pro",
        *[m for m in DEFAULT_MODELS if m != "gpt-5.4"],
    ]


def test_one_bad_entry_keeps_the_rest(tmp_path: Path) -> None:
    # The library threw the whole cache away on {"slug": null}.
    write_cache(
        tmp_path,
        [{"slug": None}, "junk", {"slug": "good", "priority": "high"}, {"slug": "x", "priority": True}],
    )
    assert get_codex_models(tmp_path)[:2] == ["good", "x"]
    assert models_from_cache(["a list root"]) == []


def test_broken_files_are_ignored(tmp_path: Path) -> None:
    (tmp_path / "models_cache.json").write_text("{not json")
    (tmp_path / "config.toml").write_text("model = [")
    assert get_codex_models(tmp_path) == list(DEFAULT_MODELS)


def test_codex_home_is_honoured(tmp_path: Path) -> None:
    write_cache(tmp_path / "custom", [{"slug": "from-codex-home", "priority": 1}])
    code = "import bhoga; print(bhoga.get_codex_models()[0])"
    env = {"CODEX_HOME": str(tmp_path / "custom"), "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "from-codex-home"
