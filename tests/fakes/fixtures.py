"""The provider fixtures in tests/data/providers, and a way to move their clock.

Every fixture is written against FIXTURE_NOW. Unit tests pass that instant as the driver's clock; a
real daemon runs on the wall clock, so for it :func:`shift` moves every time in a fixture (unix
seconds and milliseconds, ISO-8601 text, JWT ``exp`` claims) by the same amount.
"""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

FIXTURES: Final = Path(__file__).resolve().parents[1] / "data" / "providers"
FIXTURE_NOW: Final = datetime(2026, 9, 24, 12, 0, tzinfo=UTC)
FIXTURE_NOW_S: Final = 1790251200

_ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)?$")
_S_RANGE = (1.6e9, 2.0e9)
_MS_RANGE = (1.6e12, 2.0e12)


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def raw(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_jwt(claims: dict[str, Any]) -> str:
    """An unsigned-looking JWT with these claims (the daemon never checks signatures)."""
    header = _b64(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
    return f"{header}.{_b64(json.dumps(claims).encode())}.RklYVFVSRS1TSUdOQVRVUkU"


def jwt_claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    result: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return result


def _shift_iso(text: str, seconds: float) -> str:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00")) + timedelta(seconds=seconds)
    out = moment.isoformat()
    return out.replace("+00:00", "Z") if text.endswith("Z") else out


def shift(value: Any, seconds: float) -> Any:
    """``value`` with every timestamp in it moved by ``seconds``."""
    if isinstance(value, dict):
        return {k: shift(v, seconds) for k, v in value.items()}
    if isinstance(value, list):
        return [shift(v, seconds) for v in value]
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        if _S_RANGE[0] <= value <= _S_RANGE[1]:
            return type(value)(value + seconds)
        if _MS_RANGE[0] <= value <= _MS_RANGE[1]:
            return type(value)(value + seconds * 1000)
        return value
    if isinstance(value, str):
        if _ISO.match(value):
            return _shift_iso(value, seconds)
        if value.startswith("eyJ") and value.count(".") == 2:
            claims = shift(jwt_claims(value), seconds)
            return make_jwt(claims)
        if value.isdigit() and (
            _S_RANGE[0] <= int(value) <= _S_RANGE[1] or _MS_RANGE[0] <= int(value) <= _MS_RANGE[1]
        ):
            return str(shift(int(value), seconds))
    return value


def to_now(value: Any, now: datetime | None = None) -> Any:
    """A fixture as if FIXTURE_NOW were ``now`` (default: the wall clock)."""
    now = now or datetime.now(UTC)
    return shift(value, round((now - FIXTURE_NOW).total_seconds()))
