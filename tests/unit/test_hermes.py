"""apply_to_hermes: planning from a ranking, round-trip edits of Hermes's config.yaml, the file write.

The router here is a stand-in that hands back a ``Ranking`` (the input being tested, not a fake
transport); ``test_with_daemon`` at the bottom does the same through a real ``bhogad``.
"""

from __future__ import annotations

import argparse
import io
import logging
import stat
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from bhoga import hermes
from bhoga.cli import hermes as cli_hermes
from bhoga.hermes import (
    BACKUP_SUFFIX,
    DEFAULT_AUX_TASKS,
    HERMES_CONFIG_VERSION,
    HermesConfigError,
    HermesPlan,
    HermesRoute,
    apply_to_hermes,
    aux_tasks_for,
    copilot_token_source,
    edit_hermes_config,
    hermes_config_path,
    hermes_credential_problem,
    plan_from_ranking,
    plan_hermes,
    write_hermes_config,
    write_plan,
)
from bhoga.protocol import Candidate, ProviderStatus, Ranking, RouterRecommendation

CLAUDE = "claude-sonnet-4.6"


def ranking(model: str, eligible: list[str], rejected: dict[str, str] | None = None) -> Ranking:
    cands = [
        Candidate(provider_id=p, priority=i + 1, eligible=True, reason="ok") for i, p in enumerate(eligible)
    ]
    cands += [
        Candidate(provider_id=p, priority=9, eligible=False, reason=why)
        for p, why in (rejected or {}).items()
    ]
    return Ranking(model=model, family="x", strategy="headroom", candidates=cands, recommendation=None)


class StandIn:
    """Anything with ``rank``/``best_for``: hands out whatever ranking it currently holds."""

    def __init__(self, eligible: list[str], rejected: dict[str, str] | None = None) -> None:
        self.eligible = eligible
        self.rejected = rejected
        self.calls = 0

    def rank(self, model: str) -> Ranking:
        self.calls += 1
        return ranking(model, self.eligible, self.rejected)

    def best_for(self, model: str) -> RouterRecommendation | None:
        raise AssertionError("rank is preferred when the router has it")


def plan(
    model: str = CLAUDE,
    eligible: tuple[str, ...] = ("claude_code", "github-copilot", "openrouter"),
    aux: tuple[str, ...] = (),
) -> HermesPlan:
    p = plan_from_ranking(ranking(model, list(eligible)), model, aux)
    assert isinstance(p, HermesPlan)
    return p


def load(text: str) -> Any:
    return YAML(typ="safe").load(text)


# -- planning --------------------------------------------------------------------------------------


def test_plan_main_and_fallbacks_in_ranking_order() -> None:
    p = plan(eligible=("claude_code", "anthropic_api", "github-copilot", "openrouter"))
    assert p.main == HermesRoute(provider="anthropic", model="claude-sonnet-4-6", source="claude_code")
    assert p.api_mode == "anthropic_messages"
    assert [(r.provider, r.model) for r in p.fallbacks] == [
        ("copilot", "claude-sonnet-4.6"),
        ("openrouter", "anthropic/claude-sonnet-4.6"),
    ]
    # Hermes skips a fallback equal to the current provider/model, so it is not written.
    assert p.skipped == ("anthropic_api: same Hermes route as an earlier one (anthropic)",)


def test_plan_skips_rejected_and_unusable_candidates() -> None:
    r = ranking(
        "gpt-5.4", ["openai", "openai_api", "github-copilot"], {"openai-codex": "exhausted (weekly 0%)"}
    )
    p = plan_from_ranking(r, "gpt-5.4")
    assert isinstance(p, HermesPlan)
    assert (p.main.provider, p.main.model, p.api_mode) == ("openai-api", "gpt-5.4", "codex_responses")
    assert [(f.provider, f.model) for f in p.fallbacks] == [("copilot", "gpt-5.4")]
    assert "openai-api" in p.skipped[0] and p.skipped[0].startswith("openai:")


