"""Lenient readers for the values provider endpoints send.

Every source spells numbers, times and windows its own way (wire spec §0): numbers arrive as int,
float or string; resets as ISO-8601 text, unix seconds, unix milliseconds or seconds from now. Each
reader here returns ``None`` for anything it cannot use, because a value that does not parse is "not
reported" — never zero, never a crash.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

from bhoga.quota.headers import window_name as _window_name

#: Known window lengths in minutes.
BURST_MIN: Final = 300
WEEKLY_MIN: Final = 10080
MONTHLY_MIN: Final = 43200

#: A unix-seconds value below this (2001-09-09) cannot be a reset time we will ever see.
_EPOCH_S_FLOOR: Final = 1e9
_EPOCH_MS_FLOOR: Final = 1e12


def mapping(value: object) -> Mapping[str, Any] | None:
    return value if isinstance(value, Mapping) else None


def number(value: object) -> float | None:
    """A finite number from an int, float or numeric string; booleans are not numbers."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        result = float(value)
    elif isinstance(value, str):
        try:
            result = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return result if math.isfinite(result) else None


def text(value: object, max_len: int = 200) -> str | None:
    """Short printable text fit to show a person, else ``None``."""
    if not isinstance(value, str):
        return None
    value = value.strip()
    if not value or len(value) > max_len or not value.isprintable():
        return None
    return value


def iso_datetime(value: object) -> datetime | None:
    """ISO-8601 with or without fractional seconds, ``Z`` or an offset; naive values are UTC."""
    if not isinstance(value, str) or not value.strip():
        return None
    raw = value.strip()
    # fromisoformat accepts "Z" from 3.11 on, but not lower case, and not more than 6 fraction digits.
    raw = raw[:-1] + "+00:00" if raw[-1] in "zZ" else raw
    try:
        moment = datetime.fromisoformat(raw.replace("t", "T"))
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def calendar_date(value: object) -> datetime | None:
    """A bare ``YYYY-MM-DD`` as midnight UTC (Copilot's ``quota_reset_date``)."""
    if not isinstance(value, str):
        return None
    try:
        day = date.fromisoformat(value.strip())
    except ValueError:
        return iso_datetime(value)
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def epoch(value: object) -> datetime | None:
    """Unix seconds, or unix milliseconds when the number is that large; zero and garbage are None."""
    seconds = number(value)
    if seconds is None or seconds < _EPOCH_S_FLOOR:
        return None
    if seconds >= _EPOCH_MS_FLOOR:
        seconds /= 1000.0
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def after(start: datetime, value: object) -> datetime | None:
    """``start`` plus a relative number of seconds; zero or negative means "not reported"."""
    seconds = number(value)
    if seconds is None or seconds <= 0:
        return None
    try:
        return start + timedelta(seconds=seconds)
    except OverflowError:
        return None


#: No provider has a window longer than a year; a longer "window" would overflow date arithmetic.
MAX_WINDOW_MIN: Final = 366 * 24 * 60


def minutes(value: object) -> int | None:
    """A whole, positive number of minutes, a year at most."""
    n = number(value)
    if n is None or n <= 0 or n != int(n) or n > MAX_WINDOW_MIN:
        return None
    return int(n)


def window_name(length_min: int | None, fallback: str) -> str:
    """Name a window by its length (``burst``, ``weekly``, ``monthly``, else ``<n>m``), never by the
    slot it arrived in; without a length the slot name is the only honest label."""
    return _window_name(length_min) if length_min is not None else fallback


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


#: Overage above 100 % is real (Copilot shows 101.33 %), but nothing is used a thousand times over.
MAX_PCT_USED: Final = 100_000.0


def clamp_low(pct: float) -> float:
    """Percent used never goes below zero; above 100 is kept (Copilot overage shows 101.33 %), up to
    a finite bound: a ratio of two finite numbers (1e308 used of a 1e-300 limit) can be infinite,
    and a NaN or infinity would reach clients as ``null``."""
    return max(0.0, min(pct, MAX_PCT_USED)) if pct == pct else 0.0
