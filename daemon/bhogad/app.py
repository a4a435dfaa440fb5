"""The daemon's lifecycle: lock, listen, load, serve, and stop in order.

Startup order matters: the instance lock comes before the socket path is touched (so a second daemon
can never unlink the first one's socket), and the store is loaded before the first request is read.
SIGTERM stops accepting, answers every line already read, flushes the store and exits 0.
SIGHUP and the ``daemon.reload`` call reload config.yaml; a bad file keeps the running config and
says why (in the log, the manager's STATUS and, for the call, its error reply).

A socket-activated start with an invalid config.yaml does not exit: exiting would leave the clients
queued on the manager's socket waiting for their timeout while the manager restarts us forever. It
serves instead, refusing every request but hello/status/metrics/reload with an error naming the file
and line, until a reload with a good file brings it into full service.

Signals are caught before the socket exists: a SIGHUP from a service manager (or a person) the moment
the daemon is reachable must reload, never kill it. One that comes even earlier, before the event
loop runs, is remembered by :class:`EarlyHangup` and acted on once the daemon is serving.

Construction runs in one direction: store → clients → state owner → method table → dispatcher →
server, so nothing is built empty and patched afterwards.

Under a service manager the listening socket may be inherited (socket activation); then the manager
owns the file and we never delete it. The manager hears READY once the listener is live, RELOADING and
READY around a reload, STOPPING on stop, and watchdog pings from the event loop.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any

import anyio
import httpx
import msgspec
import structlog

from bhoga.paths import check_socket_path_length
from bhoga.protocol import DaemonStatus, ErrorCode, Method
from bhogad import __version__, config as config_mod
from bhogad.alerting import AlertEngine
from bhogad.discovery.poller import Poller
from bhogad.domain.keeper import IDEMPOTENCY_WINDOW_S, QuotaKeeper
from bhogad.ingest.scanner import Scanner
from bhogad.observability import metrics_http
from bhogad.rpc import methods
from bhogad.rpc.clients import Clients
from bhogad.rpc.dispatch import Call, Dispatcher, MethodSpec, RpcError
from bhogad.rpc.server import Server, bind_unix
from bhogad.service import listen
from bhogad.service.lock import UnsafeDirectory, acquire, ensure_private_dir
from bhogad.service.notify import Notifier
from bhogad.shared.sync import SharedSync
from bhogad.storage.store import Store, StoreUnavailable

log = structlog.get_logger("bhogad")


class StartupError(Exception):
    """Something a person must fix before the daemon can start; the message says what."""


#: What stops or reloads the daemon; caught from before the socket is bound until exit.
SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class EarlyHangup:
    """Remembers a SIGHUP that arrives before the event loop's handlers exist.

    Python's default for SIGHUP is to die. ``bhogad`` installs this first thing, so a reload asked
    for while the daemon is still reading its config is done once it serves, instead of killing it.
    """

    def __init__(self) -> None:
        self.seen = False

    def install(self) -> EarlyHangup:
        signal.signal(signal.SIGHUP, self._caught)
        return self

    def _caught(self, signum: int, frame: FrameType | None) -> None:
        self.seen = True

    def take(self) -> bool:
        seen, self.seen = self.seen, False
        return seen


@dataclass(frozen=True)
class Options:
    socket_path: Path
    config_path: Path | None
    state_dir: Path


#: What a daemon with a broken config.yaml still answers: enough to see why, and to fix it.
_ANSWERED_WITH_BAD_CONFIG = frozenset({Method.HELLO, Method.STATUS, Method.METRICS, Method.RELOAD})


class App:
    def __init__(
        self,
        opts: Options,
        cfg: config_mod.Config,
        early: EarlyHangup | None = None,
        config_error: str | None = None,
    ) -> None:
        """``config_error``: config.yaml was invalid and ``cfg`` is the defaults (see the module doc)."""
        self.opts = opts
        self.cfg = cfg
        self.early = early or EarlyHangup()
        self.config_error = config_error
        self.notifier = Notifier.from_environ()
        self._reload_lock = anyio.Lock()
        #: Starts the provider pollers, turn pruning and the metrics endpoint; deferred while the config
        #: is broken (on defaults they could poll a provider the user switched off, prune turns the
        #: user keeps longer, listen on the wrong port).
        self._start_deferred: Callable[[], None] | None = None
        self._scrape: asyncio.Server | None = None

    async def run(self) -> None:
        # The loop's handlers replace the default dispositions before anything can reach us.
        with anyio.open_signal_receiver(*SIGNALS) as signals:
            await self._run(signals)

    async def _run(self, signals: AsyncIterator[int]) -> None:
        try:
            inherited = listen.inherited_socket()
        except listen.ActivationError as exc:
            raise StartupError(str(exc)) from exc
        if inherited is not None:
            self._adopt(inherited)
        opts = self.opts
        try:
            check_socket_path_length(opts.socket_path)
            ensure_private_dir(opts.socket_path.parent)
        except (ValueError, OSError, UnsafeDirectory) as exc:
            raise StartupError(str(exc)) from exc
        lock_fd = acquire(opts.socket_path.with_name(opts.socket_path.name + ".lock"))
        identity: tuple[int, int] | None = None  # set only for a socket file we created ourselves
        if inherited is not None:
            sock = inherited
        else:
            try:
                sock, identity = bind_unix(opts.socket_path)
            except OSError as exc:
                os.close(lock_fd)
                raise StartupError(f"cannot listen on {opts.socket_path}: {exc}") from exc
        try:
            await self._serve(sock, signals)
        finally:
            if identity is not None:
                self._remove_socket(identity)
            os.close(lock_fd)

    def _adopt(self, sock: socket.socket) -> None:
        # Clients reach us where the manager bound; the lock and `daemon.status` must say the same.
        path = listen.socket_path(sock)
        log.info("serving an inherited socket", socket=path, configured=str(self.opts.socket_path))
        if path is not None and Path(path) != self.opts.socket_path:
            log.warning(
                "the service manager's socket is not the configured one; clients using the configured "
                "path will not find this daemon",
                socket=path,
                configured=str(self.opts.socket_path),
            )
            self.opts = replace(self.opts, socket_path=Path(path))

    def _remove_socket(self, identity: tuple[int, int]) -> None:
        # Only our own file: if something replaced it, it is not ours to delete.
        try:
            st = self.opts.socket_path.lstat()
            if (st.st_dev, st.st_ino) == identity:
                self.opts.socket_path.unlink()
        except FileNotFoundError:
            pass

    async def _serve(self, sock: socket.socket, signals: AsyncIterator[int]) -> None:
        try:
            store = await anyio.to_thread.run_sync(
                Store.open, self.opts.state_dir, self.cfg.store.synchronous
            )
        except StoreUnavailable as exc:
            raise StartupError(str(exc)) from None
        if store.checked:
            log.info("checked the state store's integrity", why=store.checked)
        if store.quarantine:
            log.error("the state store could not be used and was moved aside", detail=store.quarantine)
        try:
            clients = Clients()
            daemon = QuotaKeeper(self.cfg, store, events=clients)
            for problem in await anyio.to_thread.run_sync(daemon.load):
                log.warning("state", problem=problem)
            # Quota discovery: a poller per provider, sharing one HTTP client (connection reuse).
            http = httpx.AsyncClient(follow_redirects=False)
            poller = Poller(daemon, http, env=os.environ)
            shared = None
            if self.cfg.shared.url is not None:
                shared = SharedSync(daemon, self.cfg.shared, version=__version__)
                daemon.shared = shared
                poller.lease = shared.lease
            endpoint = methods.Endpoint(self.opts.socket_path, self.opts.config_path)
            table = methods.build(daemon, clients, endpoint, refresh=poller.refresh)
            # The server is built from the dispatcher, so `daemon.reload` reaches it late, through
            # this closure; no call can arrive before it exists.
            table[Method.RELOAD] = self._reload_method(table[Method.STATUS], lambda: server, daemon)
            dispatcher = Dispatcher(self._guarded(table), observe=daemon.metrics.observe_rpc)
            server = Server(clients, dispatcher, self.cfg.server)
            async with anyio.create_task_group() as tg:
                tg.start_soon(daemon.writer.run)

                def start_maintenance() -> None:
                    tg.start_soon(
                        daemon.writer.maintain,
                        self.cfg.store.keep_turns_days,
                        IDEMPOTENCY_WINDOW_S,
                        daemon.clock,
                    )

                async def start_metrics() -> None:
                    self._scrape = await self._metrics_http(partial(methods.metrics_text, daemon, clients))

                def start_harness_paths() -> None:
                    tg.start_soon(AlertEngine(daemon).run)
                    tg.start_soon(Scanner(daemon, os.environ).run)

                def start_deferred() -> None:
                    # Pruning too: the defaults' retention is not the one the user chose.
                    start_maintenance()
                    tg.start_soon(poller.run)
                    start_harness_paths()
                    tg.start_soon(start_metrics)

                if self.config_error is None:
                    start_maintenance()
                    tg.start_soon(poller.run)
                    start_harness_paths()
                    if shared is not None:  # None on the defaults a broken config leaves
                        tg.start_soon(shared.run)
                else:
                    self._start_deferred = start_deferred
                tg.start_soon(self._watchdog)
                await server.start(sock)
                # Signals that came during start-up were queued by the receiver and are handled now.
                tg.start_soon(self._signals, signals, server, daemon)
                if self.config_error is None:
                    await start_metrics()
                log.info(
                    "ready",
                    socket=str(self.opts.socket_path),
                    state=str(store.path),
                    config=str(self.opts.config_path) if self.opts.config_path else None,
                    pid=os.getpid(),
                )
                if self.config_error is None:
                    self.notifier.ready(f"serving on {self.opts.socket_path}")
                else:
                    log.error("config error: refusing requests until a reload", error=self.config_error)
                    # READY all the same: the socket is served, and a failed start would only loop.
                    self.notifier.ready(self._refusal())
                if self.early.take():
                    await self._reload(server, daemon)
                await server.closed()
                if self._scrape is not None:
                    self._scrape.close()
                with anyio.CancelScope(shield=True):
                    await daemon.writer.flush()
                tg.cancel_scope.cancel()
            await http.aclose()
            daemon.writer.close()
            log.info("stopped", turns_stored=daemon.turns_stored)
        finally:
            store.close()

    async def _metrics_http(self, render: Callable[[], str]) -> asyncio.Server | None:
        port = self.cfg.server.metrics_port
        if port is None:
            return None
        try:
            return await metrics_http.serve(port, render)
        except OSError as exc:
            # An optional extra: the socket, which every harness needs, keeps serving without it.
            log.error("cannot serve metrics over HTTP", port=port, error=str(exc))
            return None

    async def _signals(self, signals: AsyncIterator[int], server: Server, daemon: QuotaKeeper) -> None:
        async for signum in signals:
            if signum == signal.SIGHUP:
                await self._reload(server, daemon)
            elif server.stopping:
                log.warning("second stop signal: closing connections now")
                server.abort_all()
            else:
                log.info("stopping", signal=signal.Signals(signum).name)
                self.notifier.stopping(f"stopping: answering {server.connection_count} connections")
                server.stop()
                server.spawn(server.drained(self.cfg.server.shutdown_grace_s))

    async def _watchdog(self) -> None:
        # Pinged from the loop, not a thread: a wedged loop must stop the pings and get us restarted.
        period = self.notifier.watchdog_s
        if period is None:
            return
        while True:
            self.notifier.watchdog()
            await anyio.sleep(period)

    async def _reload(self, server: Server, daemon: QuotaKeeper) -> str | None:
        """Reload config.yaml; the error that kept the running config, or ``None`` once it is in use.

        RELOADING=1 (stamped with MONOTONIC_USEC) before and READY=1 after, whatever the outcome: the
        pair systemd's Type=notify-reload waits for, and the end of a reload it saw us start.
        """
        async with self._reload_lock:  # a SIGHUP during a `daemon.reload` call waits its turn
            self.notifier.reloading()
            try:
                new = await anyio.to_thread.run_sync(config_mod.load, self.opts.config_path)
            except config_mod.ConfigError as exc:
                log.error("reload failed; keeping the running config", error=str(exc))
                if self.config_error is not None:
                    self.config_error = str(exc)
                    self.notifier.ready(self._refusal())
                else:
                    self.notifier.ready(f"reload failed, running the previous config: {exc}")
                return str(exc)
            self.cfg = new
            daemon.reconfigure(new)
            server.limits = new.server
            daemon.detect_keys(os.environ)
            if self.config_error is not None:
                log.info("config fixed: serving requests", config=str(self.opts.config_path))
                self.config_error = None
            if self._start_deferred is not None:
                self._start_deferred()
                self._start_deferred = None
            log.info("config reloaded", config=str(self.opts.config_path))
            self.notifier.ready(f"config reloaded; serving on {self.opts.socket_path}")
            return None

    def _refusal(self) -> str:
        return (
            f"config error in {self.config_error} — bhogad refuses requests until the file is fixed "
            "and reloaded (systemctl --user reload bhogad, or SIGHUP)"
        )

    def _reload_method(
        self, status: MethodSpec, server: Callable[[], Server], daemon: QuotaKeeper
    ) -> MethodSpec:
        """``daemon.reload``: answered with ``daemon.status`` once the new config is in use."""

        async def reload(_: None, call: Call) -> DaemonStatus:
            error = await self._reload(server(), daemon)
            if error is not None:
                raise RpcError(
                    ErrorCode.APPLICATION,
                    f"reload failed, still running the previous config: {error}",
                    "config_error",
                )
            result: DaemonStatus = status.handler(None, call)
            return result

        return MethodSpec(None, reload)

    def _guarded(self, table: dict[str, MethodSpec]) -> dict[str, MethodSpec]:
        """The table, refusing work while ``config_error`` is set (checked per call: reloads clear it)."""

        def guard(name: str, handler: Callable[[Any, Call], Any]) -> Callable[[Any, Call], Any]:
            def guarded(params: Any, call: Call) -> Any:
                if self.config_error is not None:
                    if name == Method.STATUS:
                        result: DaemonStatus = handler(params, call)
                        return msgspec.structs.replace(result, config_error=self.config_error)
                    if name not in _ANSWERED_WITH_BAD_CONFIG:
                        raise RpcError(ErrorCode.APPLICATION, self._refusal(), "config_error")
                return handler(params, call)

            return guarded

        return {name: MethodSpec(spec.params_type, guard(name, spec.handler)) for name, spec in table.items()}