def test_plan_without_any_provider_says_why() -> None:
    r = ranking(CLAUDE, [], {"claude_code": "exhausted: weekly 0% left", "openrouter": "no API key"})
    reason = plan_from_ranking(r, CLAUDE)
    assert isinstance(reason, str)
    assert "claude_code: exhausted: weekly 0% left" in reason and "openrouter: no API key" in reason


def test_plan_uses_the_recommendation_when_no_receipt_came() -> None:
    rec = RouterRecommendation(
        provider_id="github-copilot",
        model_id="gpt-5.4",
        quota_pct=0.5,
        status=ProviderStatus.OK,
        hermes_model="",
        priority=3,
    )
    r = Ranking(model="gpt-5.4", family="openai", strategy="s", candidates=[], recommendation=rec)
    p = plan_from_ranking(r, "gpt-5.4")
    assert isinstance(p, HermesPlan)
    assert (p.main.provider, p.api_mode) == ("copilot", "codex_responses")


def test_plan_with_a_router_that_only_has_best_for() -> None:
    class Old:
        def best_for(self, model: str) -> RouterRecommendation | None:
            return RouterRecommendation(
                provider_id="openai-codex",
                model_id=model,
                quota_pct=-1.0,
                status=ProviderStatus.UNKNOWN,
                hermes_model="",
                priority=1,
            )

    p = plan_hermes(Old(), "openai/gpt-5.4")
    assert isinstance(p, HermesPlan)
    assert (p.main.provider, p.main.model, p.fallbacks) == ("openai-codex", "gpt-5.4", ())


def test_aux_task_selection() -> None:
    assert aux_tasks_for(True) == DEFAULT_AUX_TASKS
    assert aux_tasks_for(False) == ()
    assert aux_tasks_for(["compression", "title_generation", "compression"]) == (
        "compression",
        "title_generation",
    )
    # Removed in Hermes 0.19; the library still wrote them.
    with pytest.raises(ValueError, match="session_search"):
        aux_tasks_for(["session_search"])
    assert "session_search" not in DEFAULT_AUX_TASKS and "flush_memories" not in DEFAULT_AUX_TASKS


# -- editing: a fresh file -------------------------------------------------------------------------


def test_fresh_file() -> None:
    out = edit_hermes_config("", plan(aux=("compression",))).text
    assert out == textwrap.dedent(
        """\
        model:
          provider: anthropic
          default: claude-sonnet-4-6
          api_mode: anthropic_messages
        fallback_providers:
        - provider: copilot
          model: claude-sonnet-4.6
        - provider: openrouter
          model: anthropic/claude-sonnet-4.6
        auxiliary:
          compression:
            provider: anthropic
            model: claude-sonnet-4-6
            fallback_chain:
            - provider: copilot
              model: claude-sonnet-4.6
            - provider: openrouter
              model: anthropic/claude-sonnet-4.6
        _config_version: 33
        """
    )
    assert HERMES_CONFIG_VERSION == 33
    # Never the removed key the library wrote.
    assert "summary_provider" not in out and "compression:\n  summary" not in out


def test_only_a_comment() -> None:
    out = edit_hermes_config("# my hermes\n", plan()).text
    assert out.startswith("# my hermes\nmodel:\n")


# -- editing: round trip ---------------------------------------------------------------------------

USER_CONFIG = """\
# Hermes config — hand edited
model:   # what I run
  default: anthropic/claude-opus-4   # old choice
  provider: openrouter
  base_url: https://openrouter.ai/api/v1
  context_length: 200000
toolsets:
- hermes-cli   # the default set
terminal:
  backend: local
  cwd: "."
compression:
  enabled: true
  threshold: 0.5
fallback_providers:
- provider: ollama-cloud   # my own, keep it
  model: llama-4
- provider: copilot
  model: claude-sonnet-4.6
  key_env: MY_COPILOT_TOKEN
unknown_plugin_key:
  nested: [1, 2, 3]
display: {skin: default}
_config_version: 21
"""


