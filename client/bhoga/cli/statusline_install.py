"""``bhoga statusline --install``: put ``bhoga statusline`` into Claude Code's settings.

Claude Code reads ``statusLine`` from ``~/.claude/settings.json`` (``$CLAUDE_CONFIG_DIR/settings.json``
when set). The file is edited, not rewritten from scratch: every other key is kept in order, a backup
is written beside it first, and the new file replaces the old atomically. A statusline already
configured is never dropped silently: ``--chain`` keeps it, running after bhoga's own segment.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import shlex
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def settings_path(explicit: str | None = None) -> Path:
    if explicit:
        return Path(explicit).expanduser()
    config_dir = os.environ.get("CLAUDE_CONFIG_DIR", "").split(",")[0].strip()
    base = Path(config_dir).expanduser() if config_dir else Path.home() / ".claude"
    return base / "settings.json"


def our_command() -> str:
    """``bhoga statusline`` by absolute path when bhoga is installed, so Claude Code's PATH does not
    matter."""
    running = Path(sys.argv[0])
    if running.name == "bhoga" and running.is_file():
        found: str | None = str(running.absolute())  # the bhoga being run now, wherever it lives
    else:
        found = shutil.which("bhoga")
    return f"{shlex.quote(found)} statusline" if found else "bhoga statusline"


def is_ours(command: str) -> bool:
    words = shlex.split(command) if command else []
    return len(words) >= 2 and Path(words[0]).name == "bhoga" and words[1] == "statusline"


def plan(settings: dict[str, Any], command: str, chain: bool) -> tuple[dict[str, Any] | None, str]:
    """The new settings (None: leave the file alone) and a sentence saying what happens."""
    current = settings.get("statusLine")
    existing = current.get("command") if isinstance(current, dict) else None
    if isinstance(existing, str) and is_ours(existing):
        return None, f"already installed: statusLine runs {existing!r}"
    if current is not None and not (isinstance(existing, str) and existing.strip()):
        return None, (
            f"statusLine is set to something bhoga cannot chain to ({json.dumps(current)}); "
            "edit it by hand to run `bhoga statusline`"
        )
    new_command = command
    if isinstance(existing, str):
        if not chain:
            return None, (
                f"a statusline is already configured: {existing!r}. Run `bhoga statusline --install "
                "--chain` to keep it (its output follows bhoga's), or replace it by hand"
            )
        new_command = f"{command} --chain-to {shlex.quote(existing)}"
    updated = dict(settings)
    entry: dict[str, Any] = dict(current) if isinstance(current, dict) else {}
    entry.update({"type": "command", "command": new_command})
    entry.setdefault("padding", 0)
    updated["statusLine"] = entry
    return updated, f"statusLine will run {new_command!r}"


def main(argv: Sequence[str], out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    parser = argparse.ArgumentParser(
        prog="bhoga statusline", description="Add `bhoga statusline` to Claude Code's settings."
    )
    parser.add_argument("--install", action="store_true", required=True)
    parser.add_argument("--dry-run", action="store_true", help="print the change as a diff; write nothing")
    parser.add_argument(
        "--chain", action="store_true", help="keep a statusline already configured, after bhoga's"
    )
    parser.add_argument("--settings", help="Claude Code's settings.json (default: ~/.claude/settings.json)")
    args = parser.parse_args(list(argv))
    path = settings_path(args.settings)
    try:
        before = path.read_text(encoding="utf-8") if path.exists() else ""
        settings = json.loads(before) if before.strip() else {}
    except (OSError, ValueError) as exc:
        err.write(f"bhoga: cannot read {path}: {exc}; nothing changed\n")
        return EXIT_FAILED
    if not isinstance(settings, dict):
        err.write(f"bhoga: {path} does not hold a JSON object; nothing changed\n")
        return EXIT_FAILED
    updated, message = plan(settings, our_command(), args.chain)
    if updated is None:
        out.write(message + "\n")
        return EXIT_OK if message.startswith("already installed") else EXIT_FAILED
    after = json.dumps(updated, indent=2, ensure_ascii=False) + "\n"
    if args.dry_run:
        out.writelines(
            difflib.unified_diff(
                before.splitlines(keepends=True), after.splitlines(keepends=True), str(path), f"{path} (new)"
            )
        )
        out.write(f"# {message} (dry run: nothing written)\n")
        return EXIT_OK
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            backup = path.with_name(f"{path.name}.bak-{time.strftime('%Y%m%dT%H%M%S')}")
            shutil.copy2(path, backup)
            out.write(f"backup: {backup}\n")
        tmp = path.with_name(f".{path.name}.bhoga-tmp")
        tmp.write_text(after, encoding="utf-8")
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except OSError as exc:
        err.write(f"bhoga: cannot write {path}: {exc}\n")
        return EXIT_FAILED
    out.write(f"{message}; written to {path}. Claude Code picks it up on its next refresh.\n")
    return EXIT_OK
