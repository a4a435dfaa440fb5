"""The daemon's in-memory quota model and the pure functions that change and read it.

Nothing here does I/O or awaits: every change happens on the event loop in one synchronous call, so no
reader ever sees half an update. Persistence and the network live at the edges (store, server).

Two rules shape the model:

* A window is one limit, keyed by name and scope (``weekly`` or ``weekly/opus``). A newer reading of
  the same window replaces the older one, whatever its source, so a manual ``set_quota`` wins until a
  poll or a header reports the same window again. Windows of different scopes never hide each other:
  a model is limited by every window that applies to it, account-wide and model-scoped alike.
* Usage only grows inside a window, so a stale reading still bounds what is left from above. Stale
  windows therefore still mark a provider exhausted, but only fresh ones set its remaining fraction.
"""

from __future__ import annotations

import enum
from datetime import datetime, timedelta

import msgspec

from bhoga.protocol import (
    Health,
    ProviderKind,
    ProviderQuota,
    ProviderStatus,
    QuotaWindow,
    SetQuotaParams,
    Source,
    Turn,
    WindowKind,
)
from bhoga.quota import model as quota_model
from bhoga.quota.families import split_vendor
from bhoga.quota.headers import HeaderReading
from bhoga.quota.model import effective_window as effective_window, scope_applies as scope_applies
from bhoga.quota.values import (
    CLOCK_SKEW,
    EARLIEST,
    MAX_WINDOWS,
    RESET_HORIZON,
    bound_cooldown,
    time_problem,
    window_problem,
)
from bhogad.config import Config, ProviderConfig, RoutingConfig
from bhogad.domain import pace

# Default consecutive failed turns (5xx, 529, timeouts) before a provider is degraded, then
# unhealthy; ``routing.degraded_after`` / ``routing.unhealthy_after`` override them.
DEGRADED_AFTER = RoutingConfig().degraded_after
UNHEALTHY_AFTER = RoutingConfig().unhealthy_after
#: Models whose own failure counts are remembered per provider; the oldest are forgotten first.
_MAX_MODEL_HEALTH = 64


class Availability(msgspec.Struct, kw_only=True):
    """What discovery found on this machine: credentials, a CLI, or nothing (with why)."""

    available: bool
    reason: str


class Failures(msgspec.Struct, kw_only=True):
    """Consecutive failed turns of one model on a provider, and when the last one was."""

    count: int = 0
    last_at: datetime | None = None


class ProviderState(msgspec.Struct, kw_only=True):
    """Everything remembered about one provider; persisted as one record."""

    id: str
    windows: dict[str, QuotaWindow] = msgspec.field(default_factory=dict)
    cooldown_until: datetime | None = None
    cooldown_reason: str | None = None
    cooldown_since: datetime | None = None
    consecutive_failures: int = 0
    last_error: str | None = None
    #: Set by a 401/403 turn: the credentials the harness uses were refused.
    auth_failed_at: datetime | None = None
    n_requests: int = 0
    consumed: int = 0
    last_turn_at: datetime | None = None
    #: When the provider last accepted a harness's credentials (any 2xx/3xx, or a 429: limited, not refused).
    accepted_at: datetime | None = None
    last_poll_at: datetime | None = None
    last_poll_error: str | None = None
    detected: Availability | None = None
    #: When the last failed turn was: an unhealthy provider is offered again some time after it.
    last_failure_at: datetime | None = None
    #: Failures counted per model (normalised id), for errors that hit one model and not the rest,
    #: like an overloaded Opus while Sonnet answers. Cleared by a success of that model.
    model_failures: dict[str, Failures] = msgspec.field(default_factory=dict)
    #: Tokens per hour harnesses are sending here now (decayed), and what each window's readings
    #: say a token costs it: together, the burn rate the pace strategy projects with.
    flow: pace.TokenFlow = msgspec.field(default_factory=pace.TokenFlow)
    burn: dict[str, pace.WindowBurn] = msgspec.field(default_factory=dict)
    #: Whose quota this is, as discovery last found it (``chatgpt:<account id>``).
    account: str | None = None
    #: What other machines' daemons report sending to this account (shared state): tokens per hour
    #: now, and tokens in all, so pace projects and calibrates with the whole fleet's traffic.
    peer_flow_per_h: float = 0.0
    peer_consumed: int = 0
    #: 429s since the last success: a bare 429's cooldown doubles with each, and once the cooldown
    #: ends the provider is half-open (one trial call) until a success.
    throttles: int = 0
    #: When the half-open provider's one trial call was handed out (its answer is awaited).
    trial_at: datetime | None = None


