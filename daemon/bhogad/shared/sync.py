"""Keep this daemon's quota state in step with other machines' through a Valkey or Redis server.

Local state stays authoritative for serving: ``best_for`` never waits on the network. This link
follows the keeper as an observer and pushes what this machine observed (in the background, a few
milliseconds after it happened), and folds in what other machines observed when they announce it on
the events channel, and on a timer of ``shared.sync_interval_s`` in case an announcement was missed.
When the server cannot be reached, the daemon keeps routing on what it knows, ``daemon.status`` and
``bhoga status`` say since when, and on reconnect everything this machine knows is pushed again:
every write is an idempotent merge (``records.py``), so nothing is counted twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import msgspec
import structlog

from bhoga.protocol import QuotaWindow, SharedStatus
from bhogad.config import SharedConfig
from bhogad.domain import budgets, pace
from bhogad.domain.state import account_of
from bhogad.shared import records, scripts
from bhogad.shared.records import Keys

if TYPE_CHECKING:
    from bhogad.domain.keeper import QuotaKeeper

log = structlog.get_logger("bhogad.shared")

#: Reconnection attempts back off from one second to this.
_MAX_BACKOFF_S = 30.0
#: After a change, wait this long for more before pushing, so a burst of turns is one round trip.
_DEBOUNCE_S = 0.02


class SharedUnavailable(Exception):
    """The shared-state server cannot be used (the message says why, without any secret)."""


def device_name(cfg: SharedConfig) -> str:
    if cfg.device:
        return cfg.device
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname())[:64].strip("-")
    return name or "bhogad"


def public_url(url: str) -> str:
    """The server's address for status and logs: no user name, no password."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def password(cfg: SharedConfig, environ: Mapping[str, str]) -> str | None:
    if cfg.password_env:
        value = environ.get(cfg.password_env)
        if not value:
            raise SharedUnavailable(f"shared.password_env names ${cfg.password_env}, which is not set")
        return value
    if cfg.password_file:
        try:
            return Path(cfg.password_file).expanduser().read_text().strip()
        except OSError as exc:
            raise SharedUnavailable(f"cannot read shared.password_file: {exc.strerror}") from exc
    return None


