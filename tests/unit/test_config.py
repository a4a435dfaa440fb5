"""config.yaml is untrusted input: every mistake is a ConfigError naming the file, the key path and
the line, never a traceback, and nothing out of range gets through."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

from bhogad import config
from bhogad.config import ConfigError, StrategyName, Synchronous, load


def load_text(tmp_path: Path, text: str | bytes) -> config.Config:
    path = tmp_path / "config.yaml"
    if isinstance(text, str):
        path.write_text(text)
    else:
        path.write_bytes(text)
    return load(path)


def error_of(tmp_path: Path, text: str | bytes) -> str:
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, text)
    message = str(info.value)
    assert message.startswith(str(tmp_path / "config.yaml")), message
    return message


def test_defaults_and_enums(tmp_path: Path) -> None:
    cfg = load(None)
    assert cfg.routing.strategy is StrategyName.HEADROOM and cfg.store.synchronous is Synchronous.NORMAL
    cfg = load_text(tmp_path, "routing:\n  strategy: pace\nstore:\n  synchronous: full\n")
    assert cfg.routing.strategy is StrategyName.PACE and cfg.store.synchronous is Synchronous.FULL
    assert config.STRATEGY_NAMES == ("headroom", "pace")


def test_a_misspelt_provider_is_named_with_its_line_and_a_hint(tmp_path: Path) -> None:
    message = error_of(
        tmp_path, "server:\n  max_connections: 10\nproviders:\n  claud_code:\n    priority: 3\n"
    )
    assert ":4: providers.claud_code: unknown provider (known: " in message
    assert "claude_code" in message and "did you mean `claude_code`?" in message
    assert "a provider of your own needs `kind`" in message


def test_a_provider_of_your_own_with_kind_is_fine(tmp_path: Path) -> None:
    cfg = load_text(
        tmp_path,
        "providers:\n  my-gateway:\n    kind: api_key\n    priority: 5\n    key_env: [MY_GATEWAY_KEY]\n"
        "routing:\n  families:\n    anthropic: [claude_code, my-gateway]\n",
    )
    assert cfg.providers["my-gateway"].priority == 5
    assert cfg.routing.families["anthropic"] == ["claude_code", "my-gateway"]


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("server:\n  max_connections: 0\n", ":2: server.max_connections: expected `int` >= 1"),
        ("server:\n  metrics_port: 99999\n", ":2: server.metrics_port: expected `int` <= 65535"),
        ("server:\n  metrics_port: 0\n", ":2: server.metrics_port"),
        ("server:\n  max_line_bytes: 0\n", ":2: server.max_line_bytes: expected `int` >= 4096"),
        ("server:\n  idle_timeout_s: -1\n", ":2: server.idle_timeout_s: expected `float` > 0"),
        ("server:\n  line_timeout_s: .nan\n", ":2: server.line_timeout_s"),
        ("server:\n  line_timeout_s: .inf\n", ":2: server.line_timeout_s"),
        ("server:\n  max_conections: 10\n", ":2: server.max_conections: unknown key"),
        (
            "routing:\n  strategy: fastest\n",
            ":2: routing.strategy: unknown strategy 'fastest'; choose one of headroom, pace",
        ),
        ("routing:\n  low_fraction: 2\n", ":2: routing.low_fraction"),
        (
            "routing:\n  degraded_after: 4\n  unhealthy_after: 3\n",
            ":3: routing.unhealthy_after: unhealthy_after must be at least",
        ),
        (
            "store:\n  synchronous: fulll\n",
            ":2: store.synchronous: unknown synchronous 'fulll'; choose one of normal, full",
        ),
        (
            "routing:\n  families:\n    anthropic: [claude_code, claud_api]\n",
            ":3: routing.families.anthropic.1: unknown provider 'claud_api'",
        ),
        (
            "budgets:\n  providers:\n    anthropc_api: 50\n",
            ":3: budgets.providers.anthropc_api: unknown provider",
        ),
        ("budgets:\n  agents:\n    nightly: -5\n", ":3: budgets.agents.nightly: expected `float` >= 0"),
        (
            "pricing:\n  gpt-x:\n    input: -1\n    output: 1\n",
            ":3: pricing.gpt-x.input: expected `float` >= 0",
        ),
        (
            "providers:\n  claude_code:\n    priority: high\n",
            ":3: providers.claude_code.priority: expected `int`",
        ),
        ("providers:\n  openrouter:\n    poll_interval_s: 0\n", ":3: providers.openrouter.poll_interval_s"),
        ("providers:\n  openrouter:\n    base_url: ftp://x\n", ":3: providers.openrouter.base_url"),
        ("providers:\n  openai_api:\n    key_env: ['A B']\n", ":3: providers.openai_api.key_env.0"),
        ("providers:\n  my gw:\n    kind: api_key\n    priority: 1\n", ":2: providers.my gw: a provider id"),
        ("providers: [claude_code]\n", ":1: providers: must be a mapping"),
    ],
)
def test_every_error_names_the_key_and_the_line(tmp_path: Path, text: str, where: str) -> None:
    message = error_of(tmp_path, text)
    assert where in message, message


@pytest.mark.parametrize(
    ("options", "where"),
    [
        ("{recheck_s: soon}", "providers.openai-codex.options.recheck_s: expected `float | null`, got `str`"),
        ("{recheck_s: 0}", "providers.openai-codex.options.recheck_s: expected `float` > 0"),
        (
            "{app_server: sometimes}",
            "providers.openai-codex.options.app_server: unknown app_server 'sometimes'; "
            "choose one of auto, never",
        ),
        ("{app_server_timeout_s: -3}", "providers.openai-codex.options.app_server_timeout_s"),
        ("{rollout_files: 0}", "providers.openai-codex.options.rollout_files"),
        ("{keychain: never}", "providers.openai-codex.options.keychain: unknown key"),
        (
            "{driver: claude}",
            "providers.openai-codex.options.driver: unknown driver 'claude'; choose one of claude_code,",
        ),
    ],
)
def test_driver_options_are_checked_against_the_drivers_struct(
    tmp_path: Path, options: str, where: str
) -> None:
    message = error_of(tmp_path, f"providers:\n  openai-codex:\n    options: {options}\n")
    assert f":3: {where}" in message, message


def test_driver_options_that_are_right(tmp_path: Path) -> None:
    cfg = load_text(
        tmp_path,
        "providers:\n  claude_code:\n    options: {keychain: never, recheck_s: '0.5'}\n"
        "  claude_work:\n    kind: subscription\n    priority: 2\n"
        "    options: {driver: claude_code, config_dir: ~/.claude-work}\n",
    )
    assert cfg.providers["claude_work"].options["driver"] == "claude_code"


def test_non_utf8_is_named_with_its_line(tmp_path: Path) -> None:
    message = error_of(tmp_path, b"routing:\n  strategy: pace\n# caf\xe9\n")
    assert ":3: not UTF-8 (byte 0xe9 at offset" in message


def test_size_limit(tmp_path: Path) -> None:
    message = error_of(tmp_path, "# padding\n" * (config.MAX_CONFIG_BYTES // 10 + 1))
    assert "larger than 1 MiB" in message


@pytest.mark.parametrize("depth", [33, 5000])
def test_depth_limit_without_recursion(tmp_path: Path, depth: int) -> None:
    message = error_of(tmp_path, "a: " + "[" * depth + "]" * depth + "\n")
    assert f"nested more than {config.MAX_CONFIG_DEPTH} levels deep" in message
    indent = min(depth, 200)  # block style grows quadratically; 200 levels stay under the size limit
    nested = "".join(f"{'  ' * i}k{i}:\n" for i in range(indent)) + "  " * indent + "x: 1\n"
    assert "nested more than" in error_of(tmp_path, nested)


def test_aliases_are_refused(tmp_path: Path) -> None:
    message = error_of(tmp_path, "budgets:\n  agents: &a {x: 1}\n  providers: *a\n")
    assert ":3: YAML aliases (*a) are not supported" in message


def test_yaml_syntax_error_has_its_line(tmp_path: Path) -> None:
    assert re.search(r":3: not valid YAML", error_of(tmp_path, "server:\n  max_connections: 5\n  - x\n"))


def test_build_raises_validation_errors_for_callers_in_code() -> None:
    with pytest.raises(msgspec.ValidationError, match=r"server\.max_connections"):
        config.build({"server": {"max_connections": 0}})


_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.text(max_size=12),
    st.sampled_from(["pace", "headroom", "full", "claude_code", "openrouter", "api_key", "kind"]),
)
_keys = st.one_of(
    st.text(max_size=10),
    st.sampled_from(
        [
            "server",
            "routing",
            "store",
            "providers",
            "pricing",
            "budgets",
            "families",
            "options",
            "kind",
            "priority",
            "claude_code",
            "openai-codex",
            "max_connections",
            "strategy",
            "agents",
            "recheck_s",
        ]
    ),
)
_documents = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_keys, inner, max_size=5)),
    max_leaves=30,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(document=st.dictionaries(_keys, _documents, max_size=6))
def test_any_document_loads_or_is_a_config_error(tmp_path: Path, document: dict[str, Any]) -> None:
    """Whatever the file holds, the loader answers with a Config or a ConfigError, nothing else."""
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True))
    try:
        cfg = load(path)
    except ConfigError as exc:
        assert str(exc).startswith(str(path))
    else:
        assert cfg.server.max_connections >= 1
