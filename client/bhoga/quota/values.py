"""The one boundary for untrusted numbers and times: lenient value parsers and the bounds they keep.

Every number, time and window that comes from outside — a provider's answer, a response header, a
harness's ``turns.record``, a ``quota.set``, a record stored by an older version — is read here.
Two kinds of bad value are told apart:

* **Garbage** (``"abc"``, ``"nan"``, ``null``, a malformed date) is "not reported": the parsers
  return ``None``, never zero and never a crash, so a missing field does not pose as a real one.
* **Out of range** (a percent of 1e308, a reset in the year 5138, a reading dated next year) parses
  but cannot be true. :func:`window_problem` and :func:`time_problem` name what is wrong, so the
  daemon can refuse it where it enters: an ``invalid_params`` error naming the field for a harness,
  a poll failure with the reason for a provider, a dropped window for a header, a repaired or
  dropped record (with a log line) for the store. It never reaches state as is.

The bounds, and why (README "Where the numbers come from" documents them):

* Times are not before :data:`EARLIEST` (2000-01-01). A moment a value was *observed* (a turn's
  ``at``, a window's ``updated_at``) is not more than :data:`CLOCK_SKEW` ahead of now. A moment
  something *ends* (a reset, a ``retry-after``) is not more than :data:`RESET_HORIZON` ahead: the
  longest real window any supported provider has is a calendar month (:data:`LONGEST_WINDOW`).
* A cooldown never lasts longer than :data:`LONGEST_WINDOW` from now, whatever a server says.
* Percent used is finite, not negative, and at most :data:`MAX_PCT` (overage such as Copilot's
  101.33 % stays visible; 10 000 % is far beyond any real overage).
* Raw amounts (token or request limits, USD) are finite and at most :data:`MAX_AMOUNT`.
* Token counts of one turn are at most :data:`MAX_TOKENS` per field, so the ledger's int64 sums
  hold billions of maximal turns and real ones for millennia. Window lengths are at most the horizon.
* A provider holds at most :data:`MAX_WINDOWS` windows, and one response's headers describe at most
  :data:`MAX_FAMILIES` extra limit families with names of at most :data:`MAX_FAMILY_NAME` characters.

Everything here is pure and imports only the standard library (``import bhoga`` stays light).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from bhoga.protocol import QuotaWindow

# --------------------------------------------------------------------------------------------------
# Bounds

#: No time from any source is earlier than this.
EARLIEST: Final = datetime(2000, 1, 1, tzinfo=UTC)
#: How far ahead of our clock an observation may be dated (clocks of one machine, rounding).
CLOCK_SKEW: Final = timedelta(minutes=5)
#: The longest real window (a calendar month), and so the longest a cooldown may last.
LONGEST_WINDOW: Final = timedelta(days=31)
#: How far ahead a reset or ``retry-after`` may lie: the longest window plus a day of slack.
RESET_HORIZON: Final = LONGEST_WINDOW + timedelta(days=1)
#: Percent used above this is not a reading (overage up to it stays visible).
MAX_PCT: Final = 10_000.0
#: Raw limits and remainders (tokens, requests, USD) above this are not readings.
MAX_AMOUNT: Final = 1e15
#: Tokens of one kind in one turn; ten times the largest context window on offer, with room to spare.
MAX_TOKENS: Final = 1_000_000_000
#: A window's length in minutes.
MAX_WINDOW_MIN: Final = int(RESET_HORIZON.total_seconds() // 60)
#: Windows remembered per provider; the least recently read are forgotten first.
MAX_WINDOWS: Final = 64
#: Extra ``x-<name>-*`` limit families read from one response, and the length of their names.
MAX_FAMILIES: Final = 8
MAX_FAMILY_NAME: Final = 32
#: Window names and scopes are short identifiers.
MAX_NAME: Final = 128

#: Known window lengths in minutes.
BURST_MIN: Final = 300
WEEKLY_MIN: Final = 10080
MONTHLY_MIN: Final = 43200

#: Numbers at or above these are timestamps rather than relative seconds. 1e9 s is 2001-09-09, so a
#: relative delay would have to be 31 years long to be misread; 1e12 ms is the same date in ms.
_EPOCH_S_FLOOR: Final = 1e9
_EPOCH_MS_FLOOR: Final = 1e12

_TRUE: Final = frozenset({"true", "1", "yes"})
_FALSE: Final = frozenset({"false", "0", "no"})


# --------------------------------------------------------------------------------------------------
# Scalars


def mapping(value: object) -> Mapping[str, Any] | None:
    return value if isinstance(value, Mapping) else None


def raw_text(value: object) -> str | None:
    """A scalar (text, bytes or a JSON number) as stripped text, or ``None`` when nothing is in it."""
    if type(value) is str:  # the common case, checked first: this runs dozens of times per turn
        return value.strip() or None
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    elif isinstance(value, int | float) and not isinstance(value, bool):
        # JSON bodies (OpenRouter's copied headers, Codex's resets_at) carry numbers, not strings.
        value = str(value)
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value or None


def number(value: object) -> float | None:
    """A finite number from an int, float, numeric string or bytes; booleans are not numbers."""
    if type(value) is float or type(value) is int:
        result = float(value)
    else:
        text_ = raw_text(value)
        if text_ is None:
            return None
        try:
            result = float(text_)
        except ValueError:
            return None
    # float() accepts "nan" and "inf"; neither is a usable count, percent or delay.
    return result if math.isfinite(result) else None


def flag(value: object) -> bool | None:
    text_ = raw_text(value)
    if text_ is None:
        return None
    lowered = text_.lower()
    return True if lowered in _TRUE else False if lowered in _FALSE else None


def text(value: object, max_len: int = 200) -> str | None:
    """Short printable text fit to show a person, else ``None``."""
    if not isinstance(value, str):
        return None
    value = value.strip()
    if not value or len(value) > max_len or not value.isprintable():
        return None
    return value


def label(value: object, max_len: int = 64) -> str | None:
    """Like :func:`text`, but a JSON number is shown as text and ``none``/``null`` mean nothing."""
    found = text(raw_text(value), max_len)
    return None if found is None or found.lower() in ("none", "null") else found


def minutes(value: object) -> int | None:
    """A whole, positive number of minutes no longer than the longest window (with slack)."""
    n = number(value)
    if n is None or n <= 0 or n != int(n) or n > MAX_WINDOW_MIN:
        return None
    return int(n)


def clamp_low(pct: float) -> float:
    """Percent used never goes below zero; above 100 is kept (Copilot overage shows 101.33 %)."""
    return max(0.0, pct)


def clamp_pct(pct: float) -> float:
    """Percent used of a window that cannot go over (a header's utilisation), kept in 0–100."""
    return min(100.0, max(0.0, pct))


# --------------------------------------------------------------------------------------------------
# Times


def as_utc(moment: datetime) -> datetime:
    """Aware UTC. A naive datetime is taken to be UTC: every source we read speaks UTC, and state
    written by the old library holds naive values that must compare with aware ones."""
    if moment.tzinfo is UTC:
        return moment
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def shift(start: datetime, seconds: float) -> datetime | None:
    """``start`` plus ``seconds``, or ``None`` where the sum leaves what a datetime can hold."""
    try:
        return start + timedelta(seconds=seconds)
    except (OverflowError, ValueError):
        return None


def after(start: datetime, value: object) -> datetime | None:
    """``start`` plus a relative number of seconds; zero or negative means "not reported"."""
    seconds = number(value)
    return shift(start, seconds) if seconds is not None and seconds > 0 else None


def _from_epoch(seconds: float) -> datetime | None:
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def epoch(value: object) -> datetime | None:
    """Unix seconds, or unix milliseconds when the number is that large, for a field that is always
    absolute; a number below 1e9 (2001) is no such time, and zero and garbage are ``None``."""
    seconds = number(value)
    if seconds is None or seconds < _EPOCH_S_FLOOR:
        return None
    return _from_epoch(seconds / 1000.0 if seconds >= _EPOCH_MS_FLOOR else seconds)


def unix_time(value: object, *, millis: bool = False) -> datetime | None:
    """A time in unix seconds (or milliseconds) for a field whose unit is fixed, such as a token's
    expiry; zero, negative, unrepresentable and garbage values are ``None``."""
    n = number(value)
    if n is None or n <= 0:
        return None
    return _from_epoch(n / 1000.0 if millis else n)


def iso_datetime(value: object) -> datetime | None:
    """RFC 3339 / ISO 8601 with or without fractional seconds, ``Z``/``z`` or an offset, or a bare
    date (midnight); naive values are UTC."""
    raw = raw_text(value) if isinstance(value, str | bytes) else None
    if raw is None:
        return None
    try:
        # RFC 3339 allows lower-case "t" and "z"; fromisoformat accepts only upper case.
        return as_utc(datetime.fromisoformat(raw.upper()))
    except (ValueError, OverflowError):
        return None


def calendar_date(value: object) -> datetime | None:
    """A bare ``YYYY-MM-DD`` as midnight UTC (Copilot's ``quota_reset_date``), or a full time."""
    if not isinstance(value, str):
        return None
    try:
        day = date.fromisoformat(value.strip())
    except ValueError:
        return iso_datetime(value)
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def http_date(value: object) -> datetime | None:
    raw = raw_text(value)
    if raw is None:
        return None
    try:
        return as_utc(parsedate_to_datetime(raw))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


_GO_UNIT_SECONDS: Final = {
    "h": 3600.0,
    "m": 60.0,
    "s": 1.0,
    "ms": 1e-3,
    "us": 1e-6,
    "µs": 1e-6,  # U+00B5 MICRO SIGN, what Go prints
    "μs": 1e-6,  # U+03BC GREEK SMALL LETTER MU, which Go also accepts
    "ns": 1e-9,
}
# "ms" must be tried before "m", or "20ms" would read as 20 minutes followed by garbage.
_GO_PART: Final = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ms|us|µs|μs|ns|h|m|s)")


