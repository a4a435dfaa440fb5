"""examples/harness.py against fake model APIs on 127.0.0.1 and a real bhogad."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

HARNESS = Path(__file__).resolve().parents[2] / "examples" / "harness.py"
SECRET = "sk-test-do-not-print-0123456789"


class FakeAPI:
    """An OpenAI-style Chat Completions server that answers ``status`` and records what it got."""

    def __init__(self, status: int, headers: dict[str, str]) -> None:
        self.status = status
        self.headers = headers
        self.requests: list[dict[str, Any]] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                api.requests.append(
                    {"path": self.path, "auth": self.headers.get("authorization"), "body": body}
                )
                if api.status == 200:
                    reply: dict[str, Any] = {
                        "choices": [
                            {"message": {"role": "assistant", "content": f"pong {len(api.requests)}"}}
                        ],
                        "usage": {"prompt_tokens": 12, "completion_tokens": 3},
                    }
                else:
                    reply = {"error": {"type": "rate_limit_exceeded", "message": "slow down"}}
                data = json.dumps(reply).encode()
                self.send_response(api.status)
                for name, value in api.headers.items():
                    self.send_header(name, value)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def apis() -> Iterator[tuple[FakeAPI, FakeAPI]]:
    limited = FakeAPI(429, {"retry-after": "30"})
    fine = FakeAPI(
        200,
        {
            "x-ratelimit-limit-tokens": "30000",
            "x-ratelimit-remaining-tokens": "29985",
            "x-ratelimit-reset-tokens": "30ms",
            "x-ratelimit-limit-requests": "500",
            "x-ratelimit-remaining-requests": "499",
            "x-ratelimit-reset-requests": "120ms",
        },
    )
    yield limited, fine
    limited.close()
    fine.close()


def test_harness_routes_reports_and_fails_over(daemon: Any, apis: tuple[FakeAPI, FakeAPI]) -> None:
    openrouter, openai = apis
    with daemon.router() as router:
        # OpenRouter looks best, so it is tried first; it answers 429.
        router.set_quota("openrouter", 90)
        router.set_quota("openai_api", 60)
    env = {**daemon.env, "OPENAI_API_KEY": SECRET, "OPENROUTER_API_KEY": SECRET}
    proc = subprocess.run(
        [
            sys.executable,
            str(HARNESS),
            "gpt-5.4",
            "ping",
            "again",
            "--base-url",
            f"openrouter={openrouter.url}",
            "--base-url",
            f"openai_api={openai.url}",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["pong 1", "pong 2"]
    assert SECRET not in proc.stdout + proc.stderr
    assert "openrouter (openai/gpt-5.4): HTTP 429" in proc.stderr
    assert "skip claude_code" not in proc.stderr  # not a candidate for an OpenAI model

    # Each provider got the model id it serves, and the key.
    assert openrouter.requests[0]["body"]["model"] == "openai/gpt-5.4"
    assert openai.requests[0]["body"]["model"] == "gpt-5.4"
    assert openai.requests[0]["auth"] == f"Bearer {SECRET}"
    # The second turn carries the conversation and no longer tries the cooling-down provider.
    assert len(openrouter.requests) == 1
    assert [m["content"] for m in openai.requests[1]["body"]["messages"]] == ["ping", "pong 1", "again"]

    with daemon.router() as router:
        deadline = time.monotonic() + 10
        turns = router.turns()
        while len(turns) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
            turns = router.turns()
        assert [(t.provider, t.status_code, t.input_tokens, t.output_tokens) for t in turns] == [
            ("openrouter", 429, 0, 0),
            ("openai_api", 200, 12, 3),
            ("openai_api", 200, 12, 3),
        ]
        assert {t.agent for t in turns} == {"examples/harness.py"}
        cooling = {q.provider_id for q in router.quotas().values() if q.cooldown_until is not None}
        assert cooling == {"openrouter"}
