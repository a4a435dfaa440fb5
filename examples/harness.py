"""A small harness: ask bhoga where to send each turn, call that provider over HTTP, report the turn.

    python examples/harness.py claude-sonnet-4.6 "Say hello" "Now in French"

Each prompt is one turn of one conversation. For every turn the harness takes bhoga's ranking for
the model, calls the best provider it has an API key for, and reports what the call spent (tokens,
status, rate-limit headers) with ``record_turn``, so every other harness on this machine routes on
it too. A 429 or 5xx is reported as well; the harness then moves to the next provider in the
ranking, and the daemon keeps the failed one cooling down.

Subscription providers (claude_code, openai-codex, github-copilot) are driven by their own CLIs or
by agents such as Hermes, not by raw HTTP, so this harness skips them; ``--base-url`` points a
provider at another server (a proxy, or a test server).

Needs ``httpx`` (``pip install httpx``) and a running ``bhogad``. API keys come from the usual
environment variables and are never printed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx

import bhoga
from bhoga.protocol import Candidate


@dataclass(frozen=True)
class Endpoint:
    #: "openai" (Chat Completions) or "anthropic" (Messages).
    style: str
    base_url: str
    key_env: str


ENDPOINTS = {
    "anthropic_api": Endpoint("anthropic", "https://api.anthropic.com", "ANTHROPIC_API_KEY"),
    "openai_api": Endpoint("openai", "https://api.openai.com/v1", "OPENAI_API_KEY"),
    "openrouter": Endpoint("openai", "https://openrouter.ai/api/v1", "OPENROUTER_API_KEY"),
}

#: Worth trying the next provider: rate limits, overload, and server errors.
RETRYABLE = {408, 429, 500, 502, 503, 504, 529}


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: dict[str, Any]
    latency_ms: float

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def call(
    client: httpx.Client, endpoint: Endpoint, key: str, model: str, messages: list[dict[str, str]]
) -> Reply:
    if endpoint.style == "anthropic":
        url = f"{endpoint.base_url}/v1/messages"
        headers = {"x-api-key": key, "anthropic-version": "2023-06-01"}
        payload: dict[str, Any] = {"model": model, "max_tokens": 512, "messages": messages}
    else:
        url = f"{endpoint.base_url}/chat/completions"
        headers = {"authorization": f"Bearer {key}"}
        payload = {"model": model, "messages": messages}
    started = time.perf_counter()
    response = client.post(url, json=payload, headers=headers)
    latency = (time.perf_counter() - started) * 1000
    try:
        body = response.json()
    except ValueError:
        body = {}
    return Reply(
        response.status_code, dict(response.headers), body if isinstance(body, dict) else {}, latency
    )


def usage(style: str, body: dict[str, Any]) -> tuple[int, int, int]:
    """(input, output, cache-read) tokens, whichever API shape the body has."""
    u = body.get("usage") or {}
    if style == "anthropic":
        return (
            int(u.get("input_tokens", 0)),
            int(u.get("output_tokens", 0)),
            int(u.get("cache_read_input_tokens", 0)),
        )
    cached = (u.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
    return int(u.get("prompt_tokens", 0)), int(u.get("completion_tokens", 0)), int(cached or 0)


def text_of(style: str, body: dict[str, Any]) -> str:
    if style == "anthropic":
        return "".join(part.get("text", "") for part in body.get("content", []) if isinstance(part, dict))
    choices = body.get("choices") or [{}]
    return str((choices[0].get("message") or {}).get("content", ""))


def usable(cand: Candidate, endpoints: dict[str, Endpoint]) -> str | None:
    """Why this harness cannot call ``cand`` (None when it can)."""
    if not cand.eligible:
        return cand.reason
    endpoint = endpoints.get(cand.provider_id)
    if endpoint is None:
        return "not an HTTP API this harness speaks"
    if not os.environ.get(endpoint.key_env):
        return f"${endpoint.key_env} is not set"
    return None


def turn(
    router: bhoga.Router,
    client: httpx.Client,
    endpoints: dict[str, Endpoint],
    model: str,
    messages: list[dict[str, str]],
    session: str,
) -> str | None:
    """One turn: try the ranking in order until a provider answers; report every attempt."""
    for cand in router.rank(model).candidates:
        why_not = usable(cand, endpoints)
        if why_not:
            print(f"  skip {cand.provider_id}: {why_not}", file=sys.stderr)
            continue
        endpoint = endpoints[cand.provider_id]
        api_model = cand.hermes_model or bhoga.to_hermes_model(cand.provider_id, model)
        try:
            reply = call(client, endpoint, os.environ[endpoint.key_env], api_model, messages)
        except httpx.HTTPError as exc:
            # Nothing came back, so there is nothing to calibrate from; say so and move on.
            print(f"  {cand.provider_id}: {type(exc).__name__}", file=sys.stderr)
            continue
        inp, out, cached = usage(endpoint.style, reply.body)
        router.record_turn(
            cand.provider_id,
            model,
            inp,
            out,
            reply.headers,
            reply.status,
            cache_read_tokens=cached,
            session=session,
            agent="examples/harness.py",
            latency_ms=reply.latency_ms,
            error_body=None if reply.ok else reply.body,
        )
        print(
            f"  {cand.provider_id} ({api_model}): HTTP {reply.status}, {inp} in / {out} out", file=sys.stderr
        )
        if reply.ok:
            return text_of(endpoint.style, reply.body)
        if reply.status not in RETRYABLE:
            return None
    return None


def _base_url(text: str) -> tuple[str, str]:
    pid, sep, url = text.partition("=")
    if not sep or pid not in ENDPOINTS:
        raise argparse.ArgumentTypeError(f"expected PROVIDER=URL with PROVIDER one of {sorted(ENDPOINTS)}")
    return pid, url.rstrip("/")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("prompts", nargs="+", metavar="PROMPT")
    parser.add_argument("--socket", help="bhogad's socket (default: $BHOGA_SOCKET or the usual place)")
    parser.add_argument("--base-url", type=_base_url, action="append", default=[], metavar="PROVIDER=URL")
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args(argv)

    endpoints = dict(ENDPOINTS)
    for pid, url in args.base_url:
        endpoints[pid] = Endpoint(endpoints[pid].style, url, endpoints[pid].key_env)
    session = uuid.uuid4().hex[:12]
    messages: list[dict[str, str]] = []
    with bhoga.Router(socket_path=args.socket) as router, httpx.Client(timeout=args.timeout) as client:
        for prompt in args.prompts:
            messages.append({"role": "user", "content": prompt})
            answer = turn(router, client, endpoints, args.model, messages, session)
            if answer is None:
                print(f"no provider answered for {args.model}", file=sys.stderr)
                return 1
            messages.append({"role": "assistant", "content": answer})
            print(answer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
