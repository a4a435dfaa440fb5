"""Write bhoga's routing into Hermes's ``config.yaml`` the way Hermes 0.19 reads it.

Three layers, so each can be tested on its own:

- ``plan_hermes`` turns a ranking into a ``HermesPlan`` (pure);
- ``edit_hermes_config`` applies a plan to the text of a config file (pure; a round-trip YAML edit,
  so the user's comments, key order and unknown keys survive);
- ``write_hermes_config`` / ``apply_to_hermes`` read, edit and atomically rewrite the file.

ruamel.yaml is imported inside functions only: ``import bhoga`` must not pay for it.
What Hermes reads is recorded in ``docs/hermes.md``; ``tests/hermes_compat`` checks it against the
real package.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import os
import re
import stat
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

import msgspec

from bhoga.families import hermes_api_mode, hermes_provider, hermes_unusable_reason, to_hermes_model

if TYPE_CHECKING:
    from bhoga.protocol import Ranking, RouterRecommendation

log = logging.getLogger("bhoga.hermes")

#: The Hermes release these rules were checked against (``tests/hermes_compat`` installs it).
HERMES_VERSION: Final = "0.19.0"
#: ``DEFAULT_CONFIG["_config_version"]`` in that release.
HERMES_CONFIG_VERSION: Final = 33

#: ``DEFAULT_CONFIG["auxiliary"]`` task names in Hermes 0.19 (``transient_retries`` is a scalar).
HERMES_AUX_TASKS: Final = (
    "vision",
    "web_extract",
    "compression",
    "skills_hub",
    "approval",
    "mcp",
    "title_generation",
    "memory_query_rewrite",
    "tts_audio_tags",
    "triage_specifier",
    "kanban_decomposer",
    "profile_describer",
    "goal_judge",
    "curator",
    "monitor",
    "background_review",
    "moa_reference",
    "moa_aggregator",
)

#: What ``write_auxiliary=True`` pins: the library's task list without the two Hermes removed
#: (``session_search``, ``flush_memories``). ``compression`` matters most: Hermes's ``auto``
#: compression does not follow a fallback after a 429 (hermes-agent issue #15714).
DEFAULT_AUX_TASKS: Final = ("vision", "web_extract", "compression", "skills_hub", "approval", "mcp")

#: Hermes ids (and the aliases Hermes accepts for them) whose fallback entries bhoga owns. Entries
#: for other providers (a local model, nous, ...) are the user's and are kept after bhoga's.
_OWNED_PROVIDERS: Final = frozenset(
    {"anthropic", "claude", "openai-codex", "codex", "openai-api", "copilot", "github", "github-copilot"}
    | {"openrouter"}
)

#: Keys that bind a ``model``/``auxiliary.<task>`` block to one provider's endpoint or credential.
#: Left in place after a provider switch, Hermes would send the new provider's requests to the old
#: URL, or the old provider's key to the new one.
_PROVIDER_BOUND_KEYS: Final = ("base_url", "api_base", "api_key", "key_env", "api_key_env", "api_mode")

#: ``compression.summary_*`` were removed by Hermes PR #8992; config version 17 moved them.
_SUMMARY_KEYS: Final = {
    "summary_model": "model",
    "summary_provider": "provider",
    "summary_base_url": "base_url",
}

BACKUP_SUFFIX: Final = ".bhoga.bak"


class Rankable(Protocol):
    """What ``apply_to_hermes`` needs from a router: ``bhoga.Router`` or anything shaped like it."""

    def best_for(self, model: str) -> RouterRecommendation | None: ...


class HermesRoute(msgspec.Struct, frozen=True, kw_only=True):
    """One provider/model pair as Hermes names it."""

    provider: str
    model: str
    #: The bhoga provider id it came from.
    source: str


class HermesPlan(msgspec.Struct, frozen=True, kw_only=True):
    """What to write: the main route, the fallback order and the auxiliary tasks to pin."""

    requested: str
    main: HermesRoute
    api_mode: str
    fallbacks: tuple[HermesRoute, ...] = ()
    aux_tasks: tuple[str, ...] = ()
    #: Candidates left out of the fallback list, each with why.
    skipped: tuple[str, ...] = ()

    def signature(self) -> tuple[object, ...]:
        """What decides the file's content: equal signatures need no rewrite."""
        return (self.main, self.api_mode, self.fallbacks, self.aux_tasks)

    def without(self, providers: frozenset[str], why: str) -> HermesPlan | None:
        """The plan with routes to ``providers`` dropped (the next one up becomes main), or None."""
        routes = [r for r in (self.main, *self.fallbacks) if r.provider not in providers]
        if not routes:
            return None
        dropped = tuple(f"{r.source}: {why}" for r in (self.main, *self.fallbacks) if r.provider in providers)
        return msgspec.structs.replace(
            self,
            main=routes[0],
            api_mode=hermes_api_mode(routes[0].provider, routes[0].model),
            fallbacks=tuple(routes[1:]),
            skipped=self.skipped + dropped,
        )


