"""Pace: how fast each window is being spent against how soon it resets, and a ranking built on it.

Pure functions of their arguments (no clock reads, no I/O), so every figure here can be checked by
hand against the wire spec's worked values (``provider-wire-spec.md`` §8).

Three ideas:

1. **Use it or lose it.** Prefer the candidate with the most *spare pace*: how much faster than its
   current burn its binding window could be spent and still not run out before resetting, in
   multiples of that window's even pace (its length spread evenly). 50 % left of a 5-hour window
   resetting in one hour is 2.5x spare; 50 % of a weekly window that must last six days is 0.58x.
   Quota that resets soon is worth spending first, because whatever is left is lost. A window
   projected to run out before its reset has negative spare: the score is continuous, so "runs out"
   is a matter of degree (and of how sure the projection is), never a cliff that would let an idle
   window with 3 % left beat a busy one with 60 % left.
2. **Paid keys are overflow.** An API key costs money per token while a subscription's quota is
   already paid for, so API keys come after every subscription that can serve. Moving demand onto a
   paid key early, just because a subscription is projected to run out, only pays for demand that
   may never come: the subscription would be used up either way.
3. **Calm.** The burn rate must not follow the ranking's own last few choices, or the answer
   oscillates (traffic makes a window look like it "runs out", so traffic leaves, so it "lasts").
   A window of a day or more is projected at its average rate since it began, which already counts
   the nights and weekends people idle; shorter windows use the ledger's token flow (a decayed
   average over ``routing.burn_window_s``) through the window's learnt percent-per-token, else their
   average. The ranking then changes its answer only when another candidate is better by a margin
   (``routing.py``).

The percent-per-token of each window is learnt from successive readings of the window in the same
period, ignoring steps that are within the noise the source has shown.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Final, NamedTuple

import msgspec

from bhoga.protocol import Health, QuotaWindow, Source, WindowKind

#: Readings within this of each other's reset time belong to one period (resets given as "seconds
#: from now" drift by the response time).
_SAME_PERIOD: Final = timedelta(minutes=10)
#: Without a reset time, only a drop this large says the window reset; smaller drops are noise.
_RESET_DROP_PCT: Final = 20.0
#: Calibration needs growth this many times the largest drop (noise) the source has shown.
_NOISE_FACTOR: Final = 4.0
#: Windows at least this long are projected at their average since they began (nights included).
LONG_WINDOW_H: Final = 24.0
#: A period's percent-per-token is learnt once usage grew this many points: readings come in whole
#: percents, so one point of growth could be anything from 0.5 to 1.5.
MIN_CALIBRATION_PCT: Final = 2.0
#: The average since a window began is too noisy until this fraction of it has elapsed.
_MIN_ELAPSED_FRACTION: Final = 0.02
_MIN_HOURS: Final = 1 / 60


# --------------------------------------------------------------------------------------------------
# Token flow: how many tokens per hour harnesses are sending to a provider now


class TokenFlow(msgspec.Struct, kw_only=True):
    """An exponentially decayed token rate: each token counts 1/tau at once and fades with time
    constant tau, so a steady flow of r tokens/h reads r, and a provider nobody uses drifts to 0."""

    tokens_per_h: float = 0.0
    at: datetime | None = None


def flow_now(flow: TokenFlow, now: datetime, tau_h: float) -> float:
    if flow.at is None or flow.tokens_per_h <= 0:
        return 0.0
    age_h = max(0.0, (now - flow.at).total_seconds() / 3600)
    return flow.tokens_per_h * math.exp(-age_h / tau_h)


def add_tokens(flow: TokenFlow, tokens: int, at: datetime, tau_h: float) -> TokenFlow:
    """The flow after ``tokens`` more were spent at ``at`` (late reports count from the newest time)."""
    latest = at if flow.at is None or at > flow.at else flow.at
    rate = flow_now(flow, latest, tau_h)
    return TokenFlow(tokens_per_h=rate + max(0, tokens) / tau_h, at=latest)


# --------------------------------------------------------------------------------------------------
# Calibration: what one token costs each window, learnt from its readings


class WindowBurn(msgspec.Struct, kw_only=True):
    """What successive readings of one window taught us. Persisted with the provider."""

    #: The reset of the period the anchor belongs to (None when the source gave none).
    period_reset: datetime | None = None
    #: The first reading of this period, and the provider's token count when it was taken.
    anchor_pct: float = 0.0
    anchor_tokens: int = 0
    anchor_at: datetime | None = None
    last_pct: float = 0.0
    #: Percent of this window one million reported tokens spend; kept across periods.
    pct_per_mtok: float | None = None
    #: The largest drop between readings of one period seen so far: the source's noise, in points.
    #: Usage never falls inside a period, so any drop is measurement error. Kept across periods.
    noise_pct: float = 0.0


def _new_period(prev: WindowBurn, w: QuotaWindow) -> bool:
    if prev.period_reset is not None and w.resets_at is not None:
        # The reset time is the period's identity: a lower reading with the same reset is noise, and
        # a reset that moved (forward, or back for Codex's unscheduled early resets) is a new period.
        return abs(prev.period_reset - w.resets_at) > _SAME_PERIOD
    # Without reset times, only a large drop says the window reset; a small one is jitter.
    return w.pct_used < prev.last_pct - max(_RESET_DROP_PCT, 2 * prev.noise_pct)


def observe(prev: WindowBurn | None, w: QuotaWindow, consumed: int) -> WindowBurn | None:
    """Fold one reading of ``w`` in; ``consumed`` is the provider's token count at that reading.

    Hand-set windows and per-minute rate buckets say nothing about how fast quota is being spent.
    The ratio is taken over the whole period so far, not reading to reading, so whole-percent
    rounding stops mattering as the period goes on.
    """
    if w.source is Source.MANUAL or w.kind is not WindowKind.QUOTA:
        return prev
    if prev is None or _new_period(prev, w):
        return WindowBurn(
            period_reset=w.resets_at,
            anchor_pct=w.pct_used,
            anchor_tokens=consumed,
            anchor_at=w.updated_at,
            last_pct=w.pct_used,
            pct_per_mtok=prev.pct_per_mtok if prev is not None else None,
            noise_pct=prev.noise_pct if prev is not None else 0.0,
        )
    noise = max(prev.noise_pct, prev.last_pct - w.pct_used)
    ratio = prev.pct_per_mtok
    grew, spent = w.pct_used - prev.anchor_pct, consumed - prev.anchor_tokens
    # A step within the source's noise says nothing about what a token costs: learning from it
    # would turn ±3 points of jitter over 100k tokens into a figure 30x too high.
    if grew >= max(MIN_CALIBRATION_PCT, _NOISE_FACTOR * noise) and spent > 0:
        ratio = grew / spent * 1e6
    return msgspec.structs.replace(
        prev,
        last_pct=w.pct_used,
        pct_per_mtok=ratio,
        noise_pct=noise,
        period_reset=w.resets_at or prev.period_reset,
    )


# --------------------------------------------------------------------------------------------------
# Burn rate and the linear pace figures


class Burn(msgspec.Struct, kw_only=True, frozen=True):
    pct_per_h: float
    #: How it was estimated, for receipts: ``ledger`` or ``average since the window began``.
    basis: str


def _hours(delta: timedelta) -> float:
    return delta.total_seconds() / 3600


def _length_h(w: QuotaWindow) -> float | None:
    return w.window_min / 60 if w.window_min else None


def elapsed_h(w: QuotaWindow, now: datetime) -> float | None:
    """How far into its window we are; ``None`` without a reset or a length to measure from."""
    length = _length_h(w)
    if length is None or w.resets_at is None:
        return None
    left = _hours(w.resets_at - now)
    if left <= 0 or left > length:
        return None
    return length - left


def pace_delta(w: QuotaWindow, now: datetime) -> float | None:
    """Percent used minus percent of the window elapsed: positive is ahead of an even pace (BS/CB)."""
    elapsed, length = elapsed_h(w, now), _length_h(w)
    if elapsed is None or length is None or elapsed <= 0:
        return None
    return min(100.0, max(0.0, w.pct_used)) - min(100.0, elapsed / length * 100)


def average_burn(w: QuotaWindow, now: datetime) -> float | None:
    """Percent per hour since the window began (CodexBar's ``rate``)."""
    elapsed, length = elapsed_h(w, now), _length_h(w)
    if elapsed is None or length is None or elapsed < max(length * _MIN_ELAPSED_FRACTION, 5 / 60):
        return None
    return max(0.0, w.pct_used) / elapsed


def burn_rate(record: WindowBurn | None, tokens_per_h: float, w: QuotaWindow, now: datetime) -> Burn | None:
    """The window's current burn.

    A window of a day or more is projected at its average since it began: the last hour's flow,
    projected round the clock, would ignore the nights and weekends that the average already
    contains, and would follow the ranking's own last choices (see the module notes). Shorter
    windows use the ledger's token flow through the window's calibration, else their average.
    """
    average = average_burn(w, now)
    length = _length_h(w)
    if average is not None and length is not None and length >= LONG_WINDOW_H:
        return Burn(pct_per_h=average, basis="average since the window began")
    if record is not None and record.pct_per_mtok is not None:
        return Burn(pct_per_h=tokens_per_h * record.pct_per_mtok / 1e6, basis="ledger")
    if average is not None:
        return Burn(pct_per_h=average, basis="average since the window began")
    return None


# --------------------------------------------------------------------------------------------------
# One window's outlook


class Outlook(NamedTuple):
    key: str
    remaining: float
    #: Hours until the reset (the window's length when the reset is not known yet).
    hours_left: float | None
    length_h: float | None
    burn: Burn | None
    #: Percent projected to be left at the reset at the current burn (negative: runs out first).
    surplus: float
    #: Hours until empty at the current burn; ``None`` when nothing is burning it.
    empty_in: float | None
    #: How much faster than now this window could be spent and still last, in multiples of its even
    #: pace (100 % over its length). Negative when it runs out before the reset.
    spare: float
    pace: float | None

    @property
    def lasts(self) -> bool:
        return self.surplus >= 0


def outlook(w: QuotaWindow, now: datetime, burn: Burn | None) -> Outlook:
    remaining = w.pct_remaining
    hours_left = max(_hours(w.resets_at - now), _MIN_HOURS) if w.resets_at is not None else None
    length = _length_h(w)
    if hours_left is not None and length is not None and hours_left > length:
        # A window cannot reset later than one length from now; a hand-set reset shared by the
        # 5-hour and weekly windows would otherwise stretch the 5-hour one over days.
        hours_left = length
    # A 5-hour window that reset starts again at the next message: a full length lies ahead.
    horizon = hours_left if hours_left is not None else length
    rate = burn.pct_per_h if burn is not None else 0.0
    if horizon is None:
        # No reset and no length (an API key's manual quota): nothing to pace against.
        return Outlook(w.key, remaining, None, None, burn, remaining, None, remaining / 100, None)
    surplus = remaining - rate * horizon
    empty_in = remaining / rate if rate > 0 else None
    spare = surplus * (length or horizon) / (100 * horizon)
    return Outlook(w.key, remaining, horizon, length, burn, surplus, empty_in, spare, pace_delta(w, now))


# --------------------------------------------------------------------------------------------------
# The ranking


class Scored(NamedTuple):
    """A strategy's verdict on one eligible candidate."""

    #: Sort key, smaller first; compared across candidates of one ranking only. Every strategy's key
    #: starts with its *class* (three entries: demoted as unhealthy, kind of candidate, degraded)
    #: and then its continuous value negated, ``key[CLASS_LEN] == -value``: the ranking's margins
    #: (hysteresis, session affinity) compare that value between candidates of one class.
    key: tuple[float, ...]
    #: The strategy's headline figure, higher is better (shown in receipts); ``None`` if it has none.
    score: float | None
    #: Why, in words a person can check.
    note: str


#: How many leading entries of a key make its class (see ``Scored.key``).
CLASS_LEN = 3
#: The kinds of candidate, in order: subscriptions with known quota, unknown quota, paid keys.
TIER_KNOWN, TIER_UNKNOWN, TIER_PAID = 0.0, 2.0, 3.0


def squash(spare: float) -> float:
    """Spare pace mapped onto (-1, 1), keeping its order. Spare grows without bound as a reset comes
    near (what is left is spread over less time), so a fixed margin on spare itself would be crossed
    by a few calls' worth of change; on this scale a margin is absolute near zero, where "lasts" and
    "runs out" meet, and relative for large values."""
    return spare / (1 + abs(spare))


def value_of(key: tuple[float, ...]) -> float:
    """The continuous value a margin is measured in (higher is better)."""
    return -key[CLASS_LEN]


def span(hours: float) -> str:
    minutes = round(abs(hours) * 60)  # whole minutes first, or 2h59.99m prints as "2h60m"
    if minutes < 90:
        return f"{minutes:.0f}m"
    if minutes < 48 * 60:
        return f"{minutes // 60:.0f}h{minutes % 60:02.0f}m"
    return f"{minutes // 1440:.0f}d{minutes % 1440 // 60:.0f}h"


def confidence(o: Outlook) -> str:
    """How far to trust a projection: a burn measured over a small part of the time still to come
    says little about the rest of it."""
    if o.burn is None or o.hours_left is None or o.length_h is None:
        return "no projection"
    seen = o.length_h - o.hours_left if o.burn.basis != "ledger" else min(o.length_h, 5.0)
    ratio = seen / max(o.hours_left, _MIN_HOURS)
    return "high" if ratio >= 1 else "medium" if ratio >= 0.25 else "low"


def runs_out(o: Outlook) -> str:
    """The projected time to exhaustion, or that it lasts until its reset, with the confidence."""
    if o.burn is None or o.hours_left is None:
        return "no burn measured yet"
    if o.lasts:
        return f"lasts until its reset ({confidence(o)} confidence)"
    assert o.empty_in is not None
    return f"runs out in {span(o.empty_in)} ({confidence(o)} confidence)"


def describe(o: Outlook) -> str:
    parts = [f"'{o.key}' {o.remaining:.0f}% left"]
    if o.hours_left is not None:
        parts.append(f"resets in {span(o.hours_left)}")
    if o.pace is not None:
        parts.append(f"pace {o.pace:+.0f}")
    text = ", ".join(parts)
    if o.burn is None:
        return text + "; no burn measured yet"
    text += f"; burning {o.burn.pct_per_h:.2f}%/h ({o.burn.basis})"
    if o.lasts:
        return text + f" → lasts, {o.spare:.2f}x even pace to spare ({confidence(o)} confidence)"
    assert o.empty_in is not None and o.hours_left is not None
    return (
        text + f" → runs out in {span(o.empty_in)}, {span(o.hours_left - o.empty_in)} before its reset"
        f" ({o.spare:.2f}x, {confidence(o)} confidence)"
    )


def score(
    windows: Sequence[QuotaWindow],
    burns: Mapping[str, Burn | None],
    now: datetime,
    *,
    paid: bool,
    health: Health,
    priority: int,
    quota_pct: float,
) -> Scored:
    """Rank one eligible candidate from its fresh quota windows (those that limit the model)."""
    unhealthy = float(health is Health.UNHEALTHY)
    degraded = float(health is Health.DEGRADED)
    suffix = f"; {health.value}" if health is not Health.HEALTHY else ""
    # Every key has the same length: (demoted, kind, degraded, -value, secondary, priority).
    key: tuple[float, ...]
    if paid:
        left = f"{quota_pct * 100:.0f}% left" if quota_pct >= 0 else "quota unknown"
        value = quota_pct if quota_pct >= 0 else -1.0
        key = (unhealthy, TIER_PAID, degraded, -value, 0.0, float(priority))
        return Scored(key, None, f"paid overflow, after every subscription that can serve ({left}){suffix}")
    outlooks = [outlook(w, now, burns.get(w.key)) for w in windows if w.kind is WindowKind.QUOTA]
    if not outlooks:
        key = (unhealthy, TIER_UNKNOWN, degraded, 0.0, 0.0, float(priority))
        return Scored(key, None, "quota unknown" + suffix)
    # The binding window is the one with the least to spare; its spare pace is continuous through
    # zero, so a window that just about runs out differs from one that just about lasts by a little,
    # not by a tier. Near-equal binding windows fall through to the next window: the one that
    # resets sooner with quota left is the better place to spend.
    by_spare = sorted(outlooks, key=lambda o: o.spare)
    binding = by_spare[0]
    runner_up = by_spare[1].spare if len(by_spare) > 1 else binding.spare
    key = (unhealthy, TIER_KNOWN, degraded, -round(squash(binding.spare), 3), -runner_up, float(priority))
    others = [o for o in outlooks if o is not binding]
    note = describe(binding) + "".join(f"; {o.key} {o.remaining:.0f}% left" for o in others)
    return Scored(key, binding.spare, note + suffix)
