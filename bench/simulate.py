"""A synthetic week of harness traffic, routed by each ranking strategy through the daemon's own code.

Three Claude-style subscriptions, each with a rolling 5-hour window and a weekly window that resets
on a different day, and an API key for overflow. Four harnesses (two coders, a nightly batch job and
a reviewer) ask for the best provider before every call, make it, and report it with the response's
``anthropic-ratelimit-unified-*`` headers, exactly as a harness using ``bhoga`` would. A person also
uses one account in the evenings without going through bhoga: that usage is visible to the daemon
only through polls (every 5 minutes) and later response headers, which is how a provider can run
dry while the daemon still believes it has quota.

The routing is the real thing: ``bhogad.domain.state`` folds in every reading and turn,
``bhogad.domain.routing`` ranks with the configured strategy, ``bhogad.domain.pricing`` prices the
overflow. Only the providers are simulated, as meters of quota-weighted tokens (output costs five
input tokens, a cache read a tenth, like their prices).

Reported per strategy:

* **unspent at weekly resets**: the percent of each account's weekly window still unused when it
  reset inside the week, summed over accounts (quota paid for and lost);
* **misrouted**: calls sent to a provider that was already exhausted (answered 429, then retried
  elsewhere), and the harness time they wasted;
* **overflow**: calls that had to go to the API key, and what they cost.

Run: ``.venv/bin/python bench/simulate.py [--small] [--seed N] [--write docs/simulation.md]``
"""

from __future__ import annotations

import argparse
import heapq
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bhoga.protocol import QuotaWindow, Source, Turn
from bhoga.quota.headers import read_response
from bhogad import config
from bhogad.domain import pricing, routing
from bhogad.domain.state import Availability, PollResult, ProviderState, apply_poll, apply_turn, new_provider

MODEL = "claude-opus-4-5"
WEEK_START = datetime(2026, 9, 21, 0, 0, tzinfo=UTC)  # a Monday
WEEK = timedelta(days=7)
FIVE_HOURS = timedelta(hours=5)
POLL_EVERY = timedelta(minutes=5)
API = "anthropic_api"
STRATEGIES = ("headroom", "pace")


# --------------------------------------------------------------------------------------------------
# The world: calls, and the providers' meters


@dataclass(frozen=True, order=True)
class Call:
    at: datetime
    harness: str
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    #: Seconds the call takes; a misrouted call wastes this much of the harness's time.
    latency_s: float

    @property
    def weight(self) -> float:
        """Quota-weighted tokens: how much of a subscription's allowance the call uses."""
        return self.input_tokens + 5 * self.output_tokens + 0.1 * self.cache_read_tokens


@dataclass(frozen=True)
class Session:
    """A stretch of activity: ``days`` (0 = Monday), start and end hour, mean gap between calls."""

    days: tuple[int, ...]
    start_h: float
    end_h: float
    gap_min: float


@dataclass(frozen=True)
class Harness:
    name: str
    sessions: tuple[Session, ...]
    #: Typical call: fresh input, output, cache reads (each drawn around these).
    size: tuple[int, int, int]


WEEKDAYS = (0, 1, 2, 3, 4)
EVERY_DAY = (0, 1, 2, 3, 4, 5, 6)
HARNESSES = (
    Harness(
        "coder-1",
        (Session(WEEKDAYS, 9, 12.5, 2.0), Session(WEEKDAYS, 13.5, 18, 2.0)),
        (6_000, 1_500, 60_000),
    ),
    Harness(
        "coder-2", (Session(WEEKDAYS, 14, 22, 3.0), Session((5, 6), 10, 13, 3.0)), (5_000, 1_200, 50_000)
    ),
    Harness("nightly", (Session(EVERY_DAY, 1, 3, 1.0),), (12_000, 3_000, 20_000)),
    Harness("reviewer", (Session(EVERY_DAY, 8, 20, 10.0),), (3_000, 600, 15_000)),
)
#: Someone using one account on claude.ai: real usage the daemon never hears about directly.
PERSON = Harness("person", (Session(WEEKDAYS, 19, 22, 6.0),), (4_000, 1_500, 30_000))