class PollKind(enum.Enum):
    """How a poll ended, which decides when the poller tries again."""

    #: Numbers were read: poll again after the normal interval.
    OK = "ok"
    #: Nothing was sent (not signed in, token expired or refused before): re-read local state soon,
    #: since that is cheap and a login must take effect quickly.
    LOCAL = "local"
    #: The provider answered 429: wait at least five minutes, longer when it says so.
    RATE_LIMITED = "rate_limited"
    #: Timeouts, refused connections, 5xx: back off exponentially.
    TRANSIENT = "transient"
    #: An answer we cannot use (not JSON, wrong shape, unexpected 4xx): back off exponentially.
    PROTOCOL = "protocol"


class PollResult(msgspec.Struct, kw_only=True):
    """What one discovery run of one provider found (a driver's answer, folded in by ``apply_poll``)."""

    at: datetime
    availability: Availability
    windows: list[QuotaWindow] = msgspec.field(default_factory=list)
    #: Why the poll failed, in words a person can act on ("token expired — run `claude`"); None if ok.
    error: str | None = None
    #: For the poller's schedule only; the state ignores it.
    kind: PollKind = PollKind.OK
    #: The provider asked us not to come back before this (a 429 with or without ``retry-after``).
    not_before: datetime | None = None
    #: Whose quota this is (``chatgpt:<account id>``), from what the provider or its CLI says, never
    #: from a secret: providers with one account share one quota, across machines too.
    account: str | None = None


def new_provider(pid: str) -> ProviderState:
    return ProviderState(id=pid)


# --------------------------------------------------------------------------------------------------
# Changes


def merge_windows(p: ProviderState, windows: list[QuotaWindow]) -> bool:
    """Take each window unless we already hold a newer reading of it. Returns whether any changed.

    Newest wins whatever the source: a header reading taken after a poll replaces the poll's
    figure, and holds until a poll (or another response) reports the same window later still.
    """
    changed = False
    for window in windows:
        key = window.key
        held = p.windows.get(key)
        if not quota_model.supersedes(window, held):
            continue
        p.windows[key] = quota_model.monotone(window, held)
        # Calibration sees the raw reading: its drops are how it learns the source's noise.
        burn = pace.observe(p.burn.get(key), window, p.consumed + p.peer_consumed)
        if burn is not None:
            p.burn[key] = burn
        changed = True
    for key in quota_model.cap_windows(p.windows, MAX_WINDOWS):
        p.burn.pop(key, None)
    return changed


def checked_windows(windows: list[QuotaWindow], now: datetime) -> tuple[list[QuotaWindow], str | None]:
    """The windows of a provider's answer that can be true, and what was wrong with the rest.

    A value out of range (a percent of 1e308, a reset in the year 5138) never reaches state: the
    answer's other windows stand, and the poll fails with the reason, shown in ``bhoga status``.
    """
    good: list[QuotaWindow] = []
    problems: list[str] = []
    for w in windows:
        problem = window_problem(w, now)
        if problem is not None:
            problems.append(problem)
        elif w.updated_at is not None and w.updated_at > now:
            # Within the clock skew allowed (a CLI's or another machine's clock a little ahead): dated
            # now, never by a time that has not come, so it cannot outrank the next real reading.
            good.append(msgspec.structs.replace(w, updated_at=now))
        else:
            good.append(w)
    if len(good) > MAX_WINDOWS:
        problems.append(f"{len(good)} windows, more than the {MAX_WINDOWS} a provider may have")
        good = good[:MAX_WINDOWS]
    if not problems:
        return good, None
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return good, f"the answer held a value out of range, ignored: {problems[0]}{more}"