def go_duration(value: object) -> float | None:
    """Seconds in a Go ``time.Duration`` string (``"6m0s"``, ``"1.52s"``, ``"20ms"``), else ``None``.

    Grammar as Go's ``time.ParseDuration``: an optional sign, then one or more ``<number><unit>``
    with unit ``h m s ms us µs ns`` and a possibly fractional number; a bare ``"0"`` is zero.
    """
    raw = raw_text(value)
    if raw is None:
        return None
    sign = -1.0 if raw.startswith("-") else 1.0
    raw = raw.removeprefix("-") if sign < 0 else raw.removeprefix("+")
    if raw == "0":
        return 0.0
    if not raw:
        return None
    total, pos = 0.0, 0
    while pos < len(raw):
        part = _GO_PART.match(raw, pos)
        if part is None:
            return None
        total += float(part[1]) * _GO_UNIT_SECONDS[part[2]]
        pos = part.end()
    return sign * total if math.isfinite(total) else None


def reset(value: object, now: datetime) -> datetime | None:
    """When a window or bucket resets, as aware UTC, from any reset format a provider sends.

    Numbers are told apart by size: at or above 1e12 unix milliseconds (OpenRouter), at or above 1e9
    unix seconds (Claude, Codex), below that seconds from ``now`` (``reset_after_seconds``). Reading
    ``"60"`` as an epoch (1970) was the old library's bug: it made every bucket look freshly reset.
    Text is tried as a Go duration from ``now`` (OpenAI), RFC 3339 / ISO 8601 (Anthropic API; a
    naive value is UTC) and an HTTP-date. Negative and unparsable values give ``None``. Whether the
    time is plausible is :func:`time_problem`'s question, asked where the value enters.
    """
    raw = raw_text(value)
    if raw is None:
        return None
    now = as_utc(now)
    seconds = number(raw)
    if seconds is not None:
        if seconds < 0:
            return None
        return epoch(seconds) if seconds >= _EPOCH_S_FLOOR else shift(now, seconds)
    duration = go_duration(raw)
    if duration is not None:
        return shift(now, duration) if duration >= 0 else None
    return iso_datetime(raw) or http_date(raw)