def test_round_trip_keeps_comments_unknown_keys_order_and_version() -> None:
    out = edit_hermes_config(USER_CONFIG, plan()).text
    for kept in (
        "# Hermes config — hand edited",
        "model:   # what I run",
        "# old choice",
        "- hermes-cli   # the default set",
        "# my own, keep it",
        "  nested: [1, 2, 3]",
        "display: {skin: default}",
        'cwd: "."',
        "_config_version: 21",
    ):
        assert kept in out, kept
    data = load(out)
    before = load(USER_CONFIG)
    for key in ("toolsets", "terminal", "compression", "unknown_plugin_key", "display"):
        assert data[key] == before[key]
    assert list(data) == list(before)
    assert data["_config_version"] == 21
    assert data["model"] == {
        "default": "claude-sonnet-4-6",
        "provider": "anthropic",
        "context_length": 200000,
        "api_mode": "anthropic_messages",
    }


def test_fallbacks_are_bhogas_first_then_the_users_own() -> None:
    data = load(edit_hermes_config(USER_CONFIG, plan()).text)
    assert data["fallback_providers"] == [
        # The user's copilot entry for the same route is reused, extra keys and all.
        {"provider": "copilot", "model": "claude-sonnet-4.6", "key_env": "MY_COPILOT_TOKEN"},
        {"provider": "openrouter", "model": "anthropic/claude-sonnet-4.6"},
        {"provider": "ollama-cloud", "model": "llama-4"},
    ]


def test_second_apply_changes_nothing() -> None:
    p = plan(aux=DEFAULT_AUX_TASKS)
    once = edit_hermes_config(USER_CONFIG, p).text
    assert edit_hermes_config(once, p).text == once


def test_provider_switch_drops_the_old_providers_endpoint_and_keys() -> None:
    text = (
        "model:\n  provider: openrouter\n  default: x\n"
        "  base_url: https://openrouter.ai/api/v1\n  api_key: sk-or-1\n"
    )
    outcome = edit_hermes_config(text, plan())
    assert "base_url" not in outcome.text and "sk-or-1" not in outcome.text
    assert outcome.removed == ["model.base_url", "model.api_key"]


def test_same_provider_keeps_its_endpoint() -> None:
    text = "model:\n  provider: anthropic\n  default: x\n  base_url: https://proxy.example/anthropic\n"
    outcome = edit_hermes_config(text, plan())
    assert load(outcome.text)["model"]["base_url"] == "https://proxy.example/anthropic"
    assert outcome.removed == []


def test_legacy_model_shapes() -> None:
    # A bare string means {default: x}; root-level provider/base_url are folded in by Hermes.
    text = "model: gpt-4o\nprovider: openrouter\nbase_url: https://openrouter.ai/api/v1\nother: 1\n"
    outcome = edit_hermes_config(text, plan())
    data = load(outcome.text)
    assert data["model"]["provider"] == "anthropic" and "provider" not in data and "base_url" not in data
    assert data["other"] == 1
    assert outcome.removed == ["provider", "base_url"]
    aliased = edit_hermes_config("model:\n  model: gpt-4o\n  name: gpt-4o\n", plan())
    assert set(load(aliased.text)["model"]) == {"provider", "default", "api_mode"}


def test_null_sections_are_filled_in() -> None:
    text = "model:\nauxiliary:\nfallback_providers:\ncompression:\n"
    data = load(edit_hermes_config(text, plan(aux=("vision",))).text)
    assert data["model"]["provider"] == "anthropic"
    assert data["auxiliary"]["vision"]["model"] == "claude-sonnet-4-6"
    assert len(data["fallback_providers"]) == 2


def test_fallback_list_emptied_when_nothing_is_left() -> None:
    text = "fallback_providers:\n- provider: copilot\n  model: old\n"
    outcome = edit_hermes_config(text, plan(eligible=("claude_code",)))
    assert "fallback_providers" not in load(outcome.text)
    assert outcome.removed == ["fallback_providers"]


