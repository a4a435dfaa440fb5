"""What crosses to the shared-state server, and how it is keyed: pure, no I/O.

Only quota readings, cooldowns, token flows, monthly spend totals and device heartbeats leave the
machine: never a credential, token, prompt, session name, agent transcript or model output. Every
key is namespaced ``bhoga:<namespace>:`` so one server can serve several people.

Each daemon writes only what it observed itself, and every write is a merge that is commutative and
idempotent on the server (the scripts in ``scripts.py``), so the order in which machines write, a
replay after a reconnect, or two machines writing at once can never count anything twice:

* a window reading replaces an older reading of the same period; a reading of a later period (its
  reset moved forward) replaces the old period; within a period usage only grows;
* a cooldown is only ever extended;
* token flows and spend are per-device absolute totals (each machine overwrites its own field, and
  readers sum the other machines' fields): a grow-only counter per device, not an increment log.
"""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from bhoga.protocol import QuotaWindow
from bhoga.quota.values import MAX_WINDOWS as MAX_WINDOWS, window_problem

#: Two readings whose resets differ by less than this are one period (providers jitter resets).
SAME_PERIOD_MS = 60_000
#: A window reading without a reset (a rate bucket) is kept this long after its last update.
UNRESET_TTL_MS = 8 * 24 * 3600 * 1000
#: A reading is kept this long past its reset, so a slow machine still sees that it reset.
AFTER_RESET_MS = 3600 * 1000
#: Flows older than this no longer count towards the fleet's burn (that machine went quiet or away).
FLOW_FRESH_S = 300.0
#: Devices whose heartbeat is older than this are not listed as peers.
PEER_FRESH_S = 90.0
#: Spend totals are kept for the month they belong to and a little after.
SPEND_TTL_S = 40 * 24 * 3600


class Keys:
    """Key names under one namespace; ``account`` is an identity like ``chatgpt:<id>``."""

    def __init__(self, namespace: str) -> None:
        self.prefix = f"bhoga:{namespace}"

    def window(self, account: str, key: str) -> str:
        return f"{self.prefix}:{{{account}}}:w:{key}"

    def windows(self, account: str) -> str:
        return f"{self.prefix}:{{{account}}}:windows"

    def cooldown(self, account: str) -> str:
        return f"{self.prefix}:{{{account}}}:cooldown"

    def flow(self, account: str) -> str:
        return f"{self.prefix}:{{{account}}}:flow"

    def lease(self, account: str) -> str:
        return f"{self.prefix}:{{{account}}}:poll"

    def spend(self, month: str) -> str:
        return f"{self.prefix}:spend:{month}"

    @property
    def devices(self) -> str:
        return f"{self.prefix}:devices"

    @property
    def events(self) -> str:
        return f"{self.prefix}:events"


class Event(msgspec.Struct, kw_only=True):
    """Published after a write that changed shared state, so other daemons fold it in at once."""

    device: str
    account: str


class Heartbeat(msgspec.Struct, kw_only=True):
    at_ms: int
    version: str


class Flow(msgspec.Struct, kw_only=True, array_like=True):
    """One device's traffic to one account: tokens per hour now, tokens in all, and when."""

    per_h: float
    consumed: int
    at_ms: int


def ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def from_ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, UTC)


def window_fields(w: QuotaWindow, device: str, now: datetime) -> tuple[float, int, int, bytes, int]:
    """The merge script's arguments for one reading: used, reset, update time (ms; 0 when unknown),
    the reading itself as the device saw it, and when the server may forget it."""
    resets = ms(w.resets_at) if w.resets_at is not None else 0
    updated = ms(w.updated_at or now)
    body = msgspec.json.encode(msgspec.structs.replace(w, origin=device, stale=False))
    expire = resets + AFTER_RESET_MS if resets else updated + UNRESET_TTL_MS
    return w.pct_used, resets, updated, body, expire


def window_from_fields(fields: dict[bytes, bytes], now: datetime) -> tuple[QuotaWindow, str] | None:
    """A stored reading, with usage as merged on the server, and the device that last wrote it;
    ``None`` for anything that is not a plausible reading (another machine's bug, or worse, must
    pass the same bounds as a provider's answer before it reaches state)."""
    try:
        w = msgspec.json.decode(fields[b"body"], type=QuotaWindow)
        w = msgspec.structs.replace(w, pct_used=float(fields[b"used"]))
    except (KeyError, ValueError, msgspec.DecodeError, msgspec.ValidationError):
        return None
    if w.origin is None or window_problem(w, now) is not None:
        return None
    return w, w.origin


def spend_field(device: str, what: str, name: str) -> str:
    """``laptop|p|anthropic_api``: one device's total for a provider (``p``) or an agent (``a``)."""
    return f"{device}|{what}|{name}"


def sum_peer_spend(fields: dict[bytes, bytes], own_device: str) -> tuple[dict[str, float], dict[str, float]]:
    """Other devices' spend totals, per provider and per agent."""
    providers: dict[str, float] = {}
    agents: dict[str, float] = {}
    for raw, value in fields.items():
        device, _, rest = raw.decode(errors="replace").partition("|")
        what, _, name = rest.partition("|")
        if device == own_device or not name:
            continue
        try:
            amount = float(value)
        except ValueError:
            continue
        if not 0.0 <= amount < 1e9:  # another machine's bug must not block every provider here
            continue
        target = providers if what == "p" else agents if what == "a" else None
        if target is not None:
            target[name] = target.get(name, 0.0) + amount
    return providers, agents


def sum_peer_flows(fields: dict[bytes, bytes], own_device: str, now: datetime) -> tuple[float, int]:
    """Other devices' tokens per hour (only fresh ones) and their tokens in all."""
    per_h, consumed = 0.0, 0
    for raw, value in fields.items():
        if raw.decode(errors="replace") == own_device:
            continue
        try:
            flow = msgspec.msgpack.decode(value, type=Flow)
        except msgspec.DecodeError:
            continue
        if not (0.0 <= flow.per_h < 1e12 and 0 <= flow.consumed < 2**53):
            continue
        consumed += flow.consumed
        if (now - from_ms(flow.at_ms)).total_seconds() <= FLOW_FRESH_S:
            per_h += flow.per_h
    return per_h, consumed