class SharedSync:
    """One daemon's link to the shared-state server; an observer of the keeper."""

    def __init__(
        self,
        keeper: QuotaKeeper,
        cfg: SharedConfig,
        *,
        version: str,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        assert cfg.url is not None
        self.keeper = keeper
        self.cfg = cfg
        self.keys = Keys(cfg.namespace)
        self.device = device_name(cfg)
        self.version = version
        self.server = public_url(cfg.url)
        self._environ = environ if environ is not None else os.environ
        self._client: Any = None
        self.connected = False
        self.unreachable_since: datetime | None = keeper.clock()
        self.last_error: str | None = "not connected yet"
        self.server_version: str | None = None
        self.clock_skew_s: float | None = None
        self.peers: dict[str, datetime] = {}
        #: Providers with readings to push.
        self._dirty: set[str] = set(keeper.providers)
        self._spend_dirty = True
        self._wake = asyncio.Event()
        self._pull_now: set[str] = set()
        self._pull_wake = asyncio.Event()
        #: What was last pushed (or received) per window and cooldown, so a push sends only news.
        self._pushed: dict[tuple[str, str], tuple[datetime | None, float]] = {}
        self._pushed_cooldown: dict[str, datetime] = {}
        self._backoff = 1.0

    # -- the keeper's observer interface (called on the event loop; never blocks) ----------------

    def quota_changed(self, pid: str, cause: str) -> None:
        if cause != "shared":
            self._dirty.add(pid)
            self._wake.set()

    def turn_recorded(self, pid: str) -> None:
        self._spend_dirty = True
        self._wake.set()

    # -- status ----------------------------------------------------------------------------------

    def status(self) -> SharedStatus:
        now = self.keeper.clock()
        return SharedStatus(
            server=self.server,
            device=self.device,
            connected=self.connected,
            unreachable_since=None if self.connected else self.unreachable_since,
            last_error=self.last_error,
            server_version=self.server_version,
            peers={
                d: at for d, at in self.peers.items() if (now - at).total_seconds() <= records.PEER_FRESH_S
            },
            clock_skew_s=self.clock_skew_s,
        )

    # -- the poll lease --------------------------------------------------------------------------

    async def lease(self, pid: str) -> float | None:
        """``None``: poll now (this machine holds the account's lease, or cannot ask); else seconds
        until the other machine's lease runs out."""
        if not self.connected:
            return None
        pcfg = self.keeper.cfg.providers.get(pid)
        p = self.keeper.providers.get(pid)
        account = account_of(p, pcfg) if p is not None else None
        if account is None or pcfg is None:
            return None  # the first poll tells whose quota it is
        # Longer than the interval, so a holder that polls on time never loses it; a holder that
        # disappears loses it within one lease.
        lease_ms = int(pcfg.poll_interval_s * 1500)
        left = await self._call(
            lambda c: c.eval(scripts.TAKE_LEASE, 1, self.keys.lease(account), self.device, lease_ms)
        )
        if not left:
            return None
        log.debug("another machine polls this account", provider=pid, account=account)
        return min(int(left) / 1000 + 0.05, pcfg.poll_interval_s * 1.5)

    # -- running ---------------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            import redis.asyncio as aioredis
        except ImportError:
            log.error(
                "shared state is configured but the redis client is not installed; "
                "install bhoga[shared] (running on this machine's state alone)"
            )
            self.last_error = "the redis client is not installed: pip install 'bhoga[shared]'"
            return
        try:
            secret = password(self.cfg, self._environ)
        except SharedUnavailable as exc:
            log.error("shared state unusable; running on this machine's state alone", error=str(exc))
            self.last_error = str(exc)
            return
        assert self.cfg.url is not None
        options: dict[str, Any] = {
            "socket_timeout": self.cfg.timeout_s,
            "socket_connect_timeout": self.cfg.timeout_s,
            "health_check_interval": 30,
        }
        if self.cfg.username:
            options["username"] = self.cfg.username
        if secret is not None:
            options["password"] = secret
        if self.cfg.tls_ca_file and self.cfg.url.startswith("rediss://"):
            options["ssl_ca_certs"] = self.cfg.tls_ca_file
        self._client = aioredis.Redis.from_url(self.cfg.url, **options)
        self.keeper.observers.append(self)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._pusher)
                tg.start_soon(self._timer)
                tg.start_soon(self._listener)
                tg.start_soon(self._puller)
        finally:
            with contextlib.suppress(ValueError):
                self.keeper.observers.remove(self)
            with contextlib.suppress(Exception):
                await self._client.aclose()

    async def _call(self, op: Any) -> Any:
        """Run one operation; a failure marks the server unreachable and returns ``None``."""
        try:
            result = await asyncio.wait_for(op(self._client), self.cfg.timeout_s * 2)
        except (OSError, TimeoutError) as exc:
            self._down(exc)
            return None
        except Exception as exc:  # redis.exceptions.* (imported lazily) and protocol surprises
            if type(exc).__module__.startswith("redis"):
                self._down(exc)
                return None
            raise
        return result

    def _down(self, exc: BaseException) -> None:
        # Only the kind of failure: a server's error text could quote our AUTH arguments.
        reason = type(exc).__name__
        if self.connected:
            log.warning("shared state unreachable; routing on this machine's state", error=reason)
            self.unreachable_since = self.keeper.clock()
        self.connected = False
        self.last_error = f"{reason} talking to {self.server}"

    async def _connect(self) -> bool:
        info = await self._call(lambda c: c.info("server"))
        if info is None:
            return False
        self.server_version = str(info.get("valkey_version") or info.get("redis_version") or "?")
        was_down = self.unreachable_since is not None
        self.connected = True
        self.last_error = None
        self._backoff = 1.0
        if was_down:
            log.info("shared state reachable", server=self.server, device=self.device)
            self.unreachable_since = None
            # What we learnt meanwhile goes out now; merges are idempotent, so nothing counts twice.
            self._pushed.clear()
            self._pushed_cooldown.clear()
            self._dirty.update(self.keeper.providers)
            self._spend_dirty = True
            self._wake.set()
        return True

    async def _timer(self) -> None:
        while True:
            if not self.connected and not await self._connect():
                await asyncio.sleep(self._backoff)
                self._backoff = min(self._backoff * 2, _MAX_BACKOFF_S)
                continue
            await self._heartbeat()
            self._spend_dirty = True
            self._wake.set()
            await self._pull(self._accounts())
            await asyncio.sleep(self.cfg.sync_interval_s)

    async def _pusher(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(_DEBOUNCE_S)
            self._wake.clear()
            if not self.connected:
                continue
            dirty, self._dirty = self._dirty, set()
            announce: set[str] = set()
            for pid in sorted(dirty):
                account = await self._push_provider(pid)
                if account is not None:
                    announce.add(account)
            if self._spend_dirty:
                self._spend_dirty = False
                await self._push_totals()
            for account in sorted(announce):
                event = msgspec.json.encode(records.Event(device=self.device, account=account))
                await self._call(lambda c, e=event: c.publish(self.keys.events, e))

    async def _listener(self) -> None:
        while True:
            if not self.connected:
                await asyncio.sleep(0.5)
                continue
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.keys.events)
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is None:
                        if not self.connected:
                            break
                        continue
                    with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError):
                        event = msgspec.json.decode(message["data"], type=records.Event)
                        if event.device != self.device:
                            self._pull_now.add(event.account)
                            self._pull_wake.set()
            except Exception as exc:
                if not (isinstance(exc, OSError | TimeoutError) or type(exc).__module__.startswith("redis")):
                    raise
                self._down(exc)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            await asyncio.sleep(0.5)

    async def _puller(self) -> None:
        while True:
            await self._pull_wake.wait()
            self._pull_wake.clear()
            accounts, self._pull_now = self._pull_now, set()
            await self._pull(accounts)

    # -- pushing ---------------------------------------------------------------------------------

    def _accounts(self) -> dict[str, list[str]]:
        """Account → the local providers that draw on it."""
        out: dict[str, list[str]] = {}
        for pid, p in self.keeper.providers.items():
            account = account_of(p, self.keeper.cfg.providers.get(pid))
            if account is not None:
                out.setdefault(account, []).append(pid)
        return out

    async def _push_provider(self, pid: str) -> str | None:
        """Push ``pid``'s own news; returns its account if the server's state changed."""
        p = self.keeper.providers.get(pid)
        account = account_of(p, self.keeper.cfg.providers.get(pid)) if p is not None else None
        if p is None or account is None:
            return None
        now = self.keeper.clock()
        ops: list[tuple[Any, ...]] = []
        sent: list[tuple[tuple[str, str], tuple[datetime | None, float]]] = []
        for key, w in list(p.windows.items())[: records.MAX_WINDOWS]:
            stamp = (w.updated_at, w.pct_used)
            if w.origin is not None or self._pushed.get((pid, key)) == stamp:
                continue  # another machine's reading is theirs to share; ours was sent already
            used, resets, updated, body, expire = records.window_fields(w, self.device, now)
            ops.append(
                (
                    scripts.MERGE_WINDOW,
                    2,
                    self.keys.window(account, key),
                    self.keys.windows(account),
                    used,
                    resets,
                    updated,
                    body,
                    expire,
                    key,
                    records.SAME_PERIOD_MS,
                )
            )
            sent.append(((pid, key), stamp))
        until = p.cooldown_until
        if until is not None and until > now and self._pushed_cooldown.get(pid) != until:
            ops.append(
                (
                    scripts.EXTEND_COOLDOWN,
                    1,
                    self.keys.cooldown(account),
                    records.ms(until),
                    (p.cooldown_reason or "")[:200],
                    self.device,
                )
            )
        if not ops:
            return None

        async def run(client: Any) -> list[Any]:
            pipe = client.pipeline(transaction=False)
            for op in ops:
                pipe.eval(*op)
            result: list[Any] = await pipe.execute()
            return result

        results = await self._call(run)
        if results is None:
            self._dirty.add(pid)  # pushed again on reconnect
            return None
        self._pushed.update(sent)
        if until is not None and until > now:
            self._pushed_cooldown[pid] = until
        return account if any(int(r) for r in results) else None

    async def _push_totals(self) -> None:
        """This machine's token flow per account and spend this month: absolute, overwritten."""
        keeper = self.keeper
        now = keeper.clock()
        tau_h = keeper.cfg.routing.burn_window_s / 3600
        flows: dict[str, records.Flow] = {}
        for account, pids in self._accounts().items():
            per_h = sum(pace.flow_now(keeper.providers[pid].flow, now, tau_h) for pid in pids)
            consumed = sum(keeper.providers[pid].consumed for pid in pids)
            flows[account] = records.Flow(per_h=per_h, consumed=consumed, at_ms=records.ms(now))
        spend = budgets.current(keeper.spend, now)
        fields: dict[str, float] = {}
        for pid, amount in spend.providers.items():
            fields[records.spend_field(self.device, "p", pid)] = amount
        for agent, amount in spend.agents.items():
            fields[records.spend_field(self.device, "a", agent)] = amount

        async def run(client: Any) -> None:
            pipe = client.pipeline(transaction=False)
            for account, flow in flows.items():
                pipe.hset(self.keys.flow(account), self.device, msgspec.msgpack.encode(flow))
                pipe.expire(self.keys.flow(account), 24 * 3600)
            if fields:
                pipe.hset(self.keys.spend(spend.month), mapping=fields)
                pipe.expire(self.keys.spend(spend.month), records.SPEND_TTL_S)
            await pipe.execute()

        await self._call(run)

    async def _heartbeat(self) -> None:
        now = self.keeper.clock()
        beat = msgspec.msgpack.encode(records.Heartbeat(at_ms=records.ms(now), version=self.version))

        async def run(client: Any) -> tuple[Any, Any]:
            pipe = client.pipeline(transaction=False)
            pipe.hset(self.keys.devices, self.device, beat)
            pipe.expire(self.keys.devices, 7 * 24 * 3600)
            pipe.hgetall(self.keys.devices)
            pipe.time()
            _, _, devices, server_time = await pipe.execute()
            return devices, server_time

        got = await self._call(run)
        if got is None:
            return
        devices, (seconds, micros) = got
        self.clock_skew_s = round(seconds + micros / 1e6 - self.keeper.clock().timestamp(), 3)
        peers: dict[str, datetime] = {}
        for raw, value in devices.items():
            name = raw.decode(errors="replace")
            if name == self.device:
                continue
            with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError):
                peers[name] = records.from_ms(msgspec.msgpack.decode(value, type=records.Heartbeat).at_ms)
        self.peers = peers

    # -- pulling ---------------------------------------------------------------------------------

    async def _pull(self, accounts: set[str] | Mapping[str, list[str]]) -> None:
        if not self.connected:
            return
        local = self._accounts()
        for account in sorted(accounts):
            pids = local.get(account)
            if pids:
                await self._pull_account(account, pids)
        await self._pull_spend()

    async def _pull_account(self, account: str, pids: list[str]) -> None:
        members = await self._call(lambda c: c.smembers(self.keys.windows(account)))
        if members is None:
            return
        names = sorted(m.decode(errors="replace") for m in members)[: records.MAX_WINDOWS]

        async def run(client: Any) -> list[Any]:
            pipe = client.pipeline(transaction=False)
            for name in names:
                pipe.hgetall(self.keys.window(account, name))
            pipe.hgetall(self.keys.cooldown(account))
            pipe.hgetall(self.keys.flow(account))
            result: list[Any] = await pipe.execute()
            return result

        got = await self._call(run)
        if got is None:
            return
        now = self.keeper.clock()
        windows: list[QuotaWindow] = []
        for fields in got[: len(names)]:
            read = records.window_from_fields(fields, now)
            if read is not None and read[1] != self.device:
                windows.append(read[0])
        cooldown: tuple[datetime, str] | None = None
        held = got[len(names)]
        with contextlib.suppress(KeyError, ValueError):
            until = records.from_ms(int(held[b"until"]))
            origin = held.get(b"device", b"?").decode(errors="replace")
            reason = held.get(b"reason", b"").decode(errors="replace")
            if origin != self.device and until > now:
                cooldown = (until, f"{reason} (via {origin})" if reason else f"via {origin}")
        per_h, consumed = records.sum_peer_flows(got[len(names) + 1], self.device, now)
        for pid in pids:
            if cooldown is not None:
                self._pushed_cooldown[pid] = cooldown[0]
            self.keeper.merge_shared(pid, windows, cooldown, per_h, consumed)

    async def _pull_spend(self) -> None:
        month = budgets.month_of(self.keeper.clock())
        fields = await self._call(lambda c: c.hgetall(self.keys.spend(month)))
        if fields is None:
            return
        providers, agents = records.sum_peer_spend(fields, self.device)
        self.keeper.set_peer_spend(budgets.Spend(month=month, providers=providers, agents=agents))
