"""Prometheus metrics: a few counters the daemon bumps, and a pure renderer of the text format.

Counters live for the life of the process (Prometheus expects resets at restart). Everything that is
state rather than an event (quota windows, cooldowns, connections) is read at render time from the
same views clients get, so the metrics can never disagree with ``quota.list``.

Label values are bounded: providers must be configured before a turn or poll counts, methods come
from the method table and statuses are HTTP codes, so no client can blow up the series count.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from bhoga.protocol import ProviderQuota

#: Local-socket calls take well under a millisecond; the top buckets catch waits for the disk.
RPC_BUCKETS: tuple[float, ...] = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


@dataclass
class Histogram:
    buckets: tuple[float, ...] = RPC_BUCKETS
    #: Per-bucket (not cumulative) counts; the last slot is the +Inf overflow.
    counts: list[int] = field(default_factory=lambda: [0] * (len(RPC_BUCKETS) + 1))
    total: float = 0.0
    count: int = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value
        self.count += 1


@dataclass
class Metrics:
    """What the daemon counts as it runs; all methods are cheap and run on the event loop."""

    turns: Counter[tuple[str, str]] = field(default_factory=Counter)
    polls: Counter[tuple[str, str]] = field(default_factory=Counter)
    rpc: dict[str, Histogram] = field(default_factory=dict)
    rpc_errors: Counter[str] = field(default_factory=Counter)

    def count_turn(self, provider: str, status_code: int) -> None:
        self.turns[provider, str(status_code)] += 1

    def count_poll(self, provider: str, ok: bool) -> None:
        self.polls[provider, "ok" if ok else "error"] += 1

    def observe_rpc(self, method: str, seconds: float, failed: bool = False) -> None:
        histogram = self.rpc.get(method)
        if histogram is None:
            histogram = self.rpc[method] = Histogram()
        histogram.observe(seconds)
        if failed:
            self.rpc_errors[method] += 1


# -- the text exposition format (version 0.0.4) ----------------------------------------------------


def _value(v: float) -> str:
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if math.isnan(v):
        return "NaN"
    return str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else repr(float(v))


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_label(v)}"' for k, v in labels.items()) + "}"


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help: str) -> None:
        self.lines.append(f"# HELP {name} {help.replace(chr(92), chr(92) * 2)}")
        self.lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, value: float, **labels: str) -> None:
        self.lines.append(f"{name}{_labels(labels)} {_value(value)}")

    def gauge(self, name: str, help: str, samples: Iterable[tuple[dict[str, str], float]]) -> None:
        self.family(name, "gauge", help)
        for labels, value in samples:
            self.sample(name, value, **labels)

    def counter(self, name: str, help: str, samples: Iterable[tuple[dict[str, str], float]]) -> None:
        self.family(name, "counter", help)
        for labels, value in samples:
            self.sample(name, value, **labels)


def render(
    metrics: Metrics,
    quotas: Sequence[ProviderQuota],
    now: datetime,
    *,
    version: str,
    started_at: datetime,
    connections: int,
    subscribers: int,
) -> str:
    """The whole exposition, as ``daemon.metrics`` returns it and a scraper reads it."""
    w = _Writer()
    w.gauge("bhoga_build_info", "The running bhogad's version (always 1).", [({"version": version}, 1)])
    w.gauge("bhoga_start_time_seconds", "When bhogad started (Unix time).", [({}, started_at.timestamp())])

    windows = [(q, win) for q in quotas for win in sorted(q.windows.values(), key=lambda x: x.key)]
    w.gauge(
        "bhoga_quota_used_percent",
        "Percent used of each quota window (0-100), as routing sees it now.",
        (({"provider": q.provider_id, "window": win.key}, win.pct_used) for q, win in windows),
    )
    w.gauge(
        "bhoga_quota_window_resets_at_seconds",
        "When each window resets, as a Unix time (only windows whose reset is known).",
        (
            ({"provider": q.provider_id, "window": win.key}, win.resets_at.timestamp())
            for q, win in windows
            if win.resets_at is not None
        ),
    )
    w.gauge(
        "bhoga_quota_window_stale",
        "1 when a window's last reading is too old to count for routing.",
        (({"provider": q.provider_id, "window": win.key}, int(win.stale)) for q, win in windows),
    )
    w.gauge(
        "bhoga_provider_available",
        "1 when the provider can be recommended on this machine.",
        (({"provider": q.provider_id, "kind": str(q.kind)}, int(q.available)) for q in quotas),
    )
    w.gauge(
        "bhoga_provider_remaining_ratio",
        "Remaining fraction (0-1) of the tightest fresh window; absent when unknown.",
        (({"provider": q.provider_id}, q.quota_pct) for q in quotas if q.quota_pct >= 0),
    )
    w.gauge(
        "bhoga_provider_cooldown_remaining_seconds",
        "Seconds until the provider's cooldown (after a 429/529 or auth failure) ends; 0 when none.",
        (
            (
                {"provider": q.provider_id},
                max(0.0, (q.cooldown_until - now).total_seconds()) if q.cooldown_until else 0.0,
            )
            for q in quotas
        ),
    )
    w.gauge(
        "bhoga_provider_consecutive_failures",
        "Failed calls in a row reported for the provider (health).",
        (({"provider": q.provider_id}, q.consecutive_failures) for q in quotas),
    )
    w.gauge(
        "bhoga_provider_last_poll_seconds",
        "When the provider's quota was last polled, as a Unix time (only polled providers).",
        (({"provider": q.provider_id}, q.last_poll_at.timestamp()) for q in quotas if q.last_poll_at),
    )
    w.counter(
        "bhoga_polls_total",
        "Quota polls by provider and result (ok, error) since bhogad started.",
        (({"provider": p, "result": r}, n) for (p, r), n in sorted(metrics.polls.items())),
    )
    w.counter(
        "bhoga_turns_total",
        "Model calls reported by harnesses, by provider and HTTP status, since bhogad started.",
        (({"provider": p, "status": s}, n) for (p, s), n in sorted(metrics.turns.items())),
    )

    w.family("bhoga_rpc_duration_seconds", "histogram", "Time to answer a JSON-RPC call, by method.")
    for method, h in sorted(metrics.rpc.items()):
        cumulative = 0
        for bound, n in zip((*h.buckets, math.inf), h.counts, strict=True):
            cumulative += n
            w.sample("bhoga_rpc_duration_seconds_bucket", cumulative, method=method, le=_value(bound))
        w.sample("bhoga_rpc_duration_seconds_sum", h.total, method=method)
        w.sample("bhoga_rpc_duration_seconds_count", h.count, method=method)
    w.counter(
        "bhoga_rpc_errors_total",
        "JSON-RPC calls answered with an error, by method.",
        (({"method": m}, n) for m, n in sorted(metrics.rpc_errors.items())),
    )
    w.gauge("bhoga_connected_clients", "Client connections open now.", [({}, connections)])
    w.gauge("bhoga_event_subscribers", "Connections subscribed to quota.changed events.", [({}, subscribers)])
    return "\n".join(w.lines) + "\n"