def apply_poll(p: ProviderState, result: PollResult) -> None:
    """Fold a discovery run in. A failed run keeps the last good windows; they age into staleness."""
    windows, problem = checked_windows(result.windows, result.at)
    if problem is not None:
        result = msgspec.structs.replace(
            result, windows=windows, error=f"{result.error}; {problem}" if result.error else problem
        )
    p.detected = result.availability
    p.last_poll_at = result.at
    p.last_poll_error = result.error
    if result.account is not None:
        p.account = result.account
    if (
        result.error is None
        and result.availability.available
        and p.auth_failed_at is not None
        and result.at > p.auth_failed_at
    ):
        # The poll used the same login the harnesses use and it was accepted: the credentials were
        # renewed since the 401/403, so the refusal no longer stands.
        p.auth_failed_at = None
    merge_windows(p, result.windows)


def extend_cooldown(p: ProviderState, until: datetime, reason: str, now: datetime) -> bool:
    """Cooldowns only ever grow, up to a month from now (:func:`bhoga.quota.model.grow_cooldown`);
    ``now`` is when this one was set, shown in ``bhoga status``."""
    grown = quota_model.grow_cooldown(p.cooldown_until, until, now)
    if grown is None:
        return False
    p.cooldown_until = grown
    p.cooldown_reason = reason
    p.cooldown_since = now
    return True


#: Doublings of a bare 429's cooldown counted at most (2**16 times the default is past any bound).
_MAX_THROTTLES = 16


def bare_cooldown_s(p: ProviderState, routing: RoutingConfig) -> float:
    """The cooldown for a 429 that names no reset: doubled for every 429 since the last success, so
    a provider that keeps refusing is not probed at every retry-after, and bounded."""
    doubled = routing.default_cooldown_s * 2.0 ** min(p.throttles, _MAX_THROTTLES)
    return min(doubled, max(routing.default_cooldown_max_s, routing.default_cooldown_s))


def note_throttling(p: ProviderState, status_code: int) -> None:
    """Count 429s since the last success (see ``bare_cooldown_s`` and ``half_open``); any answer
    ends the trial call that was out."""
    if status_code == 429:
        p.throttles = min(p.throttles + 1, _MAX_THROTTLES)
    elif 200 <= status_code < 400:
        p.throttles = 0
    p.trial_at = None


def half_open(p: ProviderState, now: datetime) -> bool:
    """The next call is a trial: a cooldown ended with no success since the 429 that set it, or the
    last call failed (5xx, timeout). Until it is answered, everyone else is sent elsewhere, so an
    outage meets one call at a time instead of every harness at once."""
    if p.cooldown_until is not None and p.cooldown_until > now:
        return False
    return p.throttles > 0 or p.consecutive_failures > 0


def trial_ends(p: ProviderState, routing: RoutingConfig) -> datetime | None:
    """Until when a handed-out trial call holds the half-open provider back from everyone else."""
    if p.trial_at is None:
        return None
    return p.trial_at + timedelta(seconds=max(routing.default_cooldown_s, 1.0))


def start_trial(p: ProviderState, now: datetime, routing: RoutingConfig) -> bool:
    """Hand out the half-open provider's one trial call; returns whether this answer was it."""
    ends = trial_ends(p, routing)
    if not half_open(p, now) or (ends is not None and now < ends):
        return False
    p.trial_at = now
    return True


# --------------------------------------------------------------------------------------------------
# Records from the store: repaired or dropped, never a crash

#: Counters are Python ints in memory but int64 in SQLite and on the wire; keep them well inside.
_MAX_COUNT = 2**62


def _observed(at: datetime | None, now: datetime, what: str, notes: list[str]) -> datetime | None:
    """A stored observation time, brought back into range: a future one becomes now, one before
    2000 is forgotten."""
    if at is None:
        return None
    if at < EARLIEST:
        notes.append(f"{what} {at.isoformat()} is before {EARLIEST.year}; forgotten")
        return None
    if at > now + CLOCK_SKEW:
        notes.append(f"{what} {at.isoformat()} is in the future; set to now")
        return now
    return at