def calls_of(harness: Harness, rand: random.Random, scale: float) -> list[Call]:
    """Poisson arrivals in each session; ``scale`` makes calls rarer and proportionally larger."""
    calls: list[Call] = []
    for session in harness.sessions:
        for day in session.days:
            at = WEEK_START + timedelta(days=day, hours=session.start_h)
            end = WEEK_START + timedelta(days=day, hours=session.end_h)
            while True:
                at += timedelta(minutes=rand.expovariate(1 / (session.gap_min * scale)))
                if at >= end:
                    break
                inp, out, cache = (int(n * scale * rand.uniform(0.4, 1.6)) for n in harness.size)
                calls.append(Call(at, harness.name, inp, out, cache, latency_s=2 + out / 80))
    return calls


@dataclass
class Meter:
    """One subscription as its provider sees it: a rolling 5-hour window and a fixed weekly one."""

    pid: str
    week_cap: float
    five_cap: float
    week_reset: datetime
    week_used: float
    five_start: datetime | None = None
    five_used: float = 0.0
    unspent: list[tuple[datetime, float]] = field(default_factory=list)

    def roll(self, now: datetime) -> None:
        if self.five_start is not None and now >= self.five_start + FIVE_HOURS:
            self.five_start, self.five_used = None, 0.0
        while now >= self.week_reset:
            self.unspent.append((self.week_reset, max(0.0, 100 * (1 - self.week_used / self.week_cap))))
            self.week_reset += WEEK
            self.week_used = 0.0

    def five_reset(self, now: datetime) -> datetime:
        return (self.five_start or now) + FIVE_HOURS

    def exhausted(self, now: datetime) -> bool:
        self.roll(now)
        return self.five_used >= self.five_cap or self.week_used >= self.week_cap

    def spend(self, now: datetime, weight: float) -> None:
        self.roll(now)
        if self.five_start is None:
            self.five_start = now  # the 5-hour window opens with the first message after a reset
        self.five_used += weight
        self.week_used += weight

    def pct(self) -> tuple[float, float]:
        return min(100.0, 100 * self.five_used / self.five_cap), min(
            100.0, 100 * self.week_used / self.week_cap
        )

    def headers(self, now: datetime) -> dict[str, str]:
        """The ``anthropic-ratelimit-unified-*`` headers a response carries (utilization a fraction
        with two decimals, resets in unix seconds), as Claude's API sends them."""
        five, week = self.pct()
        five_full, week_full = five >= 100, week >= 100
        claim = "five_hour" if five_full or (five >= week and not week_full) else "seven_day"
        return {
            "anthropic-ratelimit-unified-status": "rejected" if five_full or week_full else "allowed",
            "anthropic-ratelimit-unified-representative-claim": claim,
            "anthropic-ratelimit-unified-5h-utilization": f"{five / 100:.2f}",
            "anthropic-ratelimit-unified-5h-reset": str(int(self.five_reset(now).timestamp())),
            "anthropic-ratelimit-unified-5h-status": "rejected" if five_full else "allowed",
            "anthropic-ratelimit-unified-7d-utilization": f"{week / 100:.2f}",
            "anthropic-ratelimit-unified-7d-reset": str(int(self.week_reset.timestamp())),
            "anthropic-ratelimit-unified-7d-status": "rejected" if week_full else "allowed",
        }

    def poll(self, now: datetime) -> PollResult:
        """What the usage endpoint answers: whole percents, like ``/api/oauth/usage``."""
        self.roll(now)
        five, week = self.pct()
        windows = [
            QuotaWindow(
                name="burst",
                pct_used=round(five),
                resets_at=self.five_reset(now) if self.five_start else None,
                window_min=300,
                updated_at=now,
                source=Source.OAUTH,
            ),
            QuotaWindow(
                name="weekly",
                pct_used=round(week),
                resets_at=self.week_reset,
                window_min=10080,
                updated_at=now,
                source=Source.OAUTH,
            ),
        ]
        return PollResult(
            at=now, availability=Availability(available=True, reason="simulated"), windows=windows
        )


