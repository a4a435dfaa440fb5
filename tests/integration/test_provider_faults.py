"""Fault injection: each provider's endpoint, a real HTTP server on 127.0.0.1, misbehaves in every way
we know of while the three others answer normally.

After every fault: the daemon is alive, ``bhoga status`` (text and JSON) works and gives the failing
provider a reason, every number a client receives is finite, the other providers keep their windows
and keep being recommended, and no piece of any credential appears in status, errors or the log.
"""

from __future__ import annotations

import json
import math
import random
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from bhoga import ProviderQuota, RemoteError, Router
from tests.conftest import DaemonProcess
from tests.fakes.http_server import FakeServer, Reply, Request, serving
from tests.integration.test_discovery import (
    CLAUDE_TOKEN,
    CLAUDE_USAGE,
    CODEX_USAGE,
    COPILOT_USER,
    bearer_guard,
    now_fixture,
    wait_for,
    write_logins,
)

_rand = random.Random(10)
GH_TOKEN = "gho_" + "".join(_rand.choices(string.ascii_letters + string.digits, k=36))
OPENROUTER_KEY = "sk-or-v1-" + "".join(_rand.choices("0123456789abcdef", k=64))
#: Fields that servers fill with text a person reads (labels, plan names, model names): where an
#: echoed credential would travel furthest.
ECHO_KEYS = ("label", "plan_type", "copilot_plan", "display_name", "limit_name", "subscriptionType")


@dataclass
class Provider:
    pid: str
    server: FakeServer
    #: Each endpoint path and its good (fixture) answer.
    good: dict[str, Any]
    #: A model this provider serves when it is the only one that can.
    model: str
    token: str = ""


@dataclass
class Fleet:
    daemon: DaemonProcess
    providers: dict[str, Provider]
    router: Router


@pytest.fixture
def fleet(make_daemon: Any) -> Iterator[Fleet]:
    with serving() as claude, serving() as codex, serving() as copilot, serving() as openrouter:
        providers = {
            "claude_code": Provider(
                "claude_code", claude, {CLAUDE_USAGE: now_fixture("claude-oauth-usage.json")}, "claude-opus-4"
            ),
            "openai-codex": Provider(
                "openai-codex", codex, {CODEX_USAGE: now_fixture("codex-wham-usage.json")}, "gpt-5.5"
            ),
            "github-copilot": Provider(
                "github-copilot",
                copilot,
                {COPILOT_USER: now_fixture("copilot-internal-user.json")},
                "gemini-2.5-pro",
                GH_TOKEN,
            ),
            "openrouter": Provider(
                "openrouter",
                openrouter,
                {
                    "/key": now_fixture("openrouter-key.json"),
                    "/credits": now_fixture("openrouter-credits.json"),
                },
                "mistral-large",
                OPENROUTER_KEY,
            ),
        }
        for p in providers.values():
            for path, body in p.good.items():
                p.server.route(path, body)
        config = (
            # One provider per family: each one's model is served by it alone, or by nobody.
            "routing:\n  families:\n    anthropic: [claude_code]\n    openai: [openai-codex]\n"
            "    google: [github-copilot]\n    other: [openrouter]\n"
            "providers:\n"
            f"  claude_code:\n    base_url: {claude.url}\n    poll_timeout_s: 1\n"
            f"  openai-codex:\n    base_url: {codex.url}/backend-api\n    poll_timeout_s: 1\n"
            "    options: {app_server: never}\n"
            f"  github-copilot:\n    base_url: {copilot.url}\n    poll_timeout_s: 1\n"
            f"  openrouter:\n    base_url: {openrouter.url}\n    poll_timeout_s: 1\n"
        )
        d: DaemonProcess = make_daemon(
            config, env={"GH_TOKEN": GH_TOKEN, "OPENROUTER_API_KEY": OPENROUTER_KEY}, start=False
        )
        tokens = write_logins(d.home)
        providers["claude_code"].token = tokens["claude"]
        providers["openai-codex"].token = tokens["codex"]
        claude.guard = bearer_guard(lambda: CLAUDE_TOKEN)
        d.start()
        with d.router(timeout=30) as router:
            wait_for(router, lambda q: all(q[f"{pid}:*"].windows for pid in providers))
            yield Fleet(d, providers, router)


# -- faults ------------------------------------------------------------------------------------------


