"""How the commands lay out quotas and rankings for a person: shared by ``status``, ``best``,
``set-quota`` and ``watch``. Pure: records in, text out."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from bhoga.protocol import Health, ProviderQuota, QuotaWindow, Ranking, SharedStatus, WindowKind


def bar(pct_used: float, width: int = 20) -> str:
    filled = round(max(0.0, min(100.0, pct_used)) / 100 * width)
    return "█" * filled + "░" * (width - filled)


def ago(at: datetime | None, now: datetime) -> str:
    if at is None:
        return "never"
    return f"{span((now - at).total_seconds())} ago"


def span(seconds: float) -> str:
    seconds = abs(seconds)
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f}m"
    if seconds < 48 * 3600:
        return f"{seconds // 3600:.0f}h{seconds % 3600 // 60:02.0f}m"
    return f"{seconds // 86400:.0f}d{seconds % 86400 // 3600:.0f}h"


def local_time(at: datetime, now: datetime) -> str:
    """Reset times in the user's own time zone, with how far away they are."""
    local = at.astimezone()
    fmt = "%H:%M" if local.date() == now.astimezone().date() else "%a %d %b %H:%M"
    return f"{local.strftime(fmt)} (in {span((at - now).total_seconds())})"


def render_window(w: QuotaWindow, now: datetime, outlook: str | None = None) -> str:
    reset = f"resets {local_time(w.resets_at, now)}" if w.resets_at else "reset unknown"
    counts = ""
    if w.limit is not None and w.remaining is not None:
        counts = f" {w.remaining:g}/{w.limit:g} left"
    stale = "  STALE" if w.stale else ""
    kind = " (rate)" if w.kind == WindowKind.RATE else ""
    return (
        f"    {w.key:<22} {bar(w.pct_used)} {w.pct_used:5.1f}% used{counts}{kind}  {reset}  "
        f"[{w.source}{f' via {w.origin}' if w.origin else ''}, {ago(w.updated_at, now)}]{stale}"
        + (f"  → {outlook}" if outlook else "")
    )


def render_shared(shared: SharedStatus, now: datetime) -> str:
    """One line on the link to other machines' daemons."""
    peers = ", ".join(f"{d} ({ago(at, now)})" for d, at in sorted(shared.peers.items())) or "none yet"
    if shared.connected:
        return f"shared state: {shared.server} as {shared.device}; other machines: {peers}\n"
    since = f" since {local_time(shared.unreachable_since, now)}" if shared.unreachable_since else ""
    return (
        f"shared state UNREACHABLE{since} ({shared.last_error}): {shared.server} as {shared.device}; "
        "routing on this machine's readings\n"
    )


def render_status(quotas: Sequence[ProviderQuota], now: datetime) -> str:
    lines: list[str] = []
    for q in sorted(quotas, key=lambda q: (not q.available, q.priority, q.provider_id)):
        left = f"{q.quota_pct * 100:.0f}% left" if q.quota_pct >= 0 else "quota unknown"
        lines.append(f"{q.provider_id:<16} {q.kind:<12} {q.status:<11} {left:<14} {q.reason}")
        if q.account:
            lines.append(f"    account {q.account}")
        if q.cooldown_until is not None:
            since = f", since {local_time(q.cooldown_since, now)}" if q.cooldown_since else ""
            lines.append(
                f"    cooldown until {local_time(q.cooldown_until, now)}{since}: {q.cooldown_reason}"
                f" (`bhoga cooldown clear {q.provider_id}` ends it now)"
            )
        if q.health != Health.HEALTHY:
            lines.append(f"    health: {q.health} ({q.consecutive_failures} failures; {q.last_error})")
        for model, health in sorted(q.model_health.items()):
            lines.append(f"    {model}: {health} (failing for this model while others answer)")
        if q.last_poll_error:
            lines.append(f"    last poll: {q.last_poll_error} ({ago(q.last_poll_at, now)})")
        lines.extend(
            render_window(w, now, q.outlook.get(w.key))
            for w in sorted(q.windows.values(), key=lambda w: w.key)
        )
    return "\n".join(lines) + "\n"


def render_ranking(ranking: Ranking) -> str:
    lines = [f"{ranking.model} (family {ranking.family}, strategy {ranking.strategy}):"]
    for i, c in enumerate(ranking.candidates, 1):
        mark = f"{i}." if c.eligible else " ✗"
        left = f"{c.quota_pct * 100:.0f}%" if c.quota_pct >= 0 else "?"
        score = f"score {c.score:+.2f}  " if c.score is not None else ""
        lines.append(f"  {mark:<3} {c.provider_id:<16} p{c.priority}  {left:>4}  {score}{c.reason}")
    return "\n".join(lines) + "\n"