def repair(p: ProviderState, now: datetime) -> list[str]:
    """Bring a record stored by an older (or broken) version back within the bounds of
    :mod:`bhoga.quota.values`, in place; returns one note per repair for the log.

    Out-of-range times used to crash date arithmetic on every later ``bhoga status`` (a turn dated
    9999) or cool a provider for decades; here each is clamped or dropped, whatever it was.
    """
    notes: list[str] = []
    for name in (
        "auth_failed_at",
        "last_turn_at",
        "accepted_at",
        "last_poll_at",
        "last_failure_at",
        "trial_at",
    ):
        setattr(p, name, _observed(getattr(p, name), now, name, notes))
    if p.cooldown_until is not None:
        if p.cooldown_until < EARLIEST:
            notes.append("cooldown from before 2000 forgotten")
            p.cooldown_until, p.cooldown_reason = None, None
        elif p.cooldown_until > (bounded := bound_cooldown(p.cooldown_until, now)):
            notes.append(f"cooldown until {p.cooldown_until.isoformat()} shortened to {bounded.isoformat()}")
            p.cooldown_until = bounded
    for key, w in list(p.windows.items()):
        if w.updated_at is not None and w.updated_at > now + CLOCK_SKEW:
            w = msgspec.structs.replace(w, updated_at=now)
            p.windows[key] = w
            notes.append(f"window {key!r} was read in the future; dated now")
        problem = window_problem(w, now)
        if problem is not None or w.key != key:
            del p.windows[key]
            p.burn.pop(key, None)
            notes.append(f"{problem or f'window {key!r} stored under the wrong key'}; dropped")
    for key in quota_model.cap_windows(p.windows, MAX_WINDOWS):
        p.burn.pop(key, None)
        notes.append(f"window {key!r} beyond the {MAX_WINDOWS} a provider may have; dropped")
    for model, failures in list(p.model_failures.items()):
        failures.last_at = _observed(failures.last_at, now, f"failure of {model}", notes)
    for key, burn in list(p.burn.items()):
        times = [(burn.anchor_at, CLOCK_SKEW), (burn.period_reset, RESET_HORIZON)]
        if any(t is not None and time_problem(t, now, ahead=ahead) for t, ahead in times) or not (
            0 <= burn.anchor_tokens <= _MAX_COUNT
        ):
            del p.burn[key]
            notes.append(f"burn record of {key!r} out of range; relearnt")
    flow_at = _observed(p.flow.at, now, "token flow time", notes)
    if flow_at != p.flow.at or not 0.0 <= p.flow.tokens_per_h < float(_MAX_COUNT):
        p.flow = pace.TokenFlow()
    for name in ("n_requests", "consumed", "consecutive_failures"):
        value = getattr(p, name)
        if not 0 <= value <= _MAX_COUNT:
            notes.append(f"{name} {value} out of range; reset to 0")
            setattr(p, name, 0)
    if not 0 <= p.throttles <= _MAX_THROTTLES:
        notes.append(f"throttles {p.throttles} out of range; reset to 0")
        p.throttles = 0
    return notes


def clear_cooldown(p: ProviderState, model: str, now: datetime) -> list[str]:
    """A person's word that the provider may be tried again now; returns what was lifted, in words.

    Lifts the 429 cooldown (it holds back every model, so ``model`` too) and every emptied rate-limit
    bucket that applies to ``model``. For one model it also forgets that model's failure streak,
    the other thing that holds one model back while the rest answer. Quota windows are not touched:
    an exhausted week is a fact about the account (``set_quota`` is the way to overrule it).
    """
    lifted: list[str] = []
    if p.cooldown_until is not None and p.cooldown_until > now:
        lifted.append(f"cooldown until {quota_model.fmt_time(p.cooldown_until)} ({p.cooldown_reason})")
    p.cooldown_until = p.cooldown_reason = p.cooldown_since = None
    for key, w in list(p.windows.items()):
        if (
            w.kind is WindowKind.RATE
            and w.pct_used >= 100.0
            and (w.resets_at is None or w.resets_at > now)
            and scope_applies(w.scope, model)
        ):
            del p.windows[key]  # the next response's headers report the bucket afresh
            p.burn.pop(key, None)
            lifted.append(f"rate limit '{key}' empty until {quota_model.fmt_time(w.resets_at)}")
    if model != "*":
        failures = p.model_failures.pop(model_key(model), None)
        if failures is not None:
            lifted.append(f"{failures.count} consecutive failures of {model_key(model)}")
    return lifted