def retry_after(value: object, now: datetime) -> datetime | None:
    """When a ``Retry-After`` ends: delay seconds (int or float) or an HTTP-date; garbage gives ``None``."""
    raw = raw_text(value)
    if raw is None:
        return None
    seconds = number(raw)
    if seconds is not None:
        # RFC 9110 delay-seconds are non-negative; a negative value is garbage, not "in the past".
        return shift(as_utc(now), seconds) if seconds >= 0 else None
    return http_date(raw)


# --------------------------------------------------------------------------------------------------
# The boundary: is this plausible?


def time_problem(moment: datetime, now: datetime, *, ahead: timedelta) -> str | None:
    """Why ``moment`` cannot be true (before 2000, or more than ``ahead`` after ``now``), else ``None``."""
    moment = as_utc(moment)
    if moment < EARLIEST:
        return f"{moment.isoformat()} is before {EARLIEST.year}"
    limit = shift(as_utc(now), ahead.total_seconds())
    if limit is not None and moment > limit:
        return f"{moment.isoformat()} is more than {_span(ahead)} ahead"
    return None


def plausible_end(moment: datetime | None, now: datetime) -> datetime | None:
    """A reset or ``retry-after`` moment if it is plausible (within :data:`RESET_HORIZON`), else ``None``."""
    if moment is None or time_problem(moment, now, ahead=RESET_HORIZON) is not None:
        return None
    return moment