@dataclass(frozen=True)
class Account:
    pid: str
    #: Share of the week's harness demand one weekly window holds.
    week_share: float
    #: When its weekly window resets, in hours after Monday 00:00, and how much of it is used then.
    reset_h: float
    used_at_start: float


#: Together the weekly windows hold 90 % of a week's demand: some overflow is unavoidable, and how
#: much depends on whether quota is spent before it resets.
ACCOUNTS = (
    Account("claude_a", 0.35, reset_h=34, used_at_start=0.55),  # resets Tuesday 10:00
    Account("claude_b", 0.30, reset_h=92, used_at_start=0.45),  # resets Thursday 20:00
    Account("claude_c", 0.25, reset_h=134, used_at_start=0.70),  # resets Saturday 14:00
)
#: A 5-hour window holds this share of its account's week (Claude's plans: roughly a tenth).
FIVE_SHARE = 0.12


@dataclass(frozen=True)
class Scenario:
    calls: list[Call]
    background: list[Call]
    meters: list[Meter]
    person_account: str


def scenario(small: bool = False, seed: int = 7) -> Scenario:
    """The week. ``small`` has a third of the calls, each three times the size (same demand)."""
    rand = random.Random(seed)
    scale = 3.0 if small else 1.0
    calls = sorted(c for h in HARNESSES for c in calls_of(h, rand, scale))
    background = calls_of(PERSON, rand, scale)
    demand = sum(c.weight for c in calls) + sum(c.weight for c in background)
    meters = []
    for account in ACCOUNTS:
        cap = account.week_share * demand
        meters.append(
            Meter(
                pid=account.pid,
                week_cap=cap,
                five_cap=FIVE_SHARE * cap,
                week_reset=WEEK_START + timedelta(hours=account.reset_h),
                week_used=account.used_at_start * cap,
            )
        )
    return Scenario(calls, background, meters, person_account="claude_b")


# --------------------------------------------------------------------------------------------------
# One run


@dataclass
class Result:
    strategy: str
    weeks: int = 1
    calls: int = 0
    misrouted: int = 0
    misrouted_s: float = 0.0
    overflow: int = 0
    overflow_usd: float = 0.0
    unserved: int = 0
    #: Percent of the weekly window left at each reset inside the simulated week(s), per account.
    unspent: dict[str, list[float]] = field(default_factory=dict)

    @property
    def unspent_pct(self) -> float:
        """Percent left at weekly resets, summed over accounts, per week."""
        return sum(sum(resets) for resets in self.unspent.values()) / self.weeks

    def add(self, other: Result) -> Result:
        total = Result(self.strategy, weeks=self.weeks + other.weeks)
        for name in ("calls", "misrouted", "misrouted_s", "overflow", "overflow_usd", "unserved"):
            setattr(total, name, getattr(self, name) + getattr(other, name))
        for pid in {*self.unspent, *other.unspent}:
            total.unspent[pid] = [*self.unspent.get(pid, []), *other.unspent.get(pid, [])]
        return total


def _config(strategy: str) -> config.Config:
    pids = [a.pid for a in ACCOUNTS]
    providers: dict[str, Any] = {pid: {"kind": "subscription", "priority": 1} for pid in pids}
    providers[API] = {"kind": "api_key", "priority": 2, "key_env": []}
    # Only the simulated providers: every built-in one is switched off.
    for pid in config.DEFAULT_PROVIDERS:
        providers.setdefault(pid, {"enabled": False})
    return config.build(
        {"routing": {"strategy": strategy, "families": {"anthropic": [*pids, API]}}, "providers": providers}
    )


def _report(
    p: ProviderState, call: Call, now: datetime, status: int, headers: dict[str, str], cfg: config.Config
) -> None:
    """What ``QuotaKeeper.record_turn`` does with a harness's report, minus the ledger."""
    turn = Turn(
        provider=p.id,
        model=MODEL,
        input_tokens=call.input_tokens if status == 200 else 0,
        output_tokens=call.output_tokens if status == 200 else 0,
        cache_read_tokens=call.cache_read_tokens if status == 200 else 0,
        status_code=status,
        headers=headers,
        agent=call.harness,
        at=now,
    )
    reading = read_response(
        headers, status_code=status, now=now, default_cooldown_s=cfg.routing.default_cooldown_s
    )
    apply_turn(p, turn, reading, now, burn_window_s=cfg.routing.burn_window_s)