def _map(value: Any, number: Callable[[float], Any], text: Callable[[str], Any]) -> Any:
    if isinstance(value, dict):
        return {k: _map(v, number, text) for k, v in value.items()}
    if isinstance(value, list):
        return [_map(v, number, text) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        return number(value)
    return text(value)


def _cycle(*options: Any) -> Callable[[Any], Any]:
    state = {"i": 0}

    def pick(_: Any) -> Any:
        state["i"] += 1
        return options[state["i"] % len(options)]

    return pick


def _echo(value: Any, token: str) -> Any:
    if isinstance(value, dict):
        return {k: (token if k in ECHO_KEYS else _echo(v, token)) for k, v in value.items()}
    if isinstance(value, list):
        return [_echo(v, token) for v in value]
    return value


#: name → (what the endpoint answers, given the good body and the token; whether it is an error).
FAULTS: dict[str, Callable[[Any, str, str], Reply]] = {
    "garbage": lambda good, token, path: Reply(200, b"\x00\xff<html>\x1b[31mnot json"),
    "5xx": lambda good, token, path: Reply(503, b"upstream connect error"),
    "hang": lambda good, token, path: Reply(200, good, delay_s=4.0),
    "huge body": lambda good, token, path: Reply(200, b'{"pad":"' + b"x" * (3 << 20) + b'"}'),
    "redirect loop": lambda good, token, path: Reply(302, b"", {"location": path}),
    "wrong types": lambda good, token, path: Reply(
        200, _map(good, _cycle("lots", [], {"a": 1}, True), _cycle(7, -1.5, None, ["x"]))
    ),
    "non-finite": lambda good, token, path: Reply(
        200, json.dumps(_map(good, _cycle(math.nan, math.inf, -math.inf), lambda s: s)).encode()
    ),
    "out of range": lambda good, token, path: Reply(
        200,
        _map(
            good,
            _cycle(1e308, -1e308, 2**70, -(2**63), 1e-300),
            _cycle("9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z", "99999999999999", "-1"),
        ),
    ),
    # Each finite, but a ratio of two of them is not (1e308 used of a 1e-300 limit).
    "overflowing ratios": lambda good, token, path: Reply(
        200, _map(good, _cycle(1e308, 1e-300), lambda s: s)
    ),
    "overflowing ratios, swapped": lambda good, token, path: Reply(
        200, _map(good, _cycle(1e-300, 1e308), lambda s: s)
    ),
    "echoed credential, 5xx": lambda good, token, path: Reply(500, f"bad request from {token}".encode()),
    "echoed credential, 200": lambda good, token, path: Reply(200, _echo(good, token)),
    "echoed credential, cut and lower-cased": lambda good, token, path: Reply(
        200, _echo(good, token[:40].lower())
    ),
}
ERRORS = {"garbage", "5xx", "hang", "huge body", "redirect loop", "echoed credential, 5xx"}


def _leaks(text: str, token: str) -> bool:
    """Whether any twelve characters of ``token`` in a row appear in ``text``, in any case."""
    low, folded = text.lower(), token.lower()
    return any(folded[i : i + 12] in low for i in range(len(folded) - 11))


def _check_everything(fleet: Fleet, target: str, fault: str) -> ProviderQuota:
    d = fleet.daemon
    assert d.proc is not None and d.proc.poll() is None, f"bhogad died on {fault}:\n{d.log_text()[-3000:]}"
    try:
        quotas = fleet.router.quotas()  # decodes every record: a NaN on the wire would fail here
    except RemoteError as exc:
        raise AssertionError(f"quota.list failed after {fault}: {exc}\n{d.log_text()[-4000:]}") from None
    for q in quotas.values():
        for w in q.windows.values():
            assert math.isfinite(w.pct_used), (fault, q.provider_id, w)
            assert w.limit is None or math.isfinite(w.limit)
            assert w.remaining is None or math.isfinite(w.remaining)
        assert math.isfinite(q.quota_pct)
    status = d.cli("status")
    assert status.returncode == 0 and "Traceback" not in status.stderr, (fault, status.stderr)
    as_json = d.cli("status", "--json")
    assert as_json.returncode == 0, (fault, as_json.stderr)
    mine = quotas[f"{target}:*"]
    if fault in ERRORS:
        assert mine.last_poll_error, (fault, mine)
        block = (
            status.stdout.split(f"\n{target} ", 1)[-1]
            if not status.stdout.startswith(target)
            else status.stdout
        )
        assert "last poll:" in block.split("\n\n")[0], (fault, status.stdout)
    for pid, p in fleet.providers.items():
        if pid == target:
            continue
        other = quotas[f"{pid}:*"]
        assert other.windows and other.last_poll_error is None, (fault, pid, other)
        rec = fleet.router.best_for(p.model)
        assert rec is not None and rec.provider_id == pid, (fault, pid, rec)
    for p in fleet.providers.values():
        for where, text in (
            ("status", status.stdout + status.stderr),
            ("status --json", as_json.stdout),
            ("log", d.log_text()),
            ("errors", " ".join(f"{q.last_poll_error} {q.reason} {q.last_error}" for q in quotas.values())),
        ):
            assert not _leaks(text, p.token), f"{p.pid}'s credential in {where} after {fault}"
    return mine


def _refresh(fleet: Fleet, target: str, fault: str) -> None:
    try:
        fleet.router.refresh(target)
    except RemoteError as exc:
        log = fleet.daemon.log_text()[-4000:]
        raise AssertionError(f"quota.refresh failed after {fault}: {exc}\n{log}") from None


@pytest.mark.parametrize("target", ["claude_code", "openai-codex", "github-copilot", "openrouter"])
def test_every_fault_of_one_provider_harms_nothing_else(fleet: Fleet, target: str) -> None:
    p = fleet.providers[target]
    for fault, reply in FAULTS.items():
        for path, good in p.good.items():
            p.server.route(path, reply(good, p.token, path))
        _refresh(fleet, target, fault)
        _check_everything(fleet, target, fault)

    # The endpoint recovers: so does the provider, on the next refresh.
    for path, good in p.good.items():
        p.server.route(path, good)
    _refresh(fleet, target, "recovery")
    recovered = _check_everything(fleet, target, "recovery")
    assert recovered.windows and recovered.last_poll_error is None, recovered

    # Refused with the credential echoed back: said plainly, and never repeated.
    for path in p.good:
        p.server.route(path, Reply(401, {"message": f"Bad credentials: {p.token}"}))
    _refresh(fleet, target, "echoed credential, 401")
    refused = _check_everything(fleet, target, "echoed credential, 401")
    assert "refused" in (refused.last_poll_error or "") or not refused.available, refused


def test_requests_carried_the_credentials_the_checks_look_for(fleet: Fleet) -> None:
    # Guards against a vacuous suite: the tokens the leak checks search for are the ones sent.
    def auth(r: Request) -> str:
        return r.header("authorization") or ""

    for p in fleet.providers.values():
        sent = [auth(r) for path in p.good for r in p.server.to(path)]
        assert sent and all(p.token in a for a in sent), p.pid
