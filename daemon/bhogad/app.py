"""The daemon's lifecycle: lock, listen, load, serve, and stop in order.

Startup order matters: the instance lock comes before the socket path is touched (so a second daemon
can never unlink the first one's socket), and the store is loaded before the first request is read.
SIGTERM stops accepting, answers every line already read, flushes the store and exits 0.
SIGHUP reloads config.yaml; a bad file keeps the running config and says why in the log.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path

import anyio
import anyio.abc
import structlog
from bhoga.paths import check_socket_path_length

from bhogad import config as config_mod
from bhogad import methods
from bhogad.core import Daemon
from bhogad.platform.lock import UnsafeDirectory, acquire, ensure_private_dir
from bhogad.rpc import Dispatcher
from bhogad.server import Server, bind_unix
from bhogad.store import Store

log = structlog.get_logger("bhogad")


class StartupError(Exception):
    """Something a person must fix before the daemon can start; the message says what."""


@dataclass(frozen=True)
class Options:
    socket_path: Path
    config_path: Path | None
    state_dir: Path


class App:
    def __init__(self, opts: Options, cfg: config_mod.Config) -> None:
        self.opts = opts
        self.cfg = cfg

    async def run(self) -> None:
        opts = self.opts
        try:
            check_socket_path_length(opts.socket_path)
            ensure_private_dir(opts.socket_path.parent)
        except (ValueError, OSError, UnsafeDirectory) as exc:
            raise StartupError(str(exc)) from exc
        lock_fd = acquire(opts.socket_path.with_name(opts.socket_path.name + ".lock"))
        try:
            sock, identity = bind_unix(opts.socket_path)
        except OSError as exc:
            os.close(lock_fd)
            raise StartupError(f"cannot listen on {opts.socket_path}: {exc}") from exc
        try:
            await self._serve(sock)
        finally:
            self._remove_socket(identity)
            os.close(lock_fd)

    def _remove_socket(self, identity: tuple[int, int]) -> None:
        # Only our own file: if something replaced it, it is not ours to delete.
        try:
            st = self.opts.socket_path.lstat()
            if (st.st_dev, st.st_ino) == identity:
                self.opts.socket_path.unlink()
        except FileNotFoundError:
            pass

    async def _serve(self, sock: object) -> None:
        store = await anyio.to_thread.run_sync(Store.open, self.opts.state_dir, self.cfg.store.synchronous)
        if store.quarantine:
            log.error("the state store could not be used and was moved aside", detail=store.quarantine)
        try:
            daemon = Daemon(self.cfg, store)
            for problem in await anyio.to_thread.run_sync(daemon.load):
                log.warning("state", problem=problem)
            server = Server(
                daemon, Dispatcher({}), self.cfg.server, self.opts.socket_path, self.opts.config_path
            )
            server.dispatcher = Dispatcher(methods.build(daemon, server))
            listener = await anyio.abc.SocketListener.from_socket(sock)  # type: ignore[arg-type]
            async with anyio.create_task_group() as tg:
                tg.start_soon(daemon.writer.run)
                async with anyio.create_task_group() as conns:
                    tg.start_soon(self._signals, server, daemon, conns)
                    conns.start_soon(server.serve, listener, conns)
                    log.info(
                        "ready",
                        socket=str(self.opts.socket_path),
                        state=str(store.path),
                        config=str(self.opts.config_path) if self.opts.config_path else None,
                        pid=os.getpid(),
                    )
                await listener.aclose()
                with anyio.CancelScope(shield=True):
                    await daemon.writer.flush()
                tg.cancel_scope.cancel()
            log.info("stopped", turns_stored=daemon.turns_stored)
        finally:
            store.close()

    async def _signals(self, server: Server, daemon: Daemon, conns: anyio.abc.TaskGroup) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            async for signum in signals:
                if signum == signal.SIGHUP:
                    await self._reload(server, daemon)
                elif server.stopping:
                    log.warning("second stop signal: closing connections now")
                    conns.cancel_scope.cancel()
                else:
                    log.info("stopping", signal=signal.Signals(signum).name)
                    server.stop()
                    conns.start_soon(self._grace_then_cancel, conns)

    async def _grace_then_cancel(self, conns: anyio.abc.TaskGroup) -> None:
        await anyio.sleep(self.cfg.server.shutdown_grace_s)
        log.warning("grace period over: closing remaining connections")
        conns.cancel_scope.cancel()

    async def _reload(self, server: Server, daemon: Daemon) -> None:
        try:
            new = await anyio.to_thread.run_sync(config_mod.load, self.opts.config_path)
        except config_mod.ConfigError as exc:
            log.error("reload failed; keeping the running config", error=str(exc))
            return
        self.cfg = new
        daemon.cfg = new
        server.limits = new.server
        daemon.detect_keys(os.environ)
        log.info("config reloaded", config=str(self.opts.config_path))