class HermesApplyResult(msgspec.Struct, kw_only=True):
    """The outcome of one apply; ``ok`` is what ``apply_to_hermes`` returns."""

    ok: bool
    path: str
    #: Why it failed, or a one-line summary of what was done.
    reason: str
    changed: bool = False
    dry_run: bool = False
    plan: HermesPlan | None = None
    #: Keys removed from the file, as dotted paths.
    removed: list[str] = msgspec.field(default_factory=list)
    warnings: list[str] = msgspec.field(default_factory=list)
    diff: str = ""
    backup: str | None = None

    def __bool__(self) -> bool:
        return self.ok


class HermesConfigError(ValueError):
    """The config cannot be edited safely (not YAML, not a mapping, a section of the wrong type)."""


# --------------------------------------------------------------------------------------------------
# Planning (pure)


def hermes_home(environ: Mapping[str, str] | None = None) -> Path:
    """``$HERMES_HOME``, else ``~/.hermes`` (``hermes_constants.get_hermes_home``)."""
    env = os.environ if environ is None else environ
    value = env.get("HERMES_HOME", "").strip()
    return Path(value).expanduser() if value else Path.home() / ".hermes"


def hermes_config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    return Path(explicit).expanduser() if explicit else hermes_home() / "config.yaml"


def aux_tasks_for(write_auxiliary: bool | Iterable[str]) -> tuple[str, ...]:
    """``True`` → the default tasks, ``False`` → none, or the named tasks (checked against Hermes's)."""
    if write_auxiliary is True:
        return DEFAULT_AUX_TASKS
    if write_auxiliary is False:
        return ()
    tasks = tuple(dict.fromkeys(write_auxiliary))
    unknown = [t for t in tasks if t not in HERMES_AUX_TASKS]
    if unknown:
        raise ValueError(
            f"unknown Hermes auxiliary task(s) {unknown}; Hermes 0.19 has {list(HERMES_AUX_TASKS)}"
        )
    return tasks


def _route(pid: str, model: str) -> HermesRoute | None:
    target = hermes_provider(pid)
    return (
        None
        if target is None
        else HermesRoute(provider=target, model=to_hermes_model(pid, model), source=pid)
    )


def plan_from_ranking(ranking: Ranking, model: str, aux_tasks: Sequence[str] = ()) -> HermesPlan | str:
    """The plan for ``ranking``, or why there is none.

    The first eligible candidate Hermes can use is the main route; the other eligible ones, in
    ranking order, are the fallbacks. A candidate that maps to a route already listed is skipped:
    Hermes skips a fallback equal to the current provider/model, and ``claude_code`` and
    ``anthropic_api`` are the same ``anthropic`` provider to Hermes (its credential pool rotates
    between the subscription and the key on its own).
    """
    routes: list[HermesRoute] = []
    skipped: list[str] = []
    for cand in ranking.candidates:
        if not cand.eligible:
            continue
        route = _route(cand.provider_id, model)
        if route is None:
            skipped.append(f"{cand.provider_id}: {hermes_unusable_reason(cand.provider_id)}")
        elif any((r.provider, r.model) == (route.provider, route.model) for r in routes):
            skipped.append(f"{cand.provider_id}: same Hermes route as an earlier one ({route.provider})")
        else:
            routes.append(route)
    if not routes and ranking.recommendation is not None:
        # A daemon that sent no receipt still named a winner.
        route = _route(ranking.recommendation.provider_id, model)
        if route is not None:
            routes.append(route)
    if not routes:
        rejected = "; ".join(f"{c.provider_id}: {c.reason}" for c in ranking.candidates if not c.eligible)
        why = f" ({rejected})" if rejected else ""
        return f"no provider Hermes can use is available for {model!r}{why}"
    main = routes[0]
    return HermesPlan(
        requested=model,
        main=main,
        api_mode=hermes_api_mode(main.provider, main.model),
        fallbacks=tuple(routes[1:]),
        aux_tasks=tuple(aux_tasks),
        skipped=tuple(skipped),
    )