def test_single_dict_fallback_becomes_a_list() -> None:
    text = "fallback_providers: {provider: nous, model: hermes-4}\n"
    data = load(edit_hermes_config(text, plan()).text)
    assert data["fallback_providers"][-1] == {"provider": "nous", "model": "hermes-4"}


def test_aux_tasks_pinned_with_their_own_chain() -> None:
    text = textwrap.dedent(
        """\
        auxiliary:
          vision:
            provider: openrouter
            model: google/gemini-3-flash-preview
            base_url: https://openrouter.ai/api/v1
            timeout: 30
          title_generation:
            enabled: false
        """
    )
    outcome = edit_hermes_config(text, plan(aux=("vision", "compression")))
    aux = load(outcome.text)["auxiliary"]
    assert aux["vision"] == {
        "provider": "anthropic",
        "model": "claude-sonnet-4-6",
        "timeout": 30,
        "fallback_chain": [
            {"provider": "copilot", "model": "claude-sonnet-4.6"},
            {"provider": "openrouter", "model": "anthropic/claude-sonnet-4.6"},
        ],
    }
    assert aux["title_generation"] == {"enabled": False}
    assert outcome.removed == ["auxiliary.vision.base_url"]


@pytest.mark.parametrize(
    ("version", "expect_aux"),
    [
        # Below 17 Hermes's own migration would move them: do the same so nothing changes.
        ("_config_version: 16\n", {"provider": "openrouter", "model": "google/gemini-flash"}),
        ("", {"provider": "openrouter", "model": "google/gemini-flash"}),
        # From 17 on nothing reads them: drop them.
        ("_config_version: 17\n", None),
        ("_config_version: 33\n", None),
    ],
)
def test_dead_summary_keys(version: str, expect_aux: dict[str, str] | None) -> None:
    text = (
        "compression:\n  enabled: true\n  summary_provider: openrouter\n"
        f"  summary_model: google/gemini-flash\n{version}"
    )
    outcome = edit_hermes_config(text, plan())
    data = load(outcome.text)
    assert data["compression"] == {"enabled": True}
    assert data.get("auxiliary", {}).get("compression") == expect_aux
    assert sorted(outcome.removed) == ["compression.summary_model", "compression.summary_provider"]


def test_dead_summary_keys_when_bhoga_pins_compression() -> None:
    text = "compression:\n  summary_provider: openrouter\n_config_version: 16\n"
    data = load(edit_hermes_config(text, plan(aux=("compression",))).text)
    assert data["auxiliary"]["compression"]["provider"] == "anthropic"
    assert "summary_provider" not in data["compression"]


def test_providers_disabled_in_hermes_are_left_out() -> None:
    """``providers.<id>.enabled: false`` makes Hermes refuse that provider, so bhoga routes around it."""
    text = "providers:\n  copilot:\n    enabled: false\n"
    outcome = edit_hermes_config(text, plan(eligible=("github-copilot", "claude_code", "openrouter")))
    data = load(outcome.text)
    assert (data["model"]["provider"], data["model"]["api_mode"]) == ("anthropic", "anthropic_messages")
    assert [f["provider"] for f in data["fallback_providers"]] == ["openrouter"]
    assert outcome.plan.skipped == (
        "github-copilot: disabled in this Hermes config (providers.<id>.enabled: false)",
    )
    assert data["providers"] == {"copilot": {"enabled": False}}
    with pytest.raises(HermesConfigError, match="disabled"):
        edit_hermes_config(text, plan(eligible=("github-copilot",)))