def manual_windows(params: SetQuotaParams, kind: ProviderKind, now: datetime) -> list[QuotaWindow]:
    """The windows ``set_quota`` describes.

    Subscriptions get the library's two windows (burst and weekly; weekly defaults to the burst
    figure). An API key has no such windows, so its figure is one ``quota`` window.
    """

    def window(name: str, pct_remaining: float, minutes: int | None) -> QuotaWindow:
        return QuotaWindow(
            name=name,
            pct_used=100.0 - pct_remaining,
            resets_at=params.resets_at,
            window_min=minutes,
            updated_at=now,
            scope=params.model,
            source=Source.MANUAL,
        )

    if kind is ProviderKind.SUBSCRIPTION:
        weekly = params.pct_remaining if params.weekly_pct is None else params.weekly_pct
        return [window("burst", params.pct_remaining, 300), window("weekly", weekly, 10080)]
    windows = [window("quota", params.pct_remaining, None)]
    if params.weekly_pct is not None:
        windows.append(window("weekly", params.weekly_pct, 10080))
    return windows


def is_server_failure(status_code: int) -> bool:
    """Failures that say the provider is struggling (load, outage), not that our quota is spent."""
    return status_code >= 500 or status_code in (408, 0)


def model_key(model: str) -> str:
    return split_vendor(model.strip().lower())[1]


def apply_turn(
    p: ProviderState, turn: Turn, reading: HeaderReading, now: datetime, *, burn_window_s: float = 3600.0
) -> None:
    """Fold one reported model call into the provider's state.

    429 and 529 are different things: a 429 says our quota (or rate limit) is spent and sets a
    cooldown from the reading; a 529 says the provider is overloaded, which is health, not quota.
    """
    at = turn.at or now
    tokens = turn.input_tokens + turn.output_tokens + turn.cache_read_tokens + turn.cache_write_tokens
    p.n_requests += 1
    p.consumed += tokens
    p.last_turn_at = at
    if tokens:
        p.flow = pace.add_tokens(p.flow, tokens, min(at, now), burn_window_s / 3600)
    merge_windows(p, reading.windows)
    if reading.cooldown_until is not None and reading.cooldown_until > now:
        extend_cooldown(p, reading.cooldown_until, reading.cooldown_reason or f"HTTP {turn.status_code}", now)
    code = turn.status_code
    note_throttling(p, code)
    if 200 <= code < 400 or code == 429:
        p.accepted_at = at
    model = model_key(turn.model)
    if 200 <= code < 400:
        # One success restores health and proves the harness's credentials work.
        p.consecutive_failures = 0
        p.last_error = None
        p.auth_failed_at = None
        p.model_failures.pop(model, None)
    elif code in (401, 403):
        p.auth_failed_at = at
        p.last_error = f"HTTP {code}: credentials refused"
    elif is_server_failure(code):
        p.consecutive_failures += 1
        p.last_failure_at = at
        failures = p.model_failures.pop(model, None) or Failures()
        # Re-inserted last, so the dict stays ordered oldest failure first for trimming.
        p.model_failures[model] = Failures(count=failures.count + 1, last_at=at)
        while len(p.model_failures) > _MAX_MODEL_HEALTH:
            del p.model_failures[next(iter(p.model_failures))]
        p.last_error = (
            f"HTTP 529: {turn.model} overloaded"
            if code == 529
            else f"HTTP {code}: provider error ({turn.model})"
        )


# --------------------------------------------------------------------------------------------------
# Reading