def plan_hermes(router: Rankable, model: str, aux_tasks: Sequence[str] = ()) -> HermesPlan | str:
    """Ask ``router`` (``rank`` when it has it, else ``best_for``) and plan; a str says why not."""
    rank = getattr(router, "rank", None)
    if callable(rank):
        return plan_from_ranking(rank(model), model, aux_tasks)
    rec = router.best_for(model)
    if rec is None:
        return f"no provider available for {model!r}"
    route = _route(rec.provider_id, model)
    if route is None:
        return f"{rec.provider_id}: {hermes_unusable_reason(rec.provider_id)}"
    return HermesPlan(
        requested=model,
        main=route,
        api_mode=hermes_api_mode(route.provider, route.model),
        aux_tasks=tuple(aux_tasks),
    )


# --------------------------------------------------------------------------------------------------
# Editing (pure: text in, text out)


#: Plain scalars that YAML 1.1 (Hermes parses with PyYAML) reads as something other than a string.
_YAML11_NON_STR: Final = re.compile(
    r"""(?x)^(?:
        [-+]?(?:\d[\d_]*)?\.?[\d_]*(?:[eE][-+]?\d+)?   # ints, floats, 1_000
      | [-+]?\d[\d_]*(?::[0-5]?\d)+(?:\.[\d_]*)?      # sexagesimal 1:30
      | 0x[0-9a-fA-F_]+ | 0b[01_]+
      | \d{4}-\d\d?-\d\d?(?:[Tt ].*)?                 # dates and timestamps
      | [-+]?\.(?:inf|Inf|INF) | \.(?:nan|NaN|NAN)
      | y|Y|yes|Yes|YES|n|N|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF
      | null|Null|NULL|~|
    )$"""
)


def _scalar(value: str) -> Any:
    """``value`` as a string node that both YAML 1.2 (ruamel) and 1.1 (Hermes) read as a string."""
    from ruamel.yaml.scalarstring import DoubleQuotedScalarString

    return DoubleQuotedScalarString(value) if _YAML11_NON_STR.match(value) else value


_KEY_ONLY: Final = re.compile(r"""^(?:[^#'"\s-][^#'"]*|'[^']*'|"[^"]*")\s*:\s*(?:#.*)?$""")


def _guess_indent(text: str) -> tuple[int, int, int]:
    """(mapping indent, sequence indent, dash offset) as the file uses them.

    ruamel re-indents the whole document with one setting, so it has to match the file's own or
    every nested line would show up in the diff. Defaults are what Hermes's own writer emits.
    """
    mapping: int | None = None
    seq: tuple[int, int] | None = None
    parent: int | None = None
    for line in text.splitlines():
        body = line.strip()
        if not body or body.startswith("#"):
            continue
        lead = len(line) - len(line.lstrip(" "))
        if parent is not None:
            if body == "-" or body.startswith("- "):
                if seq is None:
                    rest = body[1:]
                    seq = (lead - parent, lead - parent + 1 + len(rest) - len(rest.lstrip(" ")))
            elif mapping is None and lead > parent:
                mapping = lead - parent
        if mapping is not None and seq is not None:
            break
        parent = lead if _KEY_ONLY.match(body) else None
    offset, sequence = seq if seq is not None else (0, 2)
    return mapping or 2, max(sequence, offset + 2), offset


def _yaml() -> Any:
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    # Never re-wrap a user's long lines.
    yaml.width = 1 << 16
    return yaml