def test_missing_config_version_is_written_last() -> None:
    data = load(edit_hermes_config("model:\n  default: x\nterminal: {}\n", plan()).text)
    assert list(data)[-1] == "_config_version" and data["_config_version"] == HERMES_CONFIG_VERSION


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("model: [unclosed\n", "not valid YAML at line"),
        ("model:\n\tprovider: x\n", "not valid YAML"),
        ("- a\n- b\n", "top level is a CommentedSeq"),
        ("just a string\n", "top level is a str"),
        ("model: [1, 2]\n", "`model` is a CommentedSeq"),
        ("fallback_providers: 7\n", "`fallback_providers` is a int"),
        ("a: 1\na: 2\n", "not valid YAML"),
    ],
)
def test_configs_that_cannot_be_edited(text: str, message: str) -> None:
    with pytest.raises(HermesConfigError, match=message.replace("[", r"\[")):
        edit_hermes_config(text, plan())


def test_wrong_auxiliary_type_only_matters_when_writing_aux() -> None:
    edit_hermes_config("auxiliary: 5\n", plan())
    with pytest.raises(HermesConfigError, match="auxiliary"):
        edit_hermes_config("auxiliary: 5\n", plan(aux=("vision",)))


def test_indentation_style_is_kept() -> None:
    text = "model:\n    default: x\n    provider: anthropic\ntoolsets:\n  - a\n  - b\n"
    out = edit_hermes_config(text, plan()).text
    assert "    default: claude-sonnet-4-6\n" in out
    assert "toolsets:\n  - a\n  - b\n" in out
    assert "fallback_providers:\n  - provider: copilot\n    model: claude-sonnet-4.6\n" in out


def test_crlf_line_endings_are_kept() -> None:
    out = edit_hermes_config("# c\r\nterminal:\r\n  backend: local\r\n", plan()).text
    assert "\r\n" in out and "\n" not in out.replace("\r\n", "")


@pytest.mark.parametrize("name", ["yes", "on", "1.5", "2024-01-01", "null", "~", "0x1f", "1:30"])
def test_names_yaml_1_1_would_misread_are_quoted(name: str) -> None:
    """Hermes parses with PyYAML (YAML 1.1), where these plain scalars are not strings."""
    route = HermesRoute(provider="openrouter", model=name, source="openrouter")
    p = HermesPlan(requested=name, main=route, api_mode="chat_completions")
    out = edit_hermes_config("", p).text
    assert f'default: "{name}"' in out


# -- the file --------------------------------------------------------------------------------------