#: A refused call comes back at once; the harness reports it and asks again after this long.
REFUSAL_S = 2.0

_POLL, _REPORT, _CALL, _PERSON = range(4)  # order of events at the same instant


def run(strategy: str, world: Scenario) -> Result:
    """Route the week with ``strategy``. Reports reach the daemon when each call finishes, so
    harnesses calling at once decide on what was known when they asked, as they do for real."""
    cfg = _config(strategy)
    meters = {m.pid: Meter(**{**m.__dict__, "unspent": []}) for m in world.meters}
    providers: dict[str, ProviderState] = {pid: new_provider(pid) for pid in [*meters, API]}
    providers[API].detected = Availability(available=True, reason="simulated API key")
    result = Result(strategy)

    events: list[tuple[datetime, int, int, Any]] = []
    seq = 0

    def at(when: datetime, kind: int, payload: Any) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(events, (when, kind, seq, payload))

    for call in world.calls:
        at(call.at, _CALL, (call, 0))
    for call in world.background:
        at(call.at, _PERSON, call)
    when = WEEK_START
    while when < WEEK_START + WEEK:
        at(when, _POLL, None)
        when += POLL_EVERY

    while events:
        now, kind, _, payload = heapq.heappop(events)
        if kind == _POLL:
            for pid, meter in meters.items():
                apply_poll(providers[pid], meter.poll(now))
        elif kind == _PERSON:
            if not meters[world.person_account].exhausted(now):
                meters[world.person_account].spend(now, payload.weight)
        elif kind == _REPORT:
            pid, call, status = payload
            headers = meters[pid].headers(now) if pid in meters else {}
            _report(providers[pid], call, now, status, headers, cfg)
        else:
            call, attempt = payload
            if attempt == 0:
                result.calls += 1
            rec = routing.rank(MODEL, providers, cfg, now).recommendation
            if rec is None or attempt >= 5:
                result.unserved += 1
                continue
            pid = rec.provider_id
            finished = now + timedelta(seconds=call.latency_s)
            if pid == API:
                result.overflow += 1
                priced = pricing.price_turn(
                    MODEL,
                    call.input_tokens,
                    call.output_tokens,
                    call.cache_read_tokens,
                    0,
                    overrides={},
                    subscription=False,
                )
                result.overflow_usd += priced.cost_usd or 0.0
                at(finished, _REPORT, (API, call, 200))
            elif meters[pid].exhausted(now):
                # Refused: the 429 (with headers that set the cooldown) is reported, then the
                # harness asks again.
                result.misrouted += 1
                result.misrouted_s += REFUSAL_S
                retry = now + timedelta(seconds=REFUSAL_S)
                at(retry, _REPORT, (pid, call, 429))
                at(retry, _CALL, (call, attempt + 1))
            else:
                meters[pid].spend(now, call.weight)  # the provider counts the call when it takes it
                at(finished, _REPORT, (pid, call, 200))

    for pid, meter in meters.items():
        meter.roll(WEEK_START + WEEK)
        result.unspent[pid] = [pct for when, pct in meter.unspent if when < WEEK_START + WEEK]
    return result


def simulate(strategy: str, worlds: list[Scenario]) -> Result:
    """``strategy`` over several independently drawn weeks: one week's misroutes are a handful of
    chance coincidences, so comparisons are made on the sum."""
    results = [run(strategy, world) for world in worlds]
    total = results[0]
    for result in results[1:]:
        total = total.add(result)
    return total


# --------------------------------------------------------------------------------------------------
# Reporting


def table(results: list[Result]) -> str:
    weeks = results[0].weeks
    lines = [
        f"Per simulated week (mean of {weeks} weeks, each drawn with its own seed):",
        "",
        "| strategy | quota unspent at weekly resets | misrouted calls (harness time) | overflow calls "
        "| overflow spend |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        per_account = ", ".join(
            f"{pid.removeprefix('claude_')} {sum(pcts) / weeks:.1f}%"
            for pid, pcts in sorted(r.unspent.items())
        )
        lines.append(
            f"| {r.strategy} | {r.unspent_pct:.1f}% ({per_account}) "
            f"| {r.misrouted / weeks:.2f} ({r.misrouted_s / weeks:.1f} s) "
            f"| {r.overflow / weeks:.0f} of {r.calls / weeks:.0f} | ${r.overflow_usd / weeks:,.2f} |"
        )
    return "\n".join(lines)


