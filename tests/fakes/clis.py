"""Fake ``codex``, ``gh``, ``security`` and ``claude`` executables, written into a directory that
tests put on PATH (or name as the provider's ``cli``).

Each fake is a small Python script that speaks its real counterpart's protocol. It reads how to
behave from ``<name>.json`` beside it, which a test may rewrite between polls, and appends what it
saw (argv, every JSON-RPC message) to ``<name>.log``. The ``codex`` fake follows the app-server
transcript of codex-cli 0.169: JSON lines without ``"jsonrpc"``, notifications interleaved with
replies, ``account/read`` failing offline while ``account/rateLimits/read`` answers, and a CLI that
exits at once on an approval policy it does not know (``-a untrusted`` was removed in 0.149).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

_PRELUDE = """#!{python}
import json, os, signal, sys, time
HERE = os.path.dirname(os.path.abspath(__file__))
NAME = {name!r}
with open(os.path.join(HERE, NAME + ".json")) as f:
    CFG = json.load(f)
def note(kind, **data):
    with open(os.path.join(HERE, NAME + ".log"), "a") as f:
        f.write(json.dumps(dict(kind=kind, **data)) + "\\n")
note("start", argv=sys.argv[1:], pid=os.getpid(), codex_home=os.environ.get("CODEX_HOME"))
"""

_CODEX = """
args = sys.argv[1:]
if "-a" in args and args[args.index("-a") + 1] not in ("on-request", "on-failure", "never"):
    print("error: invalid value for '--ask-for-approval'", file=sys.stderr)
    sys.exit(2)
if not args or args[-1] != "app-server":
    print("error: unexpected arguments", file=sys.stderr)
    sys.exit(2)
mode = CFG.get("mode", "ok")
if mode == "exit":
    sys.exit(CFG.get("code", 1))
if CFG.get("ignore_term"):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)

def send(msg):
    sys.stdout.write(json.dumps(msg) + "\\n")
    sys.stdout.flush()

initialized = False
for line in sys.stdin:
    try:
        msg = json.loads(line)
    except ValueError:
        continue
    note("recv", msg=msg)
    method, mid = msg.get("method"), msg.get("id")
    if method == "initialize":
        warning = {{"summary": "fake codex", "details": None}}
        send({{"method": "configWarning", "params": warning, "emittedAtMs": 1}})
        send({{"id": mid, "result": {{"userAgent": "bhoga/0.169.0", "codexHome": os.environ.get("CODEX_HOME"),
                                     "platformFamily": "unix", "platformOs": "linux"}}}})
    elif method == "initialized":
        initialized = True
    elif method == "account/read":
        failure = {{"code": -32603, "message": "selected workspace missing from routing discovery"}}
        send({{"error": failure, "id": mid}})
    elif method == "account/rateLimits/read":
        if not initialized:
            send({{"id": mid, "error": {{"code": -32600, "message": "Not initialized"}}}})
            continue
        if mode == "hang":
            with open(os.path.join(HERE, "codex.hung"), "w") as f:
                f.write(str(os.getpid()))
            while True:
                time.sleep(1)
        if mode == "overloaded":
            send({{"id": mid, "error": {{"code": -32001, "message": "Server overloaded; retry later."}}}})
            continue
        if mode == "junk":
            sys.stdout.write("not json at all\\n")
        time.sleep(CFG.get("delay_s", 0))
        send({{"method": "account/rateLimits/updated", "params": {{"rateLimits": {{"limitId": "codex",
              "primary": {{"usedPercent": 99, "windowDurationMins": 300, "resetsAt": 1}}}}}}}})
        status = {{"status": "disabled"}}
        send({{"method": "remoteControl/status/changed", "params": status, "emittedAtMs": 1}})
        if mode == "close":
            sys.exit(3)
        send({{"id": mid, "result": CFG.get("result")}})
    elif mid is not None:
        send({{"id": mid, "error": {{"code": -32601, "message": "method not found"}}}})
"""

_GH = """
args = sys.argv[1:]
if args[:2] == ["auth", "token"]:
    if CFG.get("token"):
        print(CFG["token"])
        sys.exit(0)
    print("no oauth token found for github.com", file=sys.stderr)
    sys.exit(1)
sys.exit(1)
"""

_SECURITY = """
args = sys.argv[1:]
service = args[args.index("-s") + 1] if "-s" in args else None
if args[:1] == ["find-generic-password"] and "-w" in args and service in CFG.get("items", {{}}):
    print(CFG["items"][service])
    sys.exit(0)
print("security: The specified item could not be found in the keychain.", file=sys.stderr)
sys.exit(44)
"""

_CLAUDE = """
if sys.argv[1:] == ["--version"]:
    print(CFG.get("version", "2.1.99") + " (Claude Code)")
    sys.exit(0)
sys.exit(1)
"""

_BODIES = {"codex": _CODEX, "gh": _GH, "security": _SECURITY, "claude": _CLAUDE}


class FakeCli:
    def __init__(self, bin_dir: Path, name: str, **config: Any) -> None:
        self.bin_dir = bin_dir
        self.name = name
        self.path = bin_dir / name
        bin_dir.mkdir(parents=True, exist_ok=True)
        script = _PRELUDE.format(python=sys.executable, name=name) + _BODIES[name].format()
        self.path.write_text(script)
        self.path.chmod(0o755)
        self.configure(**config)

    def configure(self, **config: Any) -> None:
        (self.bin_dir / f"{self.name}.json").write_text(json.dumps(config))

    def log(self) -> list[dict[str, Any]]:
        path = self.bin_dir / f"{self.name}.log"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def starts(self) -> int:
        return sum(1 for entry in self.log() if entry["kind"] == "start")

    def received(self) -> list[dict[str, Any]]:
        return [entry["msg"] for entry in self.log() if entry["kind"] == "recv"]


def path_with(bin_dir: Path) -> str:
    """PATH with the fakes first and only system directories after (no real CLIs from the user)."""
    return os.pathsep.join([str(bin_dir), "/usr/bin", "/bin"])


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is dead for our purposes; /proc tells them apart on Linux.
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():
        try:
            return stat.read_text().split(") ")[1][:1] != "Z"
        except (OSError, IndexError):
            return True
    return True
