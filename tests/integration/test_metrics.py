"""``daemon.metrics`` and ``bhoga metrics``: Prometheus text that Prometheus's own parser accepts."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import DaemonProcess


def samples(families: dict[str, Any], family: str, sample: str | None = None) -> dict[tuple[str, ...], float]:
    """``{label values in order: value}`` for one family's samples (of one sample name)."""
    name = sample or family
    return {tuple(s.labels.values()): s.value for s in families[family].samples if s.name == name}


def test_metrics_parse_and_say_what_happened(daemon: DaemonProcess) -> None:
    resets = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=3)
    with daemon.router() as router:
        router.set_quota("claude_code", 30, weekly_pct=60, resets_at=resets)
        router.record_turn("anthropic_api", "claude-sonnet-4", 100, 20, wait=True)
        router.record_turn("anthropic_api", "claude-sonnet-4", 100, 20, wait=True)
        router.record_turn(
            "anthropic_api", "claude-sonnet-4", status_code=429, headers={"retry-after": "120"}, wait=True
        )
        for _ in range(5):
            router.best_for("claude-sonnet-4")

    done = daemon.cli("metrics")
    assert done.returncode == 0, done.stderr
    families = {f.name: f for f in text_string_to_metric_families(done.stdout)}

    assert samples(families, "bhoga_turns", "bhoga_turns_total") == {
        ("anthropic_api", "200"): 2,
        ("anthropic_api", "429"): 1,
    }
    used = samples(families, "bhoga_quota_used_percent")
    assert used[("claude_code", "burst")] == 70 and used[("claude_code", "weekly")] == 40
    reset_at = samples(families, "bhoga_quota_window_resets_at_seconds")
    assert reset_at[("claude_code", "burst")] == resets.timestamp()
    cooldown = samples(families, "bhoga_provider_cooldown_remaining_seconds")
    assert 60 < cooldown[("anthropic_api",)] <= 120
    assert cooldown[("claude_code",)] == 0
    assert samples(families, "bhoga_provider_available")[("claude_code", "subscription")] == 1
    assert "bhoga_polls" in families  # declared even before the first poll
    # The `bhoga metrics` command's own connection is open while the daemon renders.
    assert samples(families, "bhoga_connected_clients")[()] >= 1

    rpc = families["bhoga_rpc_duration_seconds"]
    assert rpc.type == "histogram"
    buckets = [
        s for s in rpc.samples if s.name.endswith("_bucket") and s.labels["method"] == "router.best_for"
    ]
    counts = [s.value for s in buckets]
    assert counts == sorted(counts) and buckets[-1].labels["le"] == "+Inf"
    count = samples(families, "bhoga_rpc_duration_seconds", "bhoga_rpc_duration_seconds_count")
    assert count[("router.best_for",)] == 5 == counts[-1]


def test_every_series_is_unique(daemon: DaemonProcess) -> None:
    with daemon.router() as router:
        router.set_quota("openai-codex", 10, model="gpt-5-codex")
        text: str = router.call("daemon.metrics", None, str)
    series = [line.rsplit(" ", 1)[0] for line in text.splitlines() if line and not line.startswith("#")]
    duplicates = [s for s, group in itertools.groupby(sorted(series)) if len(list(group)) > 1]
    assert not duplicates
    assert list(text_string_to_metric_families(text))
