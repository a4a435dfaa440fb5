"""Does Hermes itself understand what apply_to_hermes writes?

Installs the pinned ``hermes-agent`` from PyPI into its own venv (cached in ``.cache/hermes-venv``,
or ``$BHOGA_HERMES_VENV``; delete it to rebuild), writes configs with ``apply_to_hermes`` for every
provider bhoga routes to, and has Hermes's own loader resolve them (``probe.py``) with the network
blocked: provider id, api_mode, base URL, the model name Hermes sends, the fallback chain and the
auxiliary tasks.

The venv install is the only step that needs the network. It skips (with the reason) only when PyPI
cannot be reached, and never when ``CI`` is set: there, an unreachable index is a failure.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bhoga.hermes import (
    DEFAULT_AUX_TASKS,
    HERMES_AUX_TASKS,
    HERMES_CONFIG_VERSION,
    HERMES_VERSION,
    apply_to_hermes,
)
from bhoga.protocol import Candidate, Ranking
from bhoga.quota.families import HERMES_API_MODES, HERMES_PROVIDER, to_hermes_model

REPO = Path(__file__).resolve().parents[2]
#: Where the venv is cached; ``BHOGA_HERMES_VENV`` moves it (a CI cache directory, say).
VENV = Path(os.environ.get("BHOGA_HERMES_VENV") or REPO / ".cache" / "hermes-venv")
PROBE = Path(__file__).with_name("probe.py")
PIN = f"hermes-agent=={HERMES_VERSION}"

# -- the Hermes venv -------------------------------------------------------------------------------


def _base_python() -> str:
    """An interpreter hermes-agent supports (it requires >=3.11,<3.14)."""
    if (3, 11) <= sys.version_info[:2] < (3, 14):
        return sys.executable
    for name in ("python3.13", "python3.12", "python3.11"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail(f"{PIN} needs Python 3.11–3.13 and none was found on PATH")


def _index_problem() -> str | None:
    """Why PyPI (or the configured index) cannot be reached, or None when it can."""
    index = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple").rstrip("/")
    try:
        with urllib.request.urlopen(f"{index}/hermes-agent/", timeout=20) as reply:
            reply.read(1)
    except OSError as exc:
        return f"{index}: {exc}"
    return None


def _python_in(venv: Path) -> Path:
    return venv / "bin" / "python"


@pytest.fixture(scope="session")
def hermes_python() -> Iterator[Path]:
    stamp = f"{PIN}\n{_base_python()}\n"
    VENV.parent.mkdir(parents=True, exist_ok=True)
    # One builder at a time (parallel test runs share the cache); the stamp is written last, so a
    # half-built venv is never mistaken for a good one.
    with open(VENV.with_name(VENV.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        marker = VENV / ".bhoga-stamp"
        if not (marker.exists() and marker.read_text() == stamp and _python_in(VENV).exists()):
            shutil.rmtree(VENV, ignore_errors=True)
            subprocess.run([_base_python(), "-m", "venv", str(VENV)], check=True)
            started = time.monotonic()
            proc = subprocess.run(
                [str(_python_in(VENV)), "-m", "pip", "install", "--disable-pip-version-check", "-q", PIN],
                capture_output=True,
                text=True,
                timeout=1800,
            )
            if proc.returncode != 0:
                shutil.rmtree(VENV, ignore_errors=True)
                problem = _index_problem()
                if problem and not os.environ.get("CI"):
                    pytest.skip(f"PyPI is unreachable, cannot install {PIN}: {problem}")
                pytest.fail(f"pip install {PIN} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
            marker.write_text(stamp)
            print(f"built {VENV} with {PIN} in {time.monotonic() - started:.0f}s", file=sys.stderr)
    yield _python_in(VENV)


def _network_jail() -> list[str]:
    """``unshare -n`` (or ``-rn`` unprivileged) when this machine allows it; the probe blocks too."""
    for cmd in (["unshare", "-n"], ["unshare", "-rn"]):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            if subprocess.run([*cmd, "true"], capture_output=True, timeout=10).returncode == 0:
                return cmd
    return []


JAIL = _network_jail()

# -- one Hermes home per case ----------------------------------------------------------------------


def _fake_jwt() -> str:
    def b64(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    claims = {
        "exp": int(time.time()) + 30 * 86400,
        "https://api.openai.com/auth": {"chatgpt_account_id": "acct"},
    }
    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}.c2ln"


#: Fake credentials, enough for Hermes to resolve every provider without the network (contract §4).
FAKE_ENV = """\
ANTHROPIC_API_KEY=sk-ant-fake-0000
OPENAI_API_KEY=sk-fake-0000
OPENROUTER_API_KEY=sk-or-fake-0000
COPILOT_GITHUB_TOKEN=gho_fake0000000000000000000000
"""


class Home:
    """A throwaway HOME + HERMES_HOME: resolution writes auth.json and reads ~/.claude, never ours."""

    def __init__(self, root: Path, python: Path) -> None:
        self.root = root
        self.python = python
        self.hermes = root / ".hermes"
        self.hermes.mkdir(parents=True)
        (self.hermes / ".env").write_text(FAKE_ENV)
        auth = {
            "version": 1,
            "providers": {"openai-codex": {"tokens": {"access_token": _fake_jwt(), "refresh_token": "x"}}},
        }
        (self.hermes / "auth.json").write_text(json.dumps(auth))
        self.config = self.hermes / "config.yaml"

    def probe(self, *args: str, stdin: Any = None) -> dict[str, Any]:
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(self.root),
            "HERMES_HOME": str(self.hermes),
            "HERMES_MANAGED_DIR": "/nonexistent",
            "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        proc = subprocess.run(
            [*JAIL, str(self.python), str(PROBE), *args],
            env=env,
            cwd=self.root,
            input=None if stdin is None else json.dumps(stdin),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, f"probe failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
        last = proc.stdout.strip().splitlines()[-1]
        result: dict[str, Any] = json.loads(last)
        return result


@pytest.fixture
def home(tmp_path: Path, hermes_python: Path) -> Home:
    return Home(tmp_path / "home", hermes_python)


class Ranked:
    """The ranking bhoga would hand out: these providers eligible, in this order."""

    def __init__(self, *pids: str) -> None:
        self.pids = pids

    def rank(self, model: str) -> Ranking:
        cands = [
            Candidate(provider_id=p, priority=i, eligible=True, reason="ok") for i, p in enumerate(self.pids)
        ]
        return Ranking(model=model, family="", strategy="test", candidates=cands, recommendation=None)

    def best_for(self, model: str) -> None:
        raise AssertionError("unused")


# -- what Hermes knows, against bhoga's copies of it -----------------------------------------------


def test_bhogas_hermes_constants_match_the_package(home: Home) -> None:
    apply_to_hermes(Ranked("claude_code"), "claude-sonnet-4.6", config_path=home.config)
    got = home.probe("resolve")
    assert got["latest_version"] == HERMES_CONFIG_VERSION
    assert got["default_aux_tasks"] == list(HERMES_AUX_TASKS)
    assert set(DEFAULT_AUX_TASKS) <= set(HERMES_AUX_TASKS)
    assert got["valid_api_modes"] == sorted(HERMES_API_MODES)


#: hermes-contract.md §2: (model, Hermes provider) → what Hermes 0.19's normaliser returns.
CONTRACT_NORMALISATION = {
    ("claude-sonnet-4.6", "openrouter"): "anthropic/claude-sonnet-4.6",
    ("claude-sonnet-4.6", "anthropic"): "claude-sonnet-4-6",
    ("claude-sonnet-4.6", "copilot"): "claude-sonnet-4.6",
    ("claude-sonnet-4.6", "openai-codex"): "claude-sonnet-4.6",
    ("claude-sonnet-4.6", "deepseek"): "deepseek-chat",
    ("anthropic/claude-sonnet-4.6", "anthropic"): "claude-sonnet-4-6",
    ("anthropic/claude-sonnet-4.6", "copilot"): "claude-sonnet-4.6",
    ("anthropic/claude-sonnet-4.6", "openai-codex"): "anthropic/claude-sonnet-4.6",
    ("claude-sonnet-4-6", "openrouter"): "anthropic/claude-sonnet-4-6",
    ("claude-sonnet-4-6", "copilot"): "claude-sonnet-4.6",
    ("gpt-5.4", "openrouter"): "openai/gpt-5.4",
    ("gpt-5.4", "anthropic"): "gpt-5-4",
    ("openai/gpt-5.4", "copilot"): "gpt-5.4",
    ("openai/gpt-5.4", "openai-codex"): "gpt-5.4",
    ("openai/o3", "copilot"): "gpt-5.3-codex",
    ("openai/o3", "openai-codex"): "o3",
    ("glm-5.1", "openrouter"): "z-ai/glm-5.1",
    ("glm-5.1", "anthropic"): "glm-5-1",
    ("deepseek-r1", "deepseek"): "deepseek-reasoner",
    ("deepseek-r1", "openrouter"): "deepseek/deepseek-r1",
    ("google/gemini-3-flash-preview", "copilot"): "gemini-3-flash-preview",
    ("google/gemini-3-flash-preview", "gemini"): "gemini-3-flash-preview",
    ("gpt-5.4", "openai-api"): "gpt-5.4",
    ("openai/gpt-5.4", "openai-api"): "openai/gpt-5.4",
}

MODELS = [
    "claude-sonnet-4.6",
    "anthropic/claude-sonnet-4.6",
    "claude-sonnet-4-6",
    "claude-opus-4-6",
    "claude-3.5-sonnet-20240620",
    "gpt-5.4",
    "openai/gpt-5.4",
    "gpt-5-mini",
    "openai/o3",
    "o4-mini",
    "glm-5.1",
    "deepseek-r1",
    "google/gemini-3-flash-preview",
    "gemini-2.5-pro",
    "llama-3",
]


def test_contract_table_and_fixed_points(home: Home) -> None:
    """The contract's table is what Hermes does, and Hermes leaves bhoga's names as written."""
    pairs = [list(k) for k in CONTRACT_NORMALISATION]
    ours = [(pid, m) for pid in HERMES_PROVIDER for m in MODELS]
    written = [[to_hermes_model(pid, m), HERMES_PROVIDER[pid]] for pid, m in ours]
    got = home.probe("normalize", stdin=pairs + written)["normalized"]
    assert dict(zip(CONTRACT_NORMALISATION, got[: len(pairs)], strict=True)) == CONTRACT_NORMALISATION
    moved = {
        f"{pid}:{m} → {w}": h
        for (pid, m), (w, _), h in zip(ours, written, got[len(pairs) :], strict=True)
        if h != w
    }
    assert moved == {}, "Hermes would rewrite these names bhoga wrote"


# -- every provider, through Hermes's own resolution -----------------------------------------------

#: (bhoga ranking, model) → (Hermes provider, api_mode, base URL, model Hermes sends).
PROVIDER_CASES = [
    (
        ("claude_code", "anthropic_api", "github-copilot", "openrouter"),
        "claude-sonnet-4.6",
        ("anthropic", "anthropic_messages", "https://api.anthropic.com", "claude-sonnet-4-6"),
    ),
    (
        ("anthropic_api", "openrouter"),
        "anthropic/claude-opus-4.6",
        ("anthropic", "anthropic_messages", "https://api.anthropic.com", "claude-opus-4-6"),
    ),
    (
        ("openai-codex", "openai_api", "github-copilot", "openrouter"),
        "gpt-5.4",
        ("openai-codex", "codex_responses", "https://chatgpt.com/backend-api/codex", "gpt-5.4"),
    ),
    (
        ("openai_api", "openai-codex"),
        "openai/gpt-5.4",
        ("openai-api", "codex_responses", "https://api.openai.com/v1", "gpt-5.4"),
    ),
    (
        ("github-copilot", "openrouter"),
        "gpt-5.4",
        ("copilot", "codex_responses", "https://api.githubcopilot.com", "gpt-5.4"),
    ),
    (
        ("github-copilot", "claude_code"),
        "claude-sonnet-4-6",
        ("copilot", "chat_completions", "https://api.githubcopilot.com", "claude-sonnet-4.6"),
    ),
    (
        ("github-copilot",),
        "gpt-5-mini",
        ("copilot", "chat_completions", "https://api.githubcopilot.com", "gpt-5-mini"),
    ),
    (
        ("openrouter", "claude_code"),
        "claude-sonnet-4-6",
        ("openrouter", "chat_completions", "https://openrouter.ai/api/v1", "anthropic/claude-sonnet-4.6"),
    ),
    (
        ("openrouter", "github-copilot"),
        "gemini-2.5-pro",
        ("openrouter", "chat_completions", "https://openrouter.ai/api/v1", "google/gemini-2.5-pro"),
    ),
]


def check(got: dict[str, Any], expected: tuple[str, str, str, str], aux_tasks: tuple[str, ...]) -> None:
    provider, api_mode, base_url, sent = expected
    assert got["canonical"] == provider and got["requested"] == provider
    assert "runtime_error" not in got, got.get("runtime_error")
    runtime = got["runtime"]
    assert (runtime["provider"], runtime["api_mode"]) == (provider, api_mode)
    assert runtime["base_url"].rstrip("/") == base_url
    # api_mode as written is one Hermes keeps (an invalid one would be silently dropped).
    assert got["parsed_api_mode"] == got["written_api_mode"] == api_mode
    # What bhoga wrote is what Hermes sends.
    assert got["sent_model"] == got["default"] == sent
    # The user's own entries (custom endpoints, ...) are theirs to get right.
    ours = [fb for fb in got["fallbacks"] if fb["provider"] in set(HERMES_PROVIDER.values())]
    for fb in ours:
        assert "error" not in fb, fb
        assert fb["canonical"] == fb["provider"], "fallback ids must be canonical"
        assert fb["sent_model"] == fb["model"], fb
    for task in aux_tasks:
        aux = got["aux"][task]
        assert (aux["canonical"], aux["model"]) == (provider, got["default"]), task
        assert aux["sent_model"] == aux["model"]
        chain = [[fb["provider"], fb["model"]] for fb in ours]
        assert aux["fallback_chain"] == chain
    assert got["deprecated"] == [] and got["structure_issues"] == []
    assert got["config_version"] == [HERMES_CONFIG_VERSION, HERMES_CONFIG_VERSION]


@pytest.mark.parametrize(
    ("pids", "model", "expected"), PROVIDER_CASES, ids=lambda v: str(v) if isinstance(v, str) else None
)
def test_each_provider(
    home: Home, pids: tuple[str, ...], model: str, expected: tuple[str, str, str, str]
) -> None:
    assert apply_to_hermes(Ranked(*pids), model, config_path=home.config, write_auxiliary=True)
    got = home.probe("resolve", *DEFAULT_AUX_TASKS)
    check(got, expected, DEFAULT_AUX_TASKS)
    expected_chain = [
        [HERMES_PROVIDER[p], to_hermes_model(p, model)]
        for p in pids[1:]
        if (HERMES_PROVIDER[p], to_hermes_model(p, model)) != (expected[0], got["default"])
    ]
    assert [[fb["provider"], fb["model"]] for fb in got["fallbacks"]] == expected_chain


# -- real files ------------------------------------------------------------------------------------

#: What the old library wrote for openai_api (bhoga-behaviour.md §5.2), plus a user's own keys.
LIBRARY_OUTPUT = """\
model:
  default: openai/gpt-5.4
  provider: openrouter
  api_mode: chat_completions