class ModelView(msgspec.Struct, kw_only=True):
    """A provider's standing for one model (or ``*``), derived on demand."""

    available: bool
    reason: str
    status: ProviderStatus
    quota_pct: float
    tightest: QuotaWindow | None
    blocking: str | None
    health: Health
    windows: list[QuotaWindow]
    #: The next moment this view changes by time alone (a reset, a cooldown ending, a reading going
    #: stale, availability evidence expiring, an unhealthy provider due a retry); ``None`` if nothing
    #: is scheduled. Lets callers cache it. (Burn projections drift continuously; see routing.)
    changes_at: datetime | None = None
    now: datetime | None = None
    #: Billed per token (an API key), as opposed to a subscription's already-paid quota.
    paid: bool = False
    #: The fresh quota windows that limit this model, and each one's current burn rate (by key).
    fresh: list[QuotaWindow] = msgspec.field(default_factory=list)
    burns: dict[str, pace.Burn | None] = msgspec.field(default_factory=dict)


def availability(p: ProviderState, pcfg: ProviderConfig | None, cfg: Config, now: datetime) -> Availability:
    """Whether the provider can be recommended on this machine, and why (not)."""
    if pcfg is not None and not pcfg.enabled:
        return Availability(available=False, reason="disabled in config")
    if p.auth_failed_at is not None:
        return Availability(available=False, reason="credentials refused (HTTP 401/403); log in again")
    evidence = timedelta(seconds=cfg.routing.turn_evidence_s)
    if p.accepted_at is not None and now - p.accepted_at <= evidence:
        return Availability(available=True, reason="a harness reported calls it made")
    if any(w.source is Source.MANUAL for w in p.windows.values()):
        return Availability(available=True, reason="quota set by hand")
    if p.detected is not None:
        return p.detected
    return Availability(available=False, reason="no credentials found and no quota set")


def _health(count: int, last_at: datetime | None, routing: RoutingConfig, now: datetime) -> Health:
    if count >= routing.unhealthy_after:
        probe_at = last_at + timedelta(seconds=routing.health_probe_after_s) if last_at else None
        # Half-open: long enough after the last failure, let traffic try it again. One more
        # failure makes it unhealthy at once (the count is still past the threshold).
        return Health.DEGRADED if probe_at is not None and now >= probe_at else Health.UNHEALTHY
    if count >= routing.degraded_after:
        return Health.DEGRADED
    return Health.HEALTHY


_SEVERITY = {Health.HEALTHY: 0, Health.DEGRADED: 1, Health.UNHEALTHY: 2}


def health_of(
    p: ProviderState, cfg: Config | None = None, now: datetime | None = None, model: str = "*"
) -> Health:
    """The provider's health for ``model``: the worse of its own and that model's failure streak."""
    routing = cfg.routing if cfg is not None else RoutingConfig()
    at = now or p.last_failure_at or datetime.min
    health = _health(p.consecutive_failures, p.last_failure_at, routing, at)
    failures = p.model_failures.get(model_key(model)) if model != "*" else None
    if failures is not None:
        own = _health(failures.count, failures.last_at, routing, at)
        if _SEVERITY[own] > _SEVERITY[health]:
            health = own
    return health


def _probe_moments(p: ProviderState, model: str, cfg: Config) -> list[datetime | None]:
    probe = timedelta(seconds=cfg.routing.health_probe_after_s)
    streaks = [(p.consecutive_failures, p.last_failure_at)]
    failures = p.model_failures.get(model_key(model)) if model != "*" else None
    if failures is not None:
        streaks.append((failures.count, failures.last_at))
    return [
        last + probe for count, last in streaks if count >= cfg.routing.unhealthy_after and last is not None
    ]