class _Edit:
    """One edit of a loaded document; collects what it removed."""

    def __init__(self, doc: Any, plan: HermesPlan) -> None:
        self.doc = doc
        self.plan = plan
        self.removed: list[str] = []
        self.warnings: list[str] = []

    def section(self, key: str) -> Any:
        """The mapping at ``key``, created when absent or null; a wrong type is refused."""
        from ruamel.yaml.comments import CommentedMap

        value = self.doc.get(key)
        if value is None:
            value = CommentedMap()
            self.doc[key] = value
        elif not isinstance(value, dict):
            raise HermesConfigError(f"`{key}` is a {type(value).__name__}, not a mapping; fix it by hand")
        return value

    def drop_bound_keys(
        self, block: Any, where: str, old_provider: object, new_provider: str, rewritten: tuple[str, ...] = ()
    ) -> None:
        if str(old_provider or "").strip().lower() in ("", new_provider):
            return
        for key in _PROVIDER_BOUND_KEYS:
            if key in block and key not in rewritten:
                del block[key]
                self.removed.append(f"{where}.{key}")

    def model(self) -> None:
        from ruamel.yaml.comments import CommentedMap

        plan = self.plan
        current = self.doc.get("model")
        block: Any
        if not isinstance(current, dict):
            if current is not None and not isinstance(current, str):
                raise HermesConfigError(f"`model` is a {type(current).__name__}; fix it by hand")
            block = CommentedMap()
            if "model" in self.doc:
                self.doc["model"] = block
            else:
                self.doc.insert(0, "model", block)
        else:
            block = current
            self.drop_bound_keys(block, "model", block.get("provider"), plan.main.provider, ("api_mode",))
        block["provider"] = _scalar(plan.main.provider)
        block["default"] = _scalar(plan.main.model)
        block["api_mode"] = _scalar(plan.api_mode)
        # Hermes reads ``default`` first; a lingering alias would only mislead a reader of the file.
        for alias in ("model", "name"):
            if alias in block:
                del block[alias]
                self.removed.append(f"model.{alias}")
        # Root-level ``provider``/``base_url`` are legacy; Hermes folds them into an empty ``model.*``.
        for key in ("provider", "base_url", "api_base"):
            if key in self.doc:
                del self.doc[key]
                self.removed.append(key)

    def _entry(self, route: HermesRoute, existing: Sequence[Any]) -> Any:
        from ruamel.yaml.comments import CommentedMap

        # Reuse the user's own entry for the same route: it may carry extra keys and comments.
        for entry in existing:
            if (str(entry.get("provider", "")).strip().lower(), str(entry.get("model", "")).strip()) == (
                route.provider,
                route.model,
            ):
                return entry
        entry = CommentedMap()
        entry["provider"] = _scalar(route.provider)
        entry["model"] = _scalar(route.model)
        return entry

    def fallbacks(self, key: str, container: Any, where: str) -> None:
        from ruamel.yaml.comments import CommentedSeq

        raw = container.get(key)
        if isinstance(raw, dict):
            raw = [raw]
        elif raw is not None and not isinstance(raw, list):
            raise HermesConfigError(f"`{where}` is a {type(raw).__name__}, not a list; fix it by hand")
        entries = [e for e in (raw or []) if isinstance(e, dict)]
        owned = [e for e in entries if str(e.get("provider", "")).strip().lower() in _OWNED_PROVIDERS]
        kept = [e for e in (raw or []) if not any(e is o for o in owned)]
        new = [self._entry(route, owned) for route in self.plan.fallbacks]
        if not new and not kept:
            if key in container:
                del container[key]
                self.removed.append(where)
            return
        seq = raw if isinstance(raw, CommentedSeq) else CommentedSeq()
        seq[:] = new + kept
        container[key] = seq

    def auxiliary(self) -> None:
        if not self.plan.aux_tasks:
            return
        aux = self.section("auxiliary")
        from ruamel.yaml.comments import CommentedMap

        for task in self.plan.aux_tasks:
            block = aux.get(task)
            if block is None:
                block = CommentedMap()
                aux[task] = block
            elif not isinstance(block, dict):
                raise HermesConfigError(f"`auxiliary.{task}` is a {type(block).__name__}; fix it by hand")
            self.drop_bound_keys(block, f"auxiliary.{task}", block.get("provider"), self.plan.main.provider)
            block["provider"] = _scalar(self.plan.main.provider)
            block["model"] = _scalar(self.plan.main.model)
            # Hermes's per-task chain: without it a pinned task fails where the main model would fail over.
            self.fallbacks("fallback_chain", block, f"auxiliary.{task}.fallback_chain")

    def summary_keys(self, version: int | None) -> None:
        """Retire ``compression.summary_*`` exactly as Hermes would, so behaviour does not change.

        Below config version 17 Hermes's own migration moves them into ``auxiliary.compression``
        (only into empty fields), so do the same move now; from 17 on nothing reads them, so drop them.
        """
        comp = self.doc.get("compression")
        if not isinstance(comp, dict) or not any(k in comp for k in _SUMMARY_KEYS):
            return
        # When bhoga pins auxiliary.compression itself, the old values have nowhere to go.
        migrate = (version is None or version < 17) and "compression" not in self.plan.aux_tasks
        for old, new in _SUMMARY_KEYS.items():
            if old not in comp:
                continue
            value = str(comp.pop(old) or "").strip()
            self.removed.append(f"compression.{old}")
            if not migrate or not value or (old == "summary_provider" and value == "auto"):
                continue
            target = self.section("auxiliary")
            block = target.get("compression")
            if block is None:
                from ruamel.yaml.comments import CommentedMap

                block = target["compression"] = CommentedMap()
            current = str(block.get(new) or "").strip()
            if not current or (new == "provider" and current == "auto"):
                block[new] = _scalar(value)
                self.warnings.append(
                    f"moved compression.{old} to auxiliary.compression.{new}, as Hermes would"
                )

    def version(self) -> tuple[int | None, bool]:
        """The file's config version (``None`` when unknown), and whether it was added now."""
        raw = self.doc.get("_config_version")
        if raw is None:
            # Without it Hermes treats the file as version 0 and replays every migration over it.
            self.doc["_config_version"] = HERMES_CONFIG_VERSION
            return None, True
        try:
            return int(raw), False
        except (TypeError, ValueError):
            self.warnings.append(f"_config_version {raw!r} is not a number; left as it is")
            return None, False


