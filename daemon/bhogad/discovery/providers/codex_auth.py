"""Pure readers for Codex's ``auth.json``, its JWTs and ``config.toml`` (wire spec §3.1).

The JWT payload is decoded only to learn the token's expiry and the ChatGPT account id; the
signature is not checked because the token is the user's own, read from their own disk, and we only
forward it to the service that issued it.
"""

from __future__ import annotations

import base64
import json
import tomllib
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

import msgspec

from bhoga.quota.values import mapping, text, unix_time
from bhogad.discovery.providers.base import CredentialProblem, login_document

_AUTH_CLAIMS: Final = "https://api.openai.com/auth"
DEFAULT_USAGE_BASE: Final = "https://chatgpt.com/backend-api"


class CodexAuth(msgspec.Struct, kw_only=True):
    #: ``None`` in API-key mode, where there is no ChatGPT subscription to read.
    access_token: str | None = None
    account_id: str | None = None
    expires_at: datetime | None = None
    plan: str | None = None
    #: The file holds an ``OPENAI_API_KEY`` and no ChatGPT tokens.
    api_key_mode: bool = False

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at


def jwt_claims(token: object) -> Mapping[str, Any]:
    """The payload of a JWT, or ``{}`` when it is not one."""
    if not isinstance(token, str) or token.count(".") < 1:
        return {}
    payload = token.split(".")[1]
    try:
        decoded = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        claims = json.loads(decoded)
    except (ValueError, TypeError):
        return {}
    return claims if isinstance(claims, Mapping) else {}


def _first(obj: Mapping[str, Any], *keys: str) -> object:
    for key in keys:
        if obj.get(key) is not None:
            return obj[key]
    return None


def parse_auth(raw: bytes | str, where: str) -> CodexAuth:
    """Codex's login; accepts the current snake_case file and older camelCase ones."""
    data = login_document(raw, where, login="a Codex login", command="`codex login`")
    tokens = mapping(data.get("tokens")) or {}
    access = _first(tokens, "access_token", "accessToken")
    id_token = _first(tokens, "id_token", "idToken")
    api_key = data.get("OPENAI_API_KEY")
    if not isinstance(access, str) or not access.strip():
        if isinstance(api_key, str) and api_key.strip():
            return CodexAuth(api_key_mode=True)
        raise CredentialProblem(f"{where} has no ChatGPT access token; run `codex login`", signed_out=True)
    access_claims = jwt_claims(access)
    id_claims = jwt_claims(id_token)
    account = _first(tokens, "account_id", "accountId")
    plan: object = None
    for claims in (id_claims, access_claims):
        auth = mapping(claims.get(_AUTH_CLAIMS)) or {}
        account = account or claims.get("chatgpt_account_id") or auth.get("chatgpt_account_id")
        if account is None:
            orgs = claims.get("organizations")
            if isinstance(orgs, list) and orgs and isinstance(orgs[0], Mapping):
                account = orgs[0].get("id")
        plan = plan or auth.get("chatgpt_plan_type")
    return CodexAuth(
        access_token=access.strip(),
        account_id=text(account, 100),
        expires_at=unix_time(access_claims.get("exp")),
        plan=text(plan, 40),
    )


class CodexConfig(msgspec.Struct, kw_only=True):
    chatgpt_base_url: str | None = None
    #: ``file`` (auth.json), ``keyring`` or ``auto``; with a keyring there may be no auth.json at all.
    credentials_store: str | None = None
    model: str | None = None


def parse_config(raw: bytes | str) -> CodexConfig:
    """The few ``config.toml`` keys we use; a file that does not parse is treated as empty."""
    try:
        data = tomllib.loads(raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw)
    except tomllib.TOMLDecodeError:
        return CodexConfig()
    return CodexConfig(
        chatgpt_base_url=text(data.get("chatgpt_base_url"), 500),
        credentials_store=text(data.get("cli_auth_credentials_store"), 20),
        model=text(data.get("model"), 100),
    )


def usage_url(base: str) -> str:
    """Where ``wham/usage`` lives for a ``chatgpt_base_url`` (wire spec §3.2): bases with
    ``/backend-api`` use ``/wham/usage``; the bare ChatGPT hosts get ``/backend-api`` appended;
    any other base is a Codex-style server with ``/api/codex/usage``."""
    base = base.rstrip("/")
    if base in ("https://chatgpt.com", "https://chat.openai.com"):
        base += "/backend-api"
    if "/backend-api" in base:
        return base + "/wham/usage"
    return base + "/api/codex/usage"
