"""Hermes integration, part 1: what to write. A ranking becomes a ``HermesPlan`` (pure).

The constants here record what Hermes 0.19 reads; ``tests/hermes_compat`` checks them against the
real package. ``bhoga.hermes`` is the public face of this module and its two siblings.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final, Protocol

import msgspec

from bhoga.quota.families import hermes_api_mode, hermes_provider, hermes_unusable_reason, to_hermes_model

if TYPE_CHECKING:
    from bhoga.protocol import Ranking, RouterRecommendation


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
OWNED_PROVIDERS: Final = frozenset(
    {"anthropic", "claude", "openai-codex", "codex", "openai-api", "copilot", "github", "github-copilot"}
    | {"openrouter"}
)

#: Keys that bind a ``model``/``auxiliary.<task>`` block to one provider's endpoint or credential.
#: Left in place after a provider switch, Hermes would send the new provider's requests to the old
#: URL, or the old provider's key to the new one.
PROVIDER_BOUND_KEYS: Final = ("base_url", "api_base", "api_key", "key_env", "api_key_env", "api_mode")

#: ``compression.summary_*`` were removed by Hermes PR #8992; config version 17 moved them.
SUMMARY_KEYS: Final = {
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
