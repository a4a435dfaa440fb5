"""The alert engine: evaluates ``domain.alerts`` when quota state changes (and on a slow timer, since
resets and cooldown ends come by time alone), stores what fired, then delivers it.

Delivery never blocks the daemon: ``quota.alert`` lines are offered to subscribers (whose queues
drop, not wait), and each hook runs as its own subprocess task with a timeout, at most
``_MAX_HOOKS`` at once; beyond that, hook runs are dropped with a warning rather than queued forever.
"""

from __future__ import annotations

import os
import subprocess
from datetime import datetime

import anyio
import anyio.abc
import msgspec
import structlog

from bhoga.protocol import Alert
from bhogad.config import AlertsConfig, HookConfig
from bhogad.domain import alerts, pace
from bhogad.domain.keeper import QuotaKeeper
from bhogad.domain.state import model_view
from bhogad.storage import harness

log = structlog.get_logger("bhogad.alerting")

_MAX_HOOKS = 4
_state_decoder = msgspec.json.Decoder(alerts.AlertState)
_encoder = msgspec.json.Encoder()
#: Environment variables a hook never inherits: it gets the alert, not the daemon's credentials.
_SECRET_SUFFIXES = ("_API_KEY", "_TOKEN", "_SECRET", "_PASSWORD")


def rules_of(cfg: AlertsConfig) -> alerts.AlertRules:
    return alerts.AlertRules(
        thresholds=tuple(sorted(set(cfg.thresholds))),
        projected=cfg.projected,
        projected_from_pct=cfg.projected_from_pct,
        cooldowns=cfg.cooldowns,
        resets=cfg.resets,
        unavailable=cfg.unavailable,
    )


def outlooks(keeper: QuotaKeeper, now: datetime) -> dict[tuple[str, str], alerts.Outlook]:
    """Each fresh quota window's projection at its current burn, as the pace strategy sees it."""
    found: dict[tuple[str, str], alerts.Outlook] = {}
    for pid, p in keeper.providers.items():
        view = model_view(p, "*", keeper.cfg.providers.get(pid), keeper.cfg, now)
        for w in view.fresh:
            burn = view.burns.get(w.key)
            if burn is None or burn.pct_per_h <= 0:
                continue  # nothing burns it: no projection to speak of
            o = pace.outlook(w, now, burn)
            found[(pid, w.key)] = alerts.Outlook(lasts=o.lasts, empty_in_h=o.empty_in)
    return found


def hook_env(alert: Alert, base: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in base.items() if not k.upper().endswith(_SECRET_SUFFIXES)}
    env.update(
        BHOGA_ALERT_KIND=alert.kind.value,
        BHOGA_ALERT_ID=str(alert.id),
        BHOGA_PROVIDER=alert.provider,
        BHOGA_WINDOW=alert.window or "",
        BHOGA_PERCENT="" if alert.pct_used is None else f"{alert.pct_used:g}",
        BHOGA_RESETS_AT="" if alert.resets_at is None else alert.resets_at.isoformat(),
        BHOGA_MESSAGE=alert.message,
    )
    return env


class AlertEngine:
    def __init__(self, keeper: QuotaKeeper) -> None:
        self.keeper = keeper
        self.state = alerts.AlertState()
        self._state_bytes = b""
        self.next_id = 1
        self._dirty = anyio.Event()
        self._hooks_running = 0
        self.hooks_dropped = 0
        self.fired = 0
        keeper.observers.append(self)

    def quota_changed(self, pid: str, cause: str) -> None:
        self._dirty.set()  # evaluated shortly, once for a burst of changes

    def turn_recorded(self, pid: str) -> None:
        pass  # a turn that changes a window also reports quota_changed

    async def load(self) -> None:
        store = self.keeper.store
        raw, last = await anyio.to_thread.run_sync(
            store.read,
            lambda conn: (harness.load_alert_state(conn), harness.last_alert_id(conn)),
            limiter=self.keeper.writer.limiter,
        )
        self.next_id = last + 1
        if raw:
            try:
                self.state = _state_decoder.decode(raw)
                self._state_bytes = raw
            except msgspec.DecodeError as exc:
                # Worst case some alerts are said again; never stop the daemon over it.
                log.warning("alert record unreadable; starting afresh", error=str(exc))

    async def run(self) -> None:
        await self.load()
        async with anyio.create_task_group() as tg:
            while True:
                cfg = self.keeper.cfg.alerts
                with anyio.move_on_after(cfg.interval_s):
                    await self._dirty.wait()
                self._dirty = anyio.Event()
                if cfg.enabled:
                    await self.evaluate(tg)
                await anyio.sleep(0.05)  # a burst of changes is one evaluation

    async def evaluate(self, tg: anyio.abc.TaskGroup) -> list[Alert]:
        keeper = self.keeper
        now = keeper.clock()
        cfg = keeper.cfg.alerts
        state, fired = alerts.evaluate(self.state, keeper.quotas(), outlooks(keeper, now), rules_of(cfg), now)
        for alert in fired:
            alert.id = self.next_id
            self.next_id += 1
        encoded = _encoder.encode(state)
        if fired or encoded != self._state_bytes:
            # Stored before delivered: after a crash an alert is either remembered or raised again.
            await anyio.to_thread.run_sync(
                keeper.store.write,
                lambda conn: harness.commit_alerts(conn, encoded, fired),
                limiter=keeper.writer.limiter,
            )
        self.state, self._state_bytes = state, encoded
        for alert in fired:
            self.fired += 1
            log.info("alert", kind=alert.kind.value, provider=alert.provider, window=alert.window)
            keeper.events.publish_alert(alert)
            for hook in cfg.hooks:
                if not hook.kinds or alert.kind in hook.kinds:
                    self._spawn(tg, hook, alert)
        return fired

    def _spawn(self, tg: anyio.abc.TaskGroup, hook: HookConfig, alert: Alert) -> None:
        if self._hooks_running >= _MAX_HOOKS:
            self.hooks_dropped += 1
            log.warning(
                "too many alert hooks running; this one is skipped", hook=hook.command[0], id=alert.id
            )
            return
        self._hooks_running += 1
        tg.start_soon(self._run_hook, hook, alert)

    async def _run_hook(self, hook: HookConfig, alert: Alert) -> None:
        try:
            env = hook_env(alert, dict(os.environ))
            proc = await anyio.open_process(
                hook.command,
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=env,
            )
        except OSError as exc:
            log.warning("alert hook could not start", hook=hook.command[0], error=str(exc))
            self._hooks_running -= 1
            return
        try:
            with anyio.move_on_after(hook.timeout_s) as scope:
                assert proc.stdin is not None
                try:
                    await proc.stdin.send(_encoder.encode(alert) + b"\n")
                    await proc.stdin.aclose()
                except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                    pass  # a hook that does not read its stdin is its own business
                code = await proc.wait()
            if scope.cancelled_caught:
                proc.kill()
                log.warning(
                    "alert hook timed out and was killed", hook=hook.command[0], timeout_s=hook.timeout_s
                )
            elif code != 0:
                log.warning("alert hook failed", hook=hook.command[0], exit_code=code)
        finally:
            with anyio.CancelScope(shield=True):
                if proc.returncode is None:
                    proc.kill()
                await proc.aclose()
            self._hooks_running -= 1
