"""Ranking providers for a model. Pure: state and config in, a receipt out.

A strategy turns a provider's standing into a sort key, a headline score and a sentence for the
receipt. ``headroom`` is the library's rule (most remaining in the tightest window; priority breaks
ties; unknown after known). ``pace`` weighs what is left against how soon it resets and how fast it
is going (see ``pace.py``). Both demote unhealthy providers below the rest instead of dropping them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

from bhoga.protocol import Candidate, Health, Ranking, RouterRecommendation
from bhoga.quota.families import model_family, to_hermes_model
from bhogad.config import STRATEGY_NAMES, Config
from bhogad.domain import pace
from bhogad.domain.pace import Scored
from bhogad.domain.state import ModelView, ProviderState, model_view, new_provider

#: A strategy's verdict on an eligible candidate (its sort key: smaller sorts first).
Strategy = Callable[[ModelView, int], Scored]


def headroom(view: ModelView, priority: int) -> Scored:
    known = view.quota_pct >= 0
    # Unhealthy providers are demoted below every healthy one, not dropped: they may be all there is.
    unhealthy = view.health is Health.UNHEALTHY
    key = (float(unhealthy), float(not known), -view.quota_pct, float(priority))
    return Scored(key, view.quota_pct if known else None, _describe(view))


def pace_strategy(view: ModelView, priority: int) -> Scored:
    assert view.now is not None
    return pace.score(
        view.fresh,
        view.burns,
        view.now,
        paid=view.paid,
        health=view.health,
        priority=priority,
        quota_pct=view.quota_pct,
    )


STRATEGIES: dict[str, Strategy] = {"headroom": headroom, "pace": pace_strategy}
assert tuple(STRATEGIES) == STRATEGY_NAMES, "config.STRATEGY_NAMES must list every strategy"


def _describe(view: ModelView) -> str:
    if view.tightest is None:
        left = "quota unknown"
    else:
        w = view.tightest
        left = f"{w.pct_remaining:.0f}% left in '{w.key}' (tightest)"
    if view.health is not Health.HEALTHY:
        left += f"; {view.health.value}"
    return left


def rank(
    model: str,
    providers: Mapping[str, ProviderState],
    cfg: Config,
    now: datetime,
    blocked: Mapping[str, str] | None = None,
) -> Ranking:
    return rank_until(model, providers, cfg, now, blocked)[0]


def rank_until(
    model: str,
    providers: Mapping[str, ProviderState],
    cfg: Config,
    now: datetime,
    blocked: Mapping[str, str] | None = None,
) -> tuple[Ranking, datetime | None]:
    """The ranking, and the moment it changes by time alone (so it can be reused until then).

    ``blocked`` maps providers to skip onto why (a budget spent); they are listed with that reason.
    """
    family = model_family(model)
    families = cfg.routing.families
    order = families.get(family, families.get("other", []))
    strategy_name = cfg.routing.strategy if cfg.routing.strategy in STRATEGIES else "headroom"
    strategy = STRATEGIES[strategy_name]

    changes_at: datetime | None = None
    if strategy_name == "pace":
        # Projections slide with the clock (resets draw nearer, burn rates decay): no moment marks
        # the next change, so a pace ranking is only reused briefly.
        changes_at = now + timedelta(seconds=cfg.routing.pace_recompute_s)
    eligible: list[tuple[tuple[float, ...], Candidate]] = []
    rejected: list[Candidate] = []
    for pid in dict.fromkeys(order):
        pcfg = cfg.providers.get(pid)
        priority = pcfg.priority if pcfg else 99
        view = model_view(providers.get(pid) or new_provider(pid), model, pcfg, cfg, now)
        if view.changes_at is not None and (changes_at is None or view.changes_at < changes_at):
            changes_at = view.changes_at
        candidate = Candidate(
            provider_id=pid,
            priority=priority,
            eligible=False,
            reason="",
            quota_pct=view.quota_pct,
            status=view.status,
            tightest_window=view.tightest.key if view.tightest else None,
            hermes_model=to_hermes_model(pid, model),
        )
        if not view.available:
            candidate.reason = f"unavailable: {view.reason}"
            rejected.append(candidate)
        elif view.blocking is not None:
            candidate.reason = view.blocking
            rejected.append(candidate)
        elif blocked and pid in blocked:
            candidate.reason = blocked[pid]
            rejected.append(candidate)
        else:
            scored = strategy(view, priority)
            candidate.eligible = True
            candidate.score = scored.score
            candidate.reason = scored.note
            eligible.append((scored.key, candidate))

    eligible.sort(key=lambda pair: pair[0])
    candidates = [c for _, c in eligible] + rejected
    recommendation = None
    if eligible:
        best = eligible[0][1]
        best.reason = "chosen: " + best.reason
        recommendation = RouterRecommendation(
            provider_id=best.provider_id,
            model_id=model,
            quota_pct=best.quota_pct,
            status=best.status,
            hermes_model=best.hermes_model,
            priority=best.priority,
            reason=best.reason,
        )
    ranking = Ranking(
        model=model,
        family=family,
        strategy=strategy_name,
        candidates=candidates,
        recommendation=recommendation,
    )
    return ranking, changes_at
