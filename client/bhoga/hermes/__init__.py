"""Write bhoga's routing into Hermes's ``config.yaml`` the way Hermes 0.19 reads it.

Three layers, so each can be tested on its own, each in its own module and all re-exported here:

- ``plan_hermes`` turns a ranking into a ``HermesPlan`` (pure; ``hermes_plan``);
- ``edit_hermes_config`` applies a plan to the text of a config file (pure; a round-trip YAML edit,
  so the user's comments, key order and unknown keys survive; ``hermes_edit``);
- ``write_hermes_config`` / ``apply_to_hermes`` read, edit and atomically rewrite the file (here).

ruamel.yaml is imported inside functions only: ``import bhoga`` must not pay for it.
What Hermes reads is recorded in ``docs/hermes.md``; ``tests/hermes_compat`` checks it against the
real package.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import msgspec

from bhoga.extras import NotInstalled as NotInstalled, require_hermes
from bhoga.hermes.edit import (
    EditOutcome as EditOutcome,
    edit_hermes_config as edit_hermes_config,
    unified_diff as unified_diff,
)
from bhoga.hermes.plan import (
    BACKUP_SUFFIX as BACKUP_SUFFIX,
    DEFAULT_AUX_TASKS as DEFAULT_AUX_TASKS,
    HERMES_AUX_TASKS as HERMES_AUX_TASKS,
    HERMES_CONFIG_VERSION as HERMES_CONFIG_VERSION,
    HERMES_VERSION as HERMES_VERSION,
    HermesApplyResult as HermesApplyResult,
    HermesConfigError as HermesConfigError,
    HermesPlan as HermesPlan,
    HermesRoute as HermesRoute,
    Rankable as Rankable,
    aux_tasks_for as aux_tasks_for,
    hermes_config_path as hermes_config_path,
    hermes_home as hermes_home,
    plan_from_ranking as plan_from_ranking,
    plan_hermes as plan_hermes,
)

log = logging.getLogger("bhoga.hermes")


# --------------------------------------------------------------------------------------------------
# Credentials Hermes will look for (names only; a secret is never read into a message)


def _dotenv_names(home: Path) -> dict[str, str]:
    """``$HERMES_HOME/.env``, which Hermes loads too: name → value, for presence and prefix checks."""
    found: dict[str, str] = {}
    with contextlib.suppress(OSError, UnicodeDecodeError):
        for line in (home / ".env").read_text(encoding="utf-8").splitlines():
            name, sep, value = line.strip().removeprefix("export ").partition("=")
            if sep and name.strip() and not name.startswith("#"):
                found[name.strip()] = value.strip().strip("'\"")
    return found


def copilot_token_source(environ: Mapping[str, str]) -> tuple[str | None, list[str]]:
    """Where Hermes will take a Copilot token from, in its order, and the problems on the way.

    Order (``hermes_cli/copilot_auth.resolve_copilot_token``): ``COPILOT_GITHUB_TOKEN``,
    ``GH_TOKEN``, ``GITHUB_TOKEN``, then ``gh auth token``. Hermes skips a classic PAT (``ghp_``) in
    an env var and moves on. Whether ``gh`` holds a usable token is not checked here (that would run
    it); only that it is installed where Hermes looks.
    """
    import shutil

    problems: list[str] = []
    for name in ("COPILOT_GITHUB_TOKEN", "GH_TOKEN", "GITHUB_TOKEN"):
        value = environ.get(name, "").strip()
        if not value:
            continue
        if value.startswith("ghp_"):
            problems.append(f"{name} holds a classic PAT (ghp_), which Hermes skips for Copilot")
            continue
        return name, problems
    for candidate in (shutil.which("gh"), "/opt/homebrew/bin/gh", "/usr/local/bin/gh", "~/.local/bin/gh"):
        if candidate and os.access(Path(candidate).expanduser(), os.X_OK):
            return "gh auth token", problems
    return None, problems


def hermes_credential_problem(
    hermes_pid: str, environ: Mapping[str, str] | None = None, home: Path | None = None
) -> str | None:
    """Why Hermes would fail to authenticate ``hermes_pid`` here, or ``None`` when it looks fine."""
    env = dict(os.environ if environ is None else environ)
    home = home or hermes_home(env)
    env = {**_dotenv_names(home), **env}

    def has(*names: str) -> bool:
        return any(env.get(n, "").strip() for n in names)

    if hermes_pid == "anthropic":
        creds = Path(env.get("HOME", str(Path.home()))) / ".claude" / ".credentials.json"
        if has("ANTHROPIC_API_KEY", "ANTHROPIC_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN") or creds.exists():
            return None
        return (
            "Hermes finds no Anthropic credential (ANTHROPIC_API_KEY, CLAUDE_CODE_OAUTH_TOKEN or ~/.claude)"
        )
    if hermes_pid == "openai-codex":
        auth = home / "auth.json"
        with contextlib.suppress(OSError, ValueError):
            if "openai-codex" in (msgspec.json.decode(auth.read_bytes()).get("providers") or {}):
                return None
        return f"Hermes has no Codex login in {auth}; run `hermes auth` (it can import ~/.codex/auth.json)"
    if hermes_pid == "openai-api":
        return None if has("OPENAI_API_KEY") else "OPENAI_API_KEY is not set for Hermes"
    if hermes_pid == "openrouter":
        return None if has("OPENROUTER_API_KEY") else "OPENROUTER_API_KEY is not set for Hermes"
    if hermes_pid == "copilot":
        source, problems = copilot_token_source(env)
        if source is None:
            problems.append(
                "Hermes finds no Copilot token (COPILOT_GITHUB_TOKEN, GH_TOKEN, GITHUB_TOKEN, gh)"
            )
            return "; ".join(problems)
    return None


# --------------------------------------------------------------------------------------------------
# The file


def _read(path: Path) -> tuple[str, bytes | None]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return "", None
    try:
        return raw.decode("utf-8-sig"), raw
    except UnicodeDecodeError as exc:
        raise HermesConfigError(f"not UTF-8 text (byte {exc.start})") from exc


def _atomic_write(path: Path, data: bytes, mode: int) -> None:
    """Temp file in the same directory, fsync, rename over, fsync the directory.

    A reader (Hermes re-reads on every message, keyed on mtime) sees the old file or the new one,
    never half of one, and a crash cannot leave a truncated config behind.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def write_plan(path: Path, plan: HermesPlan, *, dry_run: bool = False) -> HermesApplyResult:
    """Edit the config at ``path`` to match ``plan``; never raises for a bad config, reports it."""
    shown = str(path)
    # Edit the file a symlink points at, so a dotfiles link stays a link.
    target = Path(os.path.realpath(path))
    for _ in range(3):
        try:
            before, raw = _read(target)
            outcome = edit_hermes_config(before, plan)
        except HermesConfigError as exc:
            return HermesApplyResult(
                ok=False, path=shown, reason=f"{shown}: {exc}; left untouched", plan=plan
            )
        except OSError as exc:
            return HermesApplyResult(
                ok=False, path=shown, reason=f"{shown}: cannot read: {exc.strerror}", plan=plan
            )
        changed = outcome.text != before
        result = HermesApplyResult(
            ok=True,
            path=shown,
            reason=_summary(outcome.plan, changed, dry_run),
            changed=changed,
            dry_run=dry_run,
            plan=outcome.plan,
            removed=outcome.removed,
            warnings=outcome.warnings,
            diff=unified_diff(before, outcome.text, shown) if changed else "",
        )
        if dry_run or not changed:
            return result
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            # Someone (Hermes, an editor) wrote the file while we edited: start over from theirs.
            if _read(target)[1] != raw:
                continue
            # A new config may hold API keys later: private by default. An existing one keeps its mode.
            mode = stat.S_IMODE(target.stat().st_mode) if raw is not None else 0o600
            if raw is not None:
                backup = target.with_name(target.name + BACKUP_SUFFIX)
                _atomic_write(backup, raw, mode)
                result.backup = str(backup)
            _atomic_write(target, outcome.text.encode("utf-8"), mode)
        except HermesConfigError as exc:
            return HermesApplyResult(
                ok=False, path=shown, reason=f"{shown}: {exc}; left untouched", plan=plan
            )
        except OSError as exc:
            return HermesApplyResult(
                ok=False, path=shown, reason=f"{shown}: cannot write: {exc.strerror}", plan=plan
            )
        return result
    return HermesApplyResult(
        ok=False, path=shown, reason=f"{shown}: kept changing while being edited; left untouched", plan=plan
    )