def model_view(
    p: ProviderState, model: str, pcfg: ProviderConfig | None, cfg: Config, now: datetime
) -> ModelView:
    stale_after = timedelta(seconds=pcfg.stale_after_s if pcfg else 1800.0)
    windows = [
        effective_window(w, now, stale_after) for w in p.windows.values() if scope_applies(w.scope, model)
    ]
    avail = availability(p, pcfg, cfg, now)
    health = health_of(p, cfg, now, model)

    found = quota_model.standing(
        quota_model.limiting_windows(windows, model),
        p.cooldown_until,
        p.cooldown_reason,
        now,
        cfg.routing.low_fraction,
    )
    status, fresh, tightest, quota_pct = found.status, found.fresh, found.tightest, found.quota_pct
    blocking = found.blocking
    trial = trial_ends(p, cfg.routing)
    if blocking is None and trial is not None and now < trial and half_open(p, now):
        blocking = (
            f"half-open after a cooldown: its one trial call is out (until {trial:%Y-%m-%d %H:%M:%S} UTC)"
        )
        status = ProviderStatus.THROTTLED
    if not avail.available:
        status = ProviderStatus.UNAVAILABLE
    tau_h = cfg.routing.burn_window_s / 3600
    flow = pace.flow_now(p.flow, now, tau_h) + p.peer_flow_per_h
    burns = {w.key: pace.burn_rate(p.burn.get(w.key), flow, w, now) for w in fresh}
    return ModelView(
        changes_at=_next_change(
            p, windows, stale_after, cfg, now, [*_probe_moments(p, model, cfg), trial_ends(p, cfg.routing)]
        ),
        now=now,
        paid=(pcfg.kind if pcfg else ProviderKind.API_KEY) is ProviderKind.API_KEY,
        fresh=fresh,
        burns=burns,
        available=avail.available,
        reason=avail.reason,
        status=status,
        quota_pct=quota_pct,
        tightest=tightest,
        blocking=blocking,
        health=health,
        windows=windows,
    )


def _next_change(
    p: ProviderState,
    windows: list[QuotaWindow],
    stale_after: timedelta,
    cfg: Config,
    now: datetime,
    extra: list[datetime | None],
) -> datetime | None:
    moments = [p.cooldown_until, *extra]
    if p.accepted_at is not None:
        moments.append(p.accepted_at + timedelta(seconds=cfg.routing.turn_evidence_s))
    for w in windows:
        moments.append(w.resets_at)
        if not w.stale and w.source is not Source.MANUAL and w.updated_at is not None:
            moments.append(w.updated_at + stale_after)
    return min((m for m in moments if m is not None and m > now), default=None)


def provider_quota(
    p: ProviderState, pcfg: ProviderConfig | None, cfg: Config, now: datetime, model: str = "*"
) -> ProviderQuota:
    """The client-facing record for a provider; ``model="*"`` shows every window of every scope."""
    view = model_view(p, model, pcfg, cfg, now)
    return ProviderQuota(
        provider_id=p.id,
        model_id=model,
        kind=pcfg.kind if pcfg else ProviderKind.API_KEY,
        priority=pcfg.priority if pcfg else 99,
        available=view.available,
        reason=(view.blocking or view.reason) if view.available else view.reason,
        status=view.status,
        quota_pct=view.quota_pct,
        windows={w.key: w for w in view.windows},
        cooldown_until=p.cooldown_until if p.cooldown_until and p.cooldown_until > now else None,
        cooldown_reason=p.cooldown_reason if p.cooldown_until and p.cooldown_until > now else None,
        cooldown_since=p.cooldown_since if p.cooldown_until and p.cooldown_until > now else None,
        health=view.health,
        model_health={
            m: h
            for m, f in p.model_failures.items()
            if (h := _health(f.count, f.last_at, cfg.routing, now)) is not Health.HEALTHY
        },
        outlook={w.key: pace.runs_out(pace.outlook(w, now, view.burns.get(w.key))) for w in view.fresh},
        consecutive_failures=p.consecutive_failures,
        last_error=p.last_error,
        n_requests=p.n_requests,
        consumed=p.consumed,
        last_turn_at=p.last_turn_at,
        last_poll_at=p.last_poll_at,
        last_poll_error=p.last_poll_error,
        account=account_of(p, pcfg),
        tokens_per_h=round(pace.flow_now(p.flow, now, cfg.routing.burn_window_s / 3600) + p.peer_flow_per_h),
    )


def account_of(p: ProviderState, pcfg: ProviderConfig | None) -> str | None:
    """The account a provider's quota belongs to: the configured one, else what discovery found."""
    return (pcfg.account if pcfg is not None else None) or p.account


def signature(q: ProviderQuota) -> tuple[object, ...]:
    """What a subscriber would notice changing; used to avoid pushing no-op events."""
    return (
        q.status,
        round(q.quota_pct, 4),
        q.available,
        q.cooldown_until,
        q.health,
        tuple(sorted(q.model_health.items())),
        tuple((k, round(w.pct_used, 2), w.resets_at, w.stale) for k, w in sorted(q.windows.items())),
    )