def bound_cooldown(until: datetime, now: datetime) -> datetime:
    """A cooldown ends no later than :data:`LONGEST_WINDOW` from now, whatever a server said."""
    limit = shift(as_utc(now), LONGEST_WINDOW.total_seconds())
    return min(as_utc(until), limit) if limit is not None else as_utc(until)


def amount_problem(name: str, value: float | None, high: float) -> str | None:
    if value is None:
        return None
    if not math.isfinite(value):
        return f"{name} {value} is not a finite number"
    if not 0.0 <= value <= high:
        return f"{name} {value:g} is outside 0–{high:g}"
    return None


def window_problem(w: QuotaWindow, now: datetime) -> str | None:
    """Why this window cannot be a true reading, else ``None``: the one rule every source passes."""
    what = f"window {w.name[:MAX_NAME]!r}"
    if not w.name or len(w.name) > MAX_NAME or len(w.scope) > MAX_NAME or not w.scope:
        return f"{what} has an empty or over-long name or scope"
    problem = (
        amount_problem("percent used", w.pct_used, MAX_PCT)
        or amount_problem("limit", w.limit, MAX_AMOUNT)
        or amount_problem("remaining", w.remaining, MAX_AMOUNT)
    )
    if problem is None and w.window_min is not None and not 0 < w.window_min <= MAX_WINDOW_MIN:
        problem = f"length {w.window_min} min is outside 1–{MAX_WINDOW_MIN}"
    if problem is None and w.resets_at is not None:
        problem = time_problem(w.resets_at, now, ahead=RESET_HORIZON)
        problem = f"reset {problem}" if problem else None
    if problem is None and w.updated_at is not None:
        problem = time_problem(w.updated_at, now, ahead=CLOCK_SKEW)
        problem = f"reading time {problem}" if problem else None
    return f"{what}: {problem}" if problem else None


def _span(delta: timedelta) -> str:
    seconds = delta.total_seconds()
    return f"{seconds / 86400:g} days" if seconds >= 86400 else f"{seconds / 60:g} minutes"


# --------------------------------------------------------------------------------------------------
# Names


_NAMED_LENGTHS: Final = {BURST_MIN: "burst", WEEKLY_MIN: "weekly", MONTHLY_MIN: "monthly"}


def length_name(length_min: int) -> str:
    """Name a window by its length, never its position: Codex moved weekly and 30-day windows into
    ``primary`` on some plans, so ``primary`` does not mean "5 hours"."""
    return _NAMED_LENGTHS.get(length_min, f"{length_min}m")


def window_name(length_min: int | None, fallback: str) -> str:
    """Name a window by its length (``burst``, ``weekly``, ``monthly``, else ``<n>m``), never by the
    slot it arrived in; without a length the slot name is the only honest label."""
    return length_name(length_min) if length_min is not None else fallback


def model_scope(limit_name: object, limit_id: str) -> str:
    """The scope for a model-specific limit.

    When the provider's display name is a model slug (``GPT-5.3-Codex-Spark`` →
    ``gpt-5.3-codex-spark``) the window limits exactly that model. Otherwise the limit cannot be tied
    to models, and ``limit:<id>`` keeps it visible without letting it block every model.
    """
    name = text(limit_name, 80)
    if name is not None:
        slug = name.lower()
        if all(c.isalnum() or c in "-._" for c in slug) and "-" in slug:
            return slug
    return f"limit:{limit_id}"
