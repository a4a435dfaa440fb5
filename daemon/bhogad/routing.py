"""Ranking providers for a model. Pure: state and config in, a receipt out.

A strategy turns a provider's standing into a sort key. ``headroom`` is the library's rule (most
remaining in the tightest window; priority breaks ties; unknown after known).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime

from bhoga.families import model_family, to_hermes_model
from bhoga.protocol import Candidate, Health, Ranking, RouterRecommendation

from bhogad.config import Config
from bhogad.state import ModelView, ProviderState, model_view, new_provider

#: Sort key for an eligible candidate: smaller sorts first.
Strategy = Callable[[ModelView, int], tuple[float, ...]]


def headroom(view: ModelView, priority: int) -> tuple[float, ...]:
    known = view.quota_pct >= 0
    # Unhealthy providers are demoted below every healthy one, not dropped: they may be all there is.
    unhealthy = view.health is Health.UNHEALTHY
    return (float(unhealthy), float(not known), -view.quota_pct, float(priority))


STRATEGIES: dict[str, Strategy] = {"headroom": headroom}


def _describe(view: ModelView) -> str:
    if view.tightest is None:
        left = "quota unknown"
    else:
        w = view.tightest
        left = f"{w.pct_remaining:.0f}% left in '{w.key}' (tightest)"
    if view.health is not Health.HEALTHY:
        left += f"; {view.health.value}"
    return left


def rank(model: str, providers: Mapping[str, ProviderState], cfg: Config, now: datetime) -> Ranking:
    return rank_until(model, providers, cfg, now)[0]


def rank_until(
    model: str,
    providers: Mapping[str, ProviderState],
    cfg: Config,
    now: datetime,
) -> tuple[Ranking, datetime | None]:
    """The ranking, and the moment it changes by time alone (so it can be reused until then)."""
    family = model_family(model)
    families = cfg.routing.families
    order = families.get(family, families.get("other", []))
    strategy_name = cfg.routing.strategy if cfg.routing.strategy in STRATEGIES else "headroom"
    strategy = STRATEGIES[strategy_name]

    changes_at: datetime | None = None
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
        else:
            key = strategy(view, priority)
            candidate.eligible = True
            candidate.reason = _describe(view)
            eligible.append((key, candidate))

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
