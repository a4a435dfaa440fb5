"""The service definitions for bhogad: systemd user units and a launchd LaunchAgent, as text.

Pure rendering, no I/O. ``bhoga service install`` renders them with this machine's absolute paths;
the copies in the repository's ``systemd/`` and ``launchd/`` folders are the same templates rendered
with placeholders (a test keeps them identical), for people who install by hand or package bhoga.
"""

from __future__ import annotations

import plistlib
import re
from collections.abc import Mapping, Sequence

UNIT = "bhogad"
LABEL = "io.bhoga.bhogad"
#: The default socket in unit syntax: ``%t`` is ``$XDG_RUNTIME_DIR``, where the client looks too.
DEFAULT_SOCKET = "%t/bhoga/bhogad.sock"
#: What the repository's bhogad.service runs: where pipx and ``uv tool`` put commands.
DEFAULT_EXEC = "%h/.local/bin/bhogad"

# launchd expands nothing, so the repository's plist keeps these for an installer to replace.
PLACEHOLDER_EXEC = "@BHOGAD@"
PLACEHOLDER_SOCKET = "@SOCKET@"
PLACEHOLDER_LOG = "@LOG@"

_NEEDS_QUOTES = re.compile(r'[\s"\'\\;]')


def unit_escape(text: str) -> str:
    """A literal string for a unit file: ``%`` would start a specifier and ``$`` a variable."""
    return text.replace("%", "%%").replace("$", "$$")


def exec_line(argv: Sequence[str]) -> str:
    """``argv`` as an ``ExecStart=`` command line: escaped, and quoted where a word needs it."""
    words = []
    for arg in argv:
        word = unit_escape(arg)
        if _NEEDS_QUOTES.search(word) or not word:
            word = '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'
        words.append(word)
    return " ".join(words)


def environment_line(name: str, value_in_unit_syntax: str) -> str:
    quoted = value_in_unit_syntax.replace("\\", "\\\\").replace('"', '\\"')
    return f'Environment="{name}={quoted}"'


def systemd_service(exec_start: str, environment: Mapping[str, str]) -> str:
    """``bhogad.service``; ``exec_start`` and the values of ``environment`` are in unit syntax."""
    env = "".join(environment_line(k, v) + "\n" for k, v in environment.items())
    return f"""\
# bhogad, the bhoga daemon, as a systemd user service (written by `bhoga service install`).
# bhogad.socket starts it on the first connection; WantedBy=default.target starts it at login too,
# so quotas are polled before any harness asks. Logs: journalctl --user -u bhogad
# User services stop at logout unless lingering is on: loginctl enable-linger $USER
[Unit]
Description=bhoga daemon: AI provider quota state for local harnesses
Requires={UNIT}.socket
After={UNIT}.socket

[Service]
# READY=1 once the socket is served; RELOADING=1 (with MONOTONIC_USEC) and READY=1 around a reload,
# which is also what Type=notify-reload (systemd >= 253) expects.
Type=notify
ExecStart={exec_start}
# Asks the running daemon to reload and waits for its answer, so `systemctl reload` fails on a bad
# config.yaml (naming file and line) and returns only once the new config is in use.
ExecReload={exec_start} --reload
{env}Restart=on-failure
RestartSec=2
# SIGTERM answers what was read and flushes within server.shutdown_grace_s (5 s); keep this above.
TimeoutStopSec=15
# bhogad pings at half this interval from its event loop, so a hung loop gets restarted.
WatchdogSec=30
# Files it creates (the state store, the socket's directory) are private to the user.
UMask=0077
# Hardening that works in user units without user namespaces. Filesystem options (ProtectSystem,
# ProtectHome, PrivateTmp, ProtectKernel*, PrivateDevices) need a mount namespace, which a user
# manager can only make inside a user namespace (PrivateUsers=, implied since systemd 254 and refused
# where unprivileged user namespaces are restricted); they are left out on purpose.
# Neither bhogad nor the CLIs it runs (codex, gh, security) gain privileges through setuid binaries.
NoNewPrivileges=yes
# No need for another execution domain (personality(2)).
LockPersonality=yes
# No realtime scheduling: polling is background work.
RestrictRealtime=yes
# Files it creates never carry setuid/setgid bits.
RestrictSUIDSGID=yes
# No namespaces of any kind: bhogad needs none, and it asks `codex app-server` only for rate
# limits, never to run a command in Codex's sandbox.
RestrictNamespaces=yes
# Its own session keyring, not the user's: it reads credentials from files, never the kernel keyring.
KeyringMode=private
# Native system calls only (no 32-bit ABI tricks).
SystemCallArchitectures=native
# The socket (AF_UNIX) and provider APIs (AF_INET/6); no netlink, packet or exotic sockets.
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
# A call outside the lists below fails with EPERM instead of killing the process with SIGSYS, the
# default: Node 20 (the codex launcher) probes pkey_alloc at start and copes with an error, not a kill.
SystemCallErrorNumber=EPERM
# What a service normally needs, plus memory protection keys (Node's probe, then it can use them) ...
SystemCallFilter=@system-service @pkey
# ... but nothing privileged (chown, setuid, ...) and no resource-limit or scheduling changes.
SystemCallFilter=~@privileged @resources
# MemoryDenyWriteExecute= is left out: Node's JIT (the codex launcher) needs writable code pages.

[Install]
WantedBy=default.target
"""


