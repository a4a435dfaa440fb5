"""Ranking providers for a model. Pure: state and config in, a receipt out.

A strategy turns a provider's standing into a sort key, a headline score and a sentence for the
receipt. ``headroom`` is the library's rule (most remaining in the tightest window; priority breaks
ties; unknown after known). ``pace`` weighs what is left against how soon it resets and how fast it
is going (see ``pace.py``). Both demote unhealthy providers below the rest instead of dropping them,
and degraded ones below the healthy of their kind.

Both are sticky. The caller passes who holds the answer now (a harness session's provider, or the
last answer for the model): it is kept unless it became ineligible, fell into a worse class
(unhealthy, degraded, paid), or another candidate is better by ``routing.switch_margin`` plus what
switching would cost (a session's prompt cache, priced). Without that, a ranking that looks at its
own traffic and at noisy readings changes its answer on nearly every call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import NamedTuple

from bhoga.protocol import Candidate, Health, Ranking, RouterRecommendation, WindowKind
from bhoga.quota.families import model_family, to_hermes_model
from bhogad.config import STRATEGY_NAMES, Config
from bhogad.domain import pace
from bhogad.domain.pace import CLASS_LEN, TIER_KNOWN, TIER_UNKNOWN, Scored, value_of
from bhogad.domain.state import ModelView, ProviderState, half_open, model_view, new_provider

#: A strategy's verdict on an eligible candidate (its sort key: smaller sorts first).
Strategy = Callable[[ModelView, int], Scored]


def headroom(view: ModelView, priority: int) -> Scored:
    known = view.quota_pct >= 0
    # Unhealthy providers are demoted below every healthy one, not dropped: they may be all there is.
    # Degraded ones (failures piling up) come after the healthy ones that know their quota.
    unhealthy = float(view.health is Health.UNHEALTHY)
    degraded = float(view.health is Health.DEGRADED)
    kind = TIER_KNOWN if known else TIER_UNKNOWN
    key = (unhealthy, kind, degraded, -view.quota_pct, 0.0, float(priority))
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
        assert view.now is not None
        projected = pace.runs_out(pace.outlook(w, view.now, view.burns.get(w.key)))
        left = f"{w.pct_remaining:.0f}% left in '{w.key}' (tightest), {projected}"
    if view.health is not Health.HEALTHY:
        left += f"; {view.health.value}"
    return left


class Holder(NamedTuple):
    """Who holds the answer now, so the ranking moves it only for a clear reason."""

    provider_id: str
    #: For the receipt: ``session s42`` or ``the last answer``.
    who: str
    #: What switching away would cost in USD (a session's prompt cache); ``None`` if not known.
    switch_usd: float | None = None
    #: Whether to say so in the receipt when it is kept without contest (sessions: yes).
    explain: bool = False


def margin_for(cfg: Config, holder: Holder) -> float:
    """How much better another candidate must be before the answer leaves ``holder``."""
    return cfg.routing.switch_margin + (holder.switch_usd or 0.0) * cfg.routing.margin_per_usd


def _cost(holder: Holder) -> str:
    return f" (switching would cost ~${holder.switch_usd:.2f} of cache)" if holder.switch_usd else ""


def _stick(
    eligible: list[tuple[tuple[float, ...], Candidate]],
    rejected: list[Candidate],
    holder: Holder,
    margin: float,
) -> str | None:
    """Apply affinity to the sorted candidates in place; returns the note for the receipt."""
    best_key, best = eligible[0]
    held = next((i for i, (_, c) in enumerate(eligible) if c.provider_id == holder.provider_id), None)
    if held is None:
        gone = next((c for c in rejected if c.provider_id == holder.provider_id), None)
        if gone is None:
            return None
        return f"moved: {holder.who} was on {holder.provider_id}, now {gone.reason}"
    if held == 0:
        return f"kept: {holder.who} is on {best.provider_id}{_cost(holder)}" if holder.explain else None
    held_key, held_candidate = eligible[held]
    pid = held_candidate.provider_id
    if held_key[:CLASS_LEN] != best_key[:CLASS_LEN]:
        return f"moved: {holder.who} was on {pid}, which fell behind ({held_candidate.reason})"
    gain = value_of(best_key) - value_of(held_key)
    if gain >= margin:
        better = f"{best.provider_id} is better by {gain:.2f} (margin {margin:.2f})"
        return f"moved: {holder.who} was on {pid}; {better}"
    eligible.insert(0, eligible.pop(held))
    return (
        f"kept: {holder.who} is on {pid}{_cost(holder)}; {best.provider_id} is better by only "
        f"{gain:.2f} (margin {margin:.2f})"
    )


def reserve_reached(view: ModelView, reserve: Mapping[str, float]) -> str | None:
    """Why the provider is held back for its owner, if a window reached the reserve set for it.

    Stale readings count too: usage only grows within a window, so a stale figure at or below the
    reserve means the window is at least that spent now.
    """
    if not reserve:
        return None
    for w in view.windows:
        keep = reserve.get(w.key, reserve.get(w.name))
        if keep is not None and w.kind is WindowKind.QUOTA and w.pct_remaining <= keep:
            return f"reserve: keeping {keep:g}% of '{w.key}' for you ({w.pct_remaining:.0f}% left)"
    return None


def rank(
    model: str,
    providers: Mapping[str, ProviderState],
    cfg: Config,
    now: datetime,
    blocked: Mapping[str, str] | None = None,
    holder: Holder | None = None,
) -> Ranking:
    return rank_until(model, providers, cfg, now, blocked, holder)[0]


def rank_until(
    model: str,
    providers: Mapping[str, ProviderState],
    cfg: Config,
    now: datetime,
    blocked: Mapping[str, str] | None = None,
    holder: Holder | None = None,
) -> tuple[Ranking, datetime | None]:
    """The ranking, and the moment it changes by time alone (so it can be reused until then).

    ``blocked`` maps providers to skip onto why (a budget spent); they are listed with that reason.
    ``holder`` is who holds the answer now (see the module notes).
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
        elif pcfg is not None and (kept := reserve_reached(view, pcfg.reserve)) is not None:
            candidate.reason = kept
            rejected.append(candidate)
        else:
            scored = strategy(view, priority)
            candidate.eligible = True
            candidate.score = scored.score
            candidate.reason = scored.note
            if (held := providers.get(pid)) is not None and half_open(held, now):
                candidate.reason = "half-open after a cooldown, its next call is a trial; " + scored.note
            eligible.append((scored.key, candidate))

    eligible.sort(key=lambda pair: pair[0])
    affinity = _stick(eligible, rejected, holder, margin_for(cfg, holder)) if holder and eligible else None
    candidates = [c for _, c in eligible] + rejected
    recommendation = None
    if eligible:
        best = eligible[0][1]
        best.reason = "chosen: " + (f"{affinity}; " if affinity else "") + best.reason
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
