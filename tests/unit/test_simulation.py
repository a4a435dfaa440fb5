"""The simulated week (bench/simulate.py), small enough for CI: pace must leave less quota unspent at
resets and spend less on overflow than headroom, without sending more calls to exhausted providers."""

from __future__ import annotations

import importlib.util
import sys
from datetime import timedelta
from pathlib import Path
from types import ModuleType

from bhoga.quota.headers import read_response

BENCH = Path(__file__).resolve().parents[2] / "bench" / "simulate.py"


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_simulate", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_simulate"] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


sim = load()


def test_pace_beats_headroom_on_a_small_week() -> None:
    worlds = [sim.scenario(small=True, seed=seed) for seed in range(1, 5)]
    headroom = sim.simulate("headroom", worlds)
    pace = sim.simulate("pace", worlds)
    assert headroom.calls == pace.calls > 3000 and headroom.unserved == pace.unserved == 0
    # Quota left to lapse at the weekly resets: pace spends the account that resets first.
    assert pace.unspent_pct < headroom.unspent_pct / 2, (pace.unspent_pct, headroom.unspent_pct)
    # What that saves later in the week: fewer calls on the paid key.
    assert pace.overflow_usd < 0.75 * headroom.overflow_usd, (pace.overflow_usd, headroom.overflow_usd)
    assert pace.overflow < headroom.overflow
    # And no more calls refused by a provider that had already run dry.
    assert pace.misrouted <= headroom.misrouted, (pace.misrouted, headroom.misrouted)


def test_the_simulated_provider_speaks_the_real_headers() -> None:
    """The meters answer in Claude's unified-header format, read by the daemon's own parser."""
    world = sim.scenario(small=True, seed=1)
    meter = world.meters[0]
    now = sim.WEEK_START + timedelta(hours=1)
    meter.spend(now, meter.five_cap * 0.37)
    windows = {w.key: w for w in read_response(meter.headers(now), now=now).windows}
    assert windows["burst"].pct_used == 37
    assert windows["burst"].resets_at == (now + timedelta(hours=5)).replace(microsecond=0)
    assert round(windows["weekly"].pct_used) == round(100 * meter.week_used / meter.week_cap)
    meter.spend(now, meter.five_cap)
    reading = read_response(meter.headers(now), status_code=429, now=now)
    assert reading.cooldown_until == windows["burst"].resets_at