def systemd_socket(listen_stream: str) -> str:
    """``bhogad.socket``; ``listen_stream`` is the socket path in unit syntax."""
    return f"""\
# The socket harnesses connect to, held by systemd so connections made while bhogad starts or
# restarts wait instead of failing (written by `bhoga service install`).
[Unit]
Description=bhoga daemon socket

[Socket]
ListenStream={listen_stream}
SocketMode=0600
DirectoryMode=0700
FileDescriptorName=rpc
Accept=no
RemoveOnStop=yes

[Install]
WantedBy=sockets.target
"""


def launchd_plist(
    argv: Sequence[str], socket_path: str, log_path: str, environment: Mapping[str, str]
) -> bytes:
    """The LaunchAgent. Every path must be absolute: launchd expands neither ``~`` nor variables."""
    agent = {
        "Label": LABEL,
        "ProgramArguments": list(argv),
        # Polling must run even before a client connects.
        "RunAtLoad": True,
        # Restart after a crash, not after a clean exit (a bare true respawns on every exit). A bad
        # config.yaml does not exit: a launchd-started bhogad answers clients with the error instead.
        "KeepAlive": {"SuccessfulExit": False},
        # launchd's own default, written down: at most one respawn per 10 s after a crash.
        "ThrottleInterval": 10,
        # SIGTERM, then SIGKILL after this: above server.shutdown_grace_s (5 s), as TimeoutStopSec=.
        "ExitTimeOut": 15,
        "ProcessType": "Background",
        # State, socket and logs are private to the user.
        "Umask": 0o077,
        "EnvironmentVariables": {"BHOGA_SOCKET": socket_path, **environment},
        # SockPathMode is decimal in the plist: 384 is 0o600.
        "Sockets": {"Listeners": {"SockPathName": socket_path, "SockPathMode": 0o600, "SockType": "stream"}},
        "StandardOutPath": log_path,
        "StandardErrorPath": log_path,
    }
    return plistlib.dumps(agent, sort_keys=False)


def repository_files() -> dict[str, bytes]:
    """The files kept in the repository, by path relative to its root."""
    return {
        f"systemd/{UNIT}.service": systemd_service(DEFAULT_EXEC, {"BHOGA_SOCKET": DEFAULT_SOCKET}).encode(),
        f"systemd/{UNIT}.socket": systemd_socket(DEFAULT_SOCKET).encode(),
        f"launchd/{LABEL}.plist.in": launchd_plist(
            [PLACEHOLDER_EXEC], PLACEHOLDER_SOCKET, PLACEHOLDER_LOG, {}
        ),
    }