def _summary(plan: HermesPlan, changed: bool, dry_run: bool) -> str:
    chain = " → ".join(f"{r.provider}:{r.model}" for r in (plan.main, *plan.fallbacks))
    verb = "would write" if dry_run and changed else "wrote" if changed else "already up to date:"
    return f"{verb} {chain} (api_mode {plan.api_mode})"


def write_hermes_config(
    router: Rankable,
    model: str,
    *,
    config_path: str | os.PathLike[str] | None = None,
    write_auxiliary: bool | Iterable[str] = False,
    dry_run: bool = False,
) -> HermesApplyResult:
    """Like ``apply_to_hermes``, but returns everything: reason, diff, backup, warnings.

    :raises NotInstalled: (an ``ImportError``) naming the extra, when ruamel.yaml is not installed.
    """
    require_hermes()  # before asking the daemon anything: say what is missing, not a traceback later
    path = hermes_config_path(config_path)
    plan = plan_hermes(router, model, aux_tasks_for(write_auxiliary))
    if isinstance(plan, str):
        return HermesApplyResult(ok=False, path=str(path), reason=plan)
    result = write_plan(path, plan, dry_run=dry_run)
    written = result.plan or plan
    for route in (written.main, *written.fallbacks):
        problem = hermes_credential_problem(route.provider, home=path.parent)
        if problem:
            result.warnings.append(f"{route.provider}: {problem}")
    return result


def apply_to_hermes(
    router: Rankable,
    model: str,
    config_path: str | os.PathLike[str] | None = None,
    write_auxiliary: bool | Iterable[str] = False,
) -> bool:
    """Write the best provider for ``model`` into Hermes's config; ``False`` when nothing was written.

    The library's signature and return type. A failure is logged with its reason; call
    ``write_hermes_config`` to get it as a value.
    """
    result = write_hermes_config(router, model, config_path=config_path, write_auxiliary=write_auxiliary)
    if result.ok:
        log.info("bhoga: %s → %s", result.reason, result.path)
    else:
        log.warning("bhoga: Hermes config not updated: %s", result.reason)
    return result.ok