def test_write_is_atomic_with_a_backup(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(USER_CONFIG)
    path.chmod(0o640)
    result = write_plan(path, plan())
    assert result.ok and result.changed
    assert result.backup == str(path) + BACKUP_SUFFIX
    assert Path(result.backup).read_text() == USER_CONFIG
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert stat.S_IMODE(Path(result.backup).stat().st_mode) == 0o640
    assert "claude-sonnet-4-6" in path.read_text()
    # No temp files left behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml", "config.yaml" + BACKUP_SUFFIX]


def test_unchanged_file_is_not_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    write_plan(path, plan())
    before = path.stat().st_mtime_ns
    result = write_plan(path, plan())
    assert result.ok and not result.changed and result.backup is None
    assert path.stat().st_mtime_ns == before
    assert "already up to date" in result.reason


def test_new_file_is_private_and_its_directory_created(tmp_path: Path) -> None:
    path = tmp_path / "hermes-home" / "config.yaml"
    result = write_plan(path, plan())
    assert result.ok and result.backup is None
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_invalid_yaml_is_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("model: [oops\n")
    before = path.stat().st_mtime_ns
    result = write_plan(path, plan())
    assert not result.ok and not result.changed
    assert "not valid YAML" in result.reason and "left untouched" in result.reason
    assert path.read_text() == "model: [oops\n" and path.stat().st_mtime_ns == before
    assert list(tmp_path.iterdir()) == [path]


def test_not_utf8_is_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(b"model: \xff\n")
    result = write_plan(path, plan())
    assert not result.ok and "UTF-8" in result.reason


def test_dry_run_writes_nothing_and_shows_a_diff(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(USER_CONFIG)
    result = write_plan(path, plan(), dry_run=True)
    assert result.ok and result.changed and result.dry_run
    assert path.read_text() == USER_CONFIG
    assert result.diff.startswith(f"--- {path} (now)\n+++ {path} (bhoga)\n")
    assert "-  provider: openrouter\n" in result.diff and "+  provider: anthropic\n" in result.diff


def test_symlinked_config_stays_a_symlink(tmp_path: Path) -> None:
    real = tmp_path / "dotfiles" / "hermes.yaml"
    real.parent.mkdir()
    real.write_text("terminal: {}\n")
    link = tmp_path / "config.yaml"
    link.symlink_to(real)
    assert write_plan(link, plan()).ok
    assert link.is_symlink() and "anthropic" in real.read_text()


def test_a_concurrent_write_is_not_overwritten(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Hermes (or an editor) saving while we edit: start again from their version."""
    path = tmp_path / "config.yaml"
    path.write_text("terminal: {}\n")
    real_edit = hermes.edit_hermes_config
    calls = 0

    def edit_racing(text: str, p: HermesPlan) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            path.write_text("terminal: {}\nadded_by_hermes: true\n")
        return real_edit(text, p)

    monkeypatch.setattr(hermes, "edit_hermes_config", edit_racing)
    result = write_plan(path, plan())
    assert result.ok and calls == 2
    assert load(path.read_text())["added_by_hermes"] is True


def test_apply_to_hermes_returns_a_bool_and_logs_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "config.yaml"
    assert apply_to_hermes(StandIn(["claude_code"]), CLAUDE, config_path=path) is True
    path.write_text("{bad")
    with caplog.at_level(logging.WARNING, logger="bhoga.hermes"):
        assert apply_to_hermes(StandIn(["claude_code"]), CLAUDE, config_path=path) is False
    assert "not valid YAML" in caplog.text
    assert (
        apply_to_hermes(StandIn([], {"claude_code": "exhausted"}), CLAUDE, config_path=tmp_path / "n.yaml")
        is False
    )
    assert not (tmp_path / "n.yaml").exists()


def test_write_hermes_config_reports_no_provider(tmp_path: Path) -> None:
    result = write_hermes_config(
        StandIn([], {"claude_code": "cooling down"}), CLAUDE, config_path=tmp_path / "c.yaml"
    )
    assert not result.ok and result.plan is None and "cooling down" in result.reason


def test_default_path_follows_hermes_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HERMES_HOME", str(tmp_path / "hh"))
    assert hermes_config_path() == tmp_path / "hh" / "config.yaml"
    monkeypatch.delenv("HERMES_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert hermes_config_path() == tmp_path / ".hermes" / "config.yaml"
    assert hermes_config_path("~/x.yaml") == tmp_path / "x.yaml"


# -- credentials Hermes will look for ----------------------------------------------------------------


def test_copilot_token_order_skips_classic_pats(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    env = {"GH_TOKEN": "ghp_classic", "GITHUB_TOKEN": "gho_oauth"}
    source, problems = copilot_token_source(env)
    assert source == "GITHUB_TOKEN"
    assert problems == ["GH_TOKEN holds a classic PAT (ghp_), which Hermes skips for Copilot"]
    assert copilot_token_source({"COPILOT_GITHUB_TOKEN": "github_pat_x", "GH_TOKEN": "gho_y"})[0] == (
        "COPILOT_GITHUB_TOKEN"
    )


def test_credential_problems_name_variables_never_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    home = tmp_path / ".hermes"
    home.mkdir()
    env = {"HOME": str(tmp_path), "GH_TOKEN": "ghp_secretvalue"}
    assert "OPENROUTER_API_KEY" in (hermes_credential_problem("openrouter", env, home) or "")
    problem = hermes_credential_problem("copilot", env, home) or ""
    assert "classic PAT" in problem and "secretvalue" not in problem
    assert "hermes auth" in (hermes_credential_problem("openai-codex", env, home) or "")
    assert hermes_credential_problem("anthropic", env, home)
    # Hermes loads $HERMES_HOME/.env too.
    (home / ".env").write_text("export OPENROUTER_API_KEY='sk-or'\nANTHROPIC_API_KEY=sk-ant\n")
    (home / "auth.json").write_text('{"version": 1, "providers": {"openai-codex": {"tokens": {}}}}')
    for pid in ("openrouter", "anthropic", "openai-codex"):
        assert hermes_credential_problem(pid, env, home) is None
    assert hermes_credential_problem("openai-api", {"OPENAI_API_KEY": "k"}, home) is None


# -- import weight ---------------------------------------------------------------------------------


def test_import_bhoga_stays_light() -> None:
    code = (
        "import sys, bhoga, bhoga.hermes, bhoga.cli.hermes, bhoga.quota.families; bhoga.apply_to_hermes;"
        "heavy = ('ruamel', 'yaml', 'anyio', 'httpx', 'structlog');"
        "heavy = [m for m in sys.modules if m.split('.')[0] in heavy];"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# -- CLI -------------------------------------------------------------------------------------------


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli_hermes.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["hermes", *argv])


def run(router: Any, *argv: str) -> tuple[int, str]:
    args = parse(*argv)
    out = io.StringIO()
    return args.func(args, router, out), out.getvalue()


def test_cli_apply(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    code, out = run(StandIn(["claude_code", "openrouter"]), "apply", CLAUDE, "--config", str(path), "--aux")
    assert code == 0
    assert "anthropic:claude-sonnet-4-6 → openrouter:anthropic/claude-sonnet-4.6" in out
    assert set(load(path.read_text())["auxiliary"]) == set(DEFAULT_AUX_TASKS)


def test_cli_dry_run_prints_a_diff(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(USER_CONFIG)
    code, out = run(StandIn(["github-copilot"]), "apply", "gpt-5.4", "--config", str(path), "--dry-run")
    assert code == 0 and path.read_text() == USER_CONFIG
    assert "+  provider: copilot\n" in out and "+  api_mode: codex_responses\n" in out
    assert "would write copilot:gpt-5.4" in out


def test_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("{nope")
    assert run(StandIn(["claude_code"]), "apply", CLAUDE, "--config", str(bad))[0] == cli_hermes.EXIT_CONFIG
    assert "not valid YAML" in capsys.readouterr().err
    code, _ = run(
        StandIn([], {"claude_code": "exhausted"}), "apply", CLAUDE, "--config", str(tmp_path / "c.yaml")
    )
    assert code == cli_hermes.EXIT_NO_PROVIDER


def test_cli_json(tmp_path: Path) -> None:
    import json

    code, out = run(
        StandIn(["openai-codex"]), "apply", "gpt-5.4", "--config", str(tmp_path / "c.yaml"), "--json"
    )
    data = json.loads(out)
    assert (
        code == 0
        and data["ok"]
        and data["plan"]["main"]
        == {
            "provider": "openai-codex",
            "model": "gpt-5.4",
            "source": "openai-codex",
        }
    )


def test_cli_rejects_unknown_aux_task(tmp_path: Path) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="flush_memories"):
        run(
            StandIn(["claude_code"]),
            "apply",
            CLAUDE,
            "--aux-task",
            "flush_memories",
            "--config",
            str(tmp_path / "c"),
        )


# -- follow ----------------------------------------------------------------------------------------


def test_rewrite_gate() -> None:
    gate = cli_hermes.RewriteGate(min_interval=60)
    assert gate.due(("a",), now=0)
    gate.done(("a",), now=0, wrote=True)
    assert not gate.due(("a",), now=1000)  # nothing changed
    assert not gate.due(("b",), now=30)  # changed, but too soon
    assert gate.wait_left(30) == 30
    assert gate.due(("b",), now=60)


class Ticks(threading.Event):
    """A stop event whose waits advance a fake clock; it stops the loop after ``n`` waits."""

    def __init__(self, n: int, on_tick: Any = None) -> None:
        super().__init__()
        self.now = 0.0
        self.left = n
        self.on_tick = on_tick

    def wait(self, timeout: float | None = None) -> bool:
        self.now += timeout or 0
        self.left -= 1
        if self.on_tick:
            self.on_tick(self.now)
        if self.left <= 0:
            self.set()
        return self.is_set()


def test_follow_rewrites_when_the_best_provider_changes_at_most_once_a_minute(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    router = StandIn(["claude_code", "github-copilot"])
    seen: list[str] = []

    def tick(now: float) -> None:
        seen.append(load(path.read_text())["model"]["provider"])
        # Copilot takes over after 10 s and flaps back at 20 s, then stays ahead from 30 s.
        if now == 10:
            router.eligible = ["github-copilot", "claude_code"]
        elif now == 20:
            router.eligible = ["claude_code", "github-copilot"]
        elif now == 30:
            router.eligible = ["github-copilot", "claude_code"]

    stop = Ticks(12, tick)
    out = io.StringIO()
    code = cli_hermes.follow(
        router, CLAUDE, path, interval=10, min_interval=60, out=out, stop=stop, clock=lambda: stop.now
    )
    assert code == 0
    # Written at 0 s; the change at 10 s and the flap are held back until 60 s have passed.
    assert seen[:5] == ["anthropic"] * 5
    assert "copilot" in seen and seen.index("copilot") >= 5
    assert out.getvalue().count("wrote") == 2
    assert out.getvalue().count("held back by --min-interval") == 1


def test_follow_waits_for_the_daemon(tmp_path: Path) -> None:
    from bhoga.errors import DaemonNotRunning

    class Flaky(StandIn):
        def rank(self, model: str) -> Ranking:
            self.calls += 1
            if self.calls <= 2:
                raise DaemonNotRunning("/tmp/x.sock")
            return super().rank(model)

    path = tmp_path / "config.yaml"
    stop = Ticks(4)
    out = io.StringIO()
    cli_hermes.follow(
        Flaky(["openrouter"]), CLAUDE, path, interval=1, out=out, stop=stop, clock=lambda: stop.now
    )
    assert out.getvalue().count("waiting for bhogad") == 1  # said once, not on every retry
    assert load(path.read_text())["model"]["provider"] == "openrouter"


# -- with the real daemon --------------------------------------------------------------------------


def test_with_daemon_quotas_decide_what_hermes_runs(daemon: Any, tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(USER_CONFIG)
    with daemon.router() as router:
        router.set_quota("claude_code", 80, weekly_pct=70)
        router.set_quota("github-copilot", 50)
        assert apply_to_hermes(router, CLAUDE, config_path=path, write_auxiliary=["compression"])
        data = load(path.read_text())
        assert data["model"]["provider"] == "anthropic" and data["model"]["default"] == "claude-sonnet-4-6"
        assert data["fallback_providers"][0]["provider"] == "copilot"

        # The subscription runs out: Hermes is pointed at Copilot, Anthropic is no longer a fallback.
        router.set_quota("claude_code", 0)
        assert apply_to_hermes(router, CLAUDE, config_path=path, write_auxiliary=["compression"])
        data = load(path.read_text())
        assert (data["model"]["provider"], data["model"]["default"]) == ("copilot", "claude-sonnet-4.6")
        assert data["model"]["api_mode"] == "chat_completions"
        assert [f["provider"] for f in data["fallback_providers"]] == ["ollama-cloud"]
        assert data["auxiliary"]["compression"]["provider"] == "copilot"
        assert data["_config_version"] == 21 and "# Hermes config — hand edited" in path.read_text()


def test_with_daemon_cli(daemon: Any, tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    with daemon.router() as router:
        router.set_quota("openai-codex", 60)
    proc = daemon.cli("hermes", "apply", "gpt-5.4", "--config", str(path))
    assert proc.returncode == 0, proc.stderr
    assert load(path.read_text())["model"] == {
        "provider": "openai-codex",
        "default": "gpt-5.4",
        "api_mode": "codex_responses",
    }
