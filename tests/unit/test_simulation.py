"""A short run of the simulation (bench/simulate.py): the daemon's own ranking, affinity, cooldown
and pricing code routing a week of team traffic after a warm-up week, in every scenario, against a
clairvoyant that knows the true state and the future.

What is held here is what the README and docs/simulation.md claim from the full run: the default
strategy is no worse than headroom on any figure, pace leaves less quota unspent and spends less on
overflow, sessions stay put, and nobody beats the clairvoyant's zero misroutes.
"""

from __future__ import annotations

import importlib.util
import sys
from datetime import timedelta
from pathlib import Path
from types import ModuleType

import pytest

from bhoga.protocol import Source
from bhogad import config

BENCH = Path(__file__).resolve().parents[2] / "bench" / "simulate.py"


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_simulate", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_simulate"] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


sim = load()


@pytest.fixture(scope="module")
def results() -> dict[str, dict[str, object]]:
    # A sixth of the calls, each six times the size: the same demand, quick enough for CI.
    _, by_scenario = sim.run_all(weeks=2, seeds=1, scale=6.0)
    return by_scenario  # type: ignore[no-any-return]


def test_every_scenario_routes_every_call(results: dict[str, dict[str, object]]) -> None:
    assert set(results) == {s.name for s in sim.SCENARIOS}
    for by_strategy in results.values():
        calls = {r.calls for r in by_strategy.values()}  # type: ignore[attr-defined]
        assert len(calls) == 1 and calls.pop() > 300


def test_the_default_strategy_is_no_worse_than_headroom_anywhere(
    results: dict[str, dict[str, object]],
) -> None:
    default = config.RoutingConfig().strategy
    for name, by_strategy in results.items():
        assert sim.wins(by_strategy[default], by_strategy["headroom"]), name


def test_pace_spends_what_would_lapse(results: dict[str, dict[str, object]]) -> None:
    """Summed over the scenarios: pace leaves less quota unspent at resets and bills less overflow."""

    def total(strategy: str, figure: str) -> float:
        return sum(getattr(by[strategy], figure) for by in results.values())  # type: ignore[misc]

    assert total("pace", "unspent_pct") < total("headroom", "unspent_pct")
    assert total("pace", "overflow_usd") < total("headroom", "overflow_usd")


def test_sessions_stay_put_and_the_clairvoyant_is_a_bound(results: dict[str, dict[str, object]]) -> None:
    for name, by_strategy in results.items():
        for strategy, r in by_strategy.items():
            # A session hour of about 40 calls changes provider well under once.
            assert r.switches_per_session_h < 1.0, (name, strategy)  # type: ignore[attr-defined]
        assert by_strategy["clairvoyant"].misroutes == 0  # type: ignore[attr-defined]
        for strategy in ("headroom", "pace"):
            mis = by_strategy[strategy].misroutes  # type: ignore[attr-defined]
            assert mis >= 0
        if sim.SCENARIOS[[s.name for s in sim.SCENARIOS].index(name)].limits_per_week:
            # Episodes of refusals cost every strategy that cannot see them coming.
            assert by_strategy["headroom"].misroutes > 0  # type: ignore[attr-defined]


def test_the_meters_report_what_the_daemon_reads() -> None:
    world = sim.build(sim.SCENARIOS[0], weeks=2, seed=1, scale=6.0)
    meter = world.meters[0]
    now = sim.START + timedelta(hours=1)
    meter.spend(now, meter.five_cap * 0.37)
    exact = {w.key: w for w in meter.windows(now, Source.HEADERS, 0.0, None)}
    assert exact["burst"].pct_used == pytest.approx(37, abs=0.01)
    assert exact["burst"].resets_at == now + timedelta(hours=5)
    assert exact["weekly"].pct_used == pytest.approx(100 * meter.week_used / meter.week_cap, abs=0.01)
    # Every scenario of a seed has the same calls: only what the scenario changes differs.
    noisy = sim.build(sim.SCENARIOS[1], weeks=2, seed=1, scale=6.0)
    assert noisy.calls == world.calls
