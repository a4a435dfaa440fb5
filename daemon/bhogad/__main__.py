"""``bhogad``: run the daemon in the foreground."""

from __future__ import annotations

import argparse
import sys
from enum import IntEnum

import anyio

from bhoga import paths
from bhogad import __version__, config as config_mod
from bhogad.app import App, EarlyHangup, Options, StartupError
from bhogad.observability import logsetup
from bhogad.service.lock import AlreadyRunning


class Exit(IntEnum):
    """``bhogad``'s exit statuses (service managers and ``bhoga doctor`` read them)."""

    #: Stopped cleanly, or another bhogad already serves this socket.
    OK = 0
    #: Something a person must fix before it can start (the socket, its directory, the store).
    CANNOT_START = 1
    #: The config file is invalid; the message names the file, the key and the line.
    CONFIG = 2


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
    parser.add_argument("--version", action="version", version=f"bhogad {__version__}")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    # First of all: a SIGHUP while we read the config must not kill us (its default action).
    early = EarlyHangup().install()
    args = parse_args(argv)
    logsetup.configure(args.log_level, args.log_json)
    config_path = paths.config_path(args.config)
    try:
        cfg = config_mod.load(config_path)
    except config_mod.ConfigError as exc:
        print(f"bhogad: config error: {exc}", file=sys.stderr)
        return Exit.CONFIG
    if args.check_config:
        print(f"bhogad: {config_path if config_path.exists() else 'built-in defaults'}: ok")
        return Exit.OK
    opts = Options(
        socket_path=paths.socket_path(args.socket),
        config_path=config_path,
        state_dir=paths.state_dir(args.state),
    )
    try:
        anyio.run(App(opts, cfg, early).run)
    except AlreadyRunning as exc:
        print(f"bhogad: already running on {opts.socket_path} (pid {exc.pid})", file=sys.stderr)
        return Exit.OK
    except StartupError as exc:
        print(f"bhogad: cannot start: {exc}", file=sys.stderr)
        return Exit.CANNOT_START
    except KeyboardInterrupt:
        return Exit.OK
    return Exit.OK


if __name__ == "__main__":
    sys.exit(main())