def describe(world: Scenario) -> str:
    demand = sum(c.weight for c in world.calls)
    lines = [
        f"A week is about {len(world.calls)} harness calls ({', '.join(h.name for h in HARNESSES)}) "
        f"and {len(world.background)} calls by a person on {world.person_account} outside bhoga, "
        f"Monday 00:00 to Monday 00:00 UTC; {demand / 1e6:.0f}M quota-weighted tokens of harness demand. "
        "Three subscriptions, each a weekly window (a share of the week's demand, partly used at the "
        "start) and a rolling 5-hour window holding "
        f"{FIVE_SHARE:.0%} of its week; an API key takes the overflow at {MODEL} API prices.",
        "",
    ]
    for account in ACCOUNTS:
        reset = WEEK_START + timedelta(hours=account.reset_h)
        lines.append(
            f"- {account.pid}: weekly window {account.week_share:.0%} of a week's demand, "
            f"{account.used_at_start:.0%} used at the start, resets {reset:%A %H:%M} UTC"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--small", action="store_true", help="a third of the calls, each 3x larger (CI)")
    parser.add_argument("--weeks", type=int, default=8, help="weeks to simulate, one seed each (default 8)")
    parser.add_argument("--write", type=Path, help="also write the results as Markdown to this file")
    args = parser.parse_args(argv)
    worlds = [scenario(small=args.small, seed=seed) for seed in range(1, args.weeks + 1)]
    results = [simulate(strategy, worlds) for strategy in STRATEGIES]
    text = describe(worlds[0]) + "\n\n" + table(results) + "\n"
    print(text)
    if args.write:
        command = "bench/simulate.py" + (" --small" if args.small else "") + f" --weeks {args.weeks}"
        args.write.write_text(DOC.format(command=command, results=text))
    return 0


DOC = """# Simulation: headroom against pace

`bench/simulate.py` replays synthetic weeks of harness traffic through the daemon's own state and
ranking code (`bhogad.domain.state`, `bhogad.domain.routing`, `bhogad.domain.pricing`); only the
providers are simulated.
Harnesses ask for the best provider before each call and report each call with the response's
`anthropic-ratelimit-unified-*` headers when it finishes, so calls made at the same time decide on
what was known when they asked. The usage endpoint is polled every 5 minutes. A person also uses
one account directly, which the daemon learns of only through polls and later headers.

Generated by `.venv/bin/python {command} --write docs/simulation.md`:

{results}
What the columns mean:

- **quota unspent at weekly resets**: percent of each account's weekly window still unused when it
  reset, summed over the accounts, per week. Quota that is paid for and lost.
- **misrouted calls**: calls sent to an account that had already run out (refused with a 429, then
  sent elsewhere), and the harness time lost to them. They happen when several harnesses call at
  once and the reports that would have shown the account empty are still in flight.
- **overflow**: calls that had to go to the API key because no subscription could take them, and
  their price at the API's rates.

Why pace wins: headroom sends each call to the account with the largest share left, which keeps
the accounts level. The account whose week resets first (claude_a, on Tuesday) is then spent no
faster than the others and still has a sixth of its week left when it resets: that quota is lost,
the other accounts run dry sooner later in the week, and the difference goes to the paid key.
Pace sees claude_a's quota as worth spending now because it resets soon, spends it down before the
reset, and keeps the others for later. It also projects each window at its current burn rate and
steers away from one that would run out before its reset while another would last; misrouted calls
are rare chance coincidences for both strategies, and pace had no more of them.

The numbers depend on the invented workload and account sizes in `bench/simulate.py`; the
direction of the difference is what the test `tests/unit/test_simulation.py` holds the code to,
on a smaller run (fewer, larger calls).
"""


if __name__ == "__main__":
    raise SystemExit(main())