compression:
  summary_provider: openrouter
auxiliary:
  vision:
    provider: openrouter
  session_search:
    provider: openrouter
terminal:
  backend: local
_config_version: 16
"""


def test_a_config_the_library_wrote_is_repaired(home: Home) -> None:
    home.config.write_text(LIBRARY_OUTPUT)
    before = home.probe("resolve")
    # What was wrong: quota tracked for OpenAI, Hermes sent to OpenRouter, a key Hermes ignores.
    assert before["canonical"] == "openrouter"
    assert before["deprecated"] == [["compression.summary_provider", "auxiliary.compression"]]
    assert apply_to_hermes(Ranked("openai_api", "github-copilot"), "gpt-5.4", config_path=home.config)
    got = home.probe("resolve", "vision")
    assert (got["canonical"], got["runtime"]["api_mode"], got["sent_model"]) == (
        "openai-api",
        "codex_responses",
        "gpt-5.4",
    )
    assert got["deprecated"] == []  # compression.summary_provider is gone
    assert got["config_version"][0] == 16  # kept: Hermes's own migrations still run on update
    assert got["config"]["terminal"]["backend"] == "local"


def test_a_provider_disabled_in_hermes_is_routed_around(home: Home) -> None:
    home.config.write_text("providers:\n  copilot:\n    enabled: false\n")
    assert apply_to_hermes(
        Ranked("github-copilot", "claude_code"), "claude-sonnet-4.6", config_path=home.config
    )
    got = home.probe("resolve")
    check(got, ("anthropic", "anthropic_messages", "https://api.anthropic.com", "claude-sonnet-4-6"), ())
    assert got["fallbacks"] == []
    # And Hermes really refuses the disabled one, which is why it is left out.
    home.config.write_text(
        "providers:\n  copilot:\n    enabled: false\nmodel:\n  provider: copilot\n  default: gpt-5.4\n"
    )
    assert "disabled" in home.probe("resolve").get("runtime_error", "")


def test_a_config_hermes_wrote_keeps_everything_else(home: Home) -> None:
    user = {
        "model": {"default": "anthropic/claude-opus-4.6", "provider": "openrouter", "context_length": 200000},
        "terminal": {"backend": "docker", "cwd": "/work"},
        "toolsets": ["hermes-cli", "web"],
        "providers": {"local": {"base_url": "http://127.0.0.1:8080/v1", "default_model": "qwen"}},
        "fallback_providers": [{"provider": "custom:local", "model": "qwen"}],
        "auxiliary": {"title_generation": {"enabled": False}},
        "display": {"skin": "mono"},
    }
    home.probe("save", stdin=user)
    before = home.probe("resolve")
    text_before = home.config.read_text()
    assert apply_to_hermes(
        Ranked("claude_code", "github-copilot"),
        "claude-opus-4.6",
        config_path=home.config,
        write_auxiliary=["compression"],
    )
    after = home.probe("resolve", "compression")
    check(
        after,
        ("anthropic", "anthropic_messages", "https://api.anthropic.com", "claude-opus-4-6"),
        ("compression",),
    )
    # Every key bhoga does not own loads exactly as before, through Hermes's own loader.
    ours = {"model", "fallback_providers", "auxiliary", "_config_version"}
    assert {k: v for k, v in after["config"].items() if k not in ours} == {
        k: v for k, v in before["config"].items() if k not in ours
    }
    assert after["config"]["model"]["context_length"] == 200000
    assert (
        after["config"]["auxiliary"]["title_generation"] == before["config"]["auxiliary"]["title_generation"]
    )
    # The user's own fallback stays, after bhoga's.
    assert [fb["provider"] for fb in after["fallbacks"]] == ["copilot", "custom:local"]
    assert text_before.splitlines()[0] in home.config.read_text()


def test_end_to_end_with_the_daemon(home: Home, daemon: Any) -> None:
    with daemon.router() as router:
        router.set_quota("openai-codex", 10)
        router.set_quota("github-copilot", 70)
        router.set_quota("openrouter", 40)
        assert apply_to_hermes(router, "gpt-5.4", config_path=home.config, write_auxiliary=True)
    got = home.probe("resolve", *DEFAULT_AUX_TASKS)
    check(got, ("copilot", "codex_responses", "https://api.githubcopilot.com", "gpt-5.4"), DEFAULT_AUX_TASKS)
    assert [[fb["provider"], fb["model"]] for fb in got["fallbacks"]] == [
        ["openrouter", "openai/gpt-5.4"],
        ["openai-codex", "gpt-5.4"],
    ]
