"""Whose quota is it: each driver names the account from what the provider or its CLI already says,
never from a secret, so providers (and machines) with one account can share one quota."""

from __future__ import annotations

import json
from pathlib import Path

from bhogad.discovery.providers.base import fingerprint
from bhogad.discovery.providers.claude_code import ClaudeCodeDriver
from bhogad.discovery.providers.codex import CodexDriver
from bhogad.discovery.providers.copilot import CopilotDriver
from bhogad.discovery.providers.openrouter import OpenRouterDriver
from tests.fakes.driving import base_env, poll
from tests.fakes.fixtures import load, raw
from tests.fakes.http_server import serving

ORG_A = "00000000-0000-4000-8000-00000000b001"
ORG_B = "00000000-0000-4000-8000-00000000b002"


def claude_login(config_dir: Path, account_file: Path, org: str | None) -> None:
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / ".credentials.json").write_bytes(raw("claude-credentials.json"))
    if org is not None:
        account_file.write_text(json.dumps({"oauthAccount": {"accountUuid": "u", "organizationUuid": org}}))


def test_claude_logins_are_told_apart_by_organisation(tmp_path: Path) -> None:
    home = tmp_path / "home"
    claude_login(home / ".claude", home / ".claude.json", ORG_A)
    # A second login in a config directory of its own keeps its .claude.json inside it.
    work = tmp_path / "claude-work"
    claude_login(work, work / ".claude.json", ORG_B)
    with serving() as s:
        s.route("/api/oauth/usage", load("claude-oauth-usage.json"))
        s.guard = lambda r: None
        default = poll(ClaudeCodeDriver(), "claude_code", base_env(home), base_url=s.url)
        second = poll(
            ClaudeCodeDriver(),
            "claude_work",
            base_env(home),
            base_url=s.url,
            kind="subscription",
            priority=2,
            options={"driver": "claude_code", "config_dir": str(work)},
        )
    assert default.error is None and default.account == f"claude:{ORG_A}"
    assert second.error is None and second.account == f"claude:{ORG_B}"


def test_claude_without_an_account_file_is_nobodys_yet(tmp_path: Path) -> None:
    home = tmp_path / "home"
    claude_login(home / ".claude", home / ".claude.json", None)
    (home / ".claude.json").write_text("{not json")
    with serving() as s:
        s.route("/api/oauth/usage", load("claude-oauth-usage.json"))
        out = poll(ClaudeCodeDriver(), "claude_code", base_env(home), base_url=s.url)
    assert out.error is None and out.windows and out.account is None


def test_codex_account_comes_from_auth_json(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".codex").mkdir(parents=True)
    (home / ".codex" / "auth.json").write_bytes(raw("codex-auth.json"))
    with serving() as s:
        s.route("/backend-api/wham/usage", load("codex-wham-usage.json"))
        out = poll(CodexDriver(), "openai-codex", base_env(home), base_url=s.url + "/backend-api")
    assert out.error is None
    assert out.account == f"chatgpt:{load('codex-auth.json')['tokens']['account_id']}"


def test_copilot_account_is_the_github_login(tmp_path: Path) -> None:
    with serving() as s:
        s.route("/copilot_internal/user", load("copilot-internal-user.json"))
        env = base_env(tmp_path, GH_TOKEN="gho_FIXTUREaccount000000000000000000")
        out = poll(CopilotDriver(), "github-copilot", env, base_url=s.url)
    assert out.error is None and out.account == "github:octo-dev"


def test_openrouter_account_is_a_hash_so_no_key_fragment_travels(tmp_path: Path) -> None:
    key = "sk-or-v1-FIXTUREkeyNotReal000000000000000000"
    label = load("openrouter-key.json")["data"]["label"]
    with serving() as s:
        s.route("/api/v1/key", load("openrouter-key.json"))
        s.route("/api/v1/credits", load("openrouter-credits.json"))
        out = poll(
            OpenRouterDriver(),
            "openrouter",
            base_env(tmp_path, OPENROUTER_API_KEY=key),
            base_url=s.url + "/api/v1",
        )
    assert out.account == f"openrouter:{fingerprint(label)}"
    assert label not in out.account and key not in out.account
