"""``bhogad``: run the daemon in the foreground."""

from __future__ import annotations

import argparse
import os
import sys

import anyio

from bhoga import paths
from bhoga.client import Router
from bhoga.errors import BhogaError
from bhoga.protocol import Method
from bhogad import __version__, config as config_mod
from bhogad.app import App, Options, StartupError
from bhogad.observability import logsetup
from bhogad.service import listen
from bhogad.service.lock import AlreadyRunning


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bhogad", description="The bhoga daemon: owns quota state and ranks providers for every harness."
    )
    parser.add_argument("--socket", help="Unix socket path (env BHOGA_SOCKET)")
    parser.add_argument(
        "--config", help="config.yaml path (env BHOGA_CONFIG); optional, defaults are built in"
    )
    parser.add_argument("--state", help="state directory (env BHOGA_STATE)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument(
        "--log-json",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="JSON log lines (default: when stderr is not a terminal)",
    )
    parser.add_argument("--check-config", action="store_true", help="validate the config and exit")
    parser.add_argument(
        "--reload",
        action="store_true",
        help="ask the running bhogad to reload its config and wait for the outcome (systemd's ExecReload)",
    )
    parser.add_argument("--version", action="version", version=f"bhogad {__version__}")
    return parser.parse_args(argv)


def reload_running(socket: str | None) -> int:
    """Have the daemon on ``socket`` reload, and exit as the reload went: 0 once the new config is in
    use, 1 with the reason when it was refused (the daemon keeps its running config)."""
    path = paths.socket_path(socket)
    try:
        with Router(socket_path=path, timeout=30.0) as router:
            router.call(Method.RELOAD)
    except BhogaError as exc:
        print(f"bhogad: reload failed: {exc}", file=sys.stderr)
        return 1
    print(f"bhogad: reloaded the daemon on {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.reload:
        return reload_running(args.socket)
    logsetup.configure(args.log_level, args.log_json)
    config_path = paths.config_path(args.config)
    config_error = None
    try:
        cfg = config_mod.load(config_path)
    except config_mod.ConfigError as exc:
        if args.check_config or not listen.activated(os.environ, os.getpid()):
            print(f"bhogad: config error: {exc}", file=sys.stderr)
            return 2
        # Clients are queued on the manager's socket: answer them with the error (see bhogad.app).
        print(f"bhogad: config error: {exc}; serving only the error until a reload", file=sys.stderr)
        cfg, config_error = config_mod.Config(), str(exc)
    if args.check_config:
        print(f"bhogad: {config_path if config_path.exists() else 'built-in defaults'}: ok")
        return 0
    opts = Options(
        socket_path=paths.socket_path(args.socket),
        config_path=config_path,
        state_dir=paths.state_dir(args.state),
    )
    try:
        anyio.run(App(opts, cfg, config_error).run)
    except AlreadyRunning as exc:
        print(f"bhogad: already running on {opts.socket_path} (pid {exc.pid})", file=sys.stderr)
        return 0
    except StartupError as exc:
        print(f"bhogad: cannot start: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