class EditOutcome(msgspec.Struct, kw_only=True):
    text: str
    #: The plan as written: routes to providers this config disables are taken out.
    plan: HermesPlan
    removed: list[str]
    warnings: list[str]


def _respect_disabled(doc: Any, plan: HermesPlan) -> HermesPlan:
    """Leave out providers the user switched off in Hermes (``providers.<id>.enabled: false``).

    That flag is the one part of a ``providers.<built-in id>`` block Hermes honours: it refuses to
    start on such a provider ("provider 'x' is disabled"), so routing Hermes there would break it.
    """
    providers = doc.get("providers")
    if not isinstance(providers, dict):
        return plan
    off = frozenset(
        str(k).strip().lower()
        for k, v in providers.items()
        if isinstance(v, dict) and v.get("enabled") is False
    )
    if not off & {r.provider for r in (plan.main, *plan.fallbacks)}:
        return plan
    kept = plan.without(off, "disabled in this Hermes config (providers.<id>.enabled: false)")
    if kept is None:
        names = ", ".join(sorted(off))
        raise HermesConfigError(f"every provider bhoga would use is disabled here (providers: {names})")
    return kept


def edit_hermes_config(text: str, plan: HermesPlan) -> EditOutcome:
    """Apply ``plan`` to config text; raises ``HermesConfigError`` when it cannot be edited safely."""
    from ruamel.yaml.comments import CommentedMap
    from ruamel.yaml.error import YAMLError

    yaml = _yaml()
    newline = "\r\n" if "\r\n" in text else "\n"
    text = text.replace("\r\n", "\n")
    try:
        doc = yaml.load(text)
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise HermesConfigError(f"not valid YAML{where}: {problem}") from exc
    preamble = ""
    if doc is None:
        # Empty, or only comments: ruamel has no node to hang those comments on, so keep them above.
        preamble = text if text.strip() else ""
        doc = CommentedMap()
    elif not isinstance(doc, dict):
        raise HermesConfigError(f"the top level is a {type(doc).__name__}, not a mapping")
    plan = _respect_disabled(doc, plan)
    edit = _Edit(doc, plan)
    old_version, added_version = edit.version()
    edit.summary_keys(old_version)
    edit.model()
    edit.fallbacks("fallback_providers", doc, "fallback_providers")
    edit.auxiliary()
    if isinstance(doc.get("fallback_model"), dict | list) and doc.get("fallback_model"):
        edit.warnings.append("the legacy fallback_model is tried after bhoga's fallback_providers")
    if added_version:
        # A version we added goes last, where Hermes's own writer puts it.
        doc.move_to_end("_config_version")

    mapping, sequence, offset = _guess_indent(text)
    yaml.indent(mapping=mapping, sequence=sequence, offset=offset)
    from io import StringIO

    out = StringIO()
    yaml.dump(doc, out)
    body = out.getvalue()
    if preamble:
        body = preamble.rstrip("\n") + "\n" + body
    return EditOutcome(
        text=body.replace("\n", newline), plan=plan, removed=edit.removed, warnings=edit.warnings
    )


def unified_diff(before: str, after: str, path: str) -> str:
    return "".join(
        difflib.unified_diff(
            before.splitlines(keepends=True),
            after.splitlines(keepends=True),
            f"{path} (now)",
            f"{path} (bhoga)",
        )
    )


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
    """Like ``apply_to_hermes``, but returns everything: reason, diff, backup, warnings."""
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
