"""The exposition renderer on its own: escaping, counters and histograms, read back by Prometheus's
parser so "valid" means what a scraper means by it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client.parser import text_string_to_metric_families

from bhoga.protocol import ProviderKind, ProviderQuota, QuotaWindow
from bhogad.observability.metrics import Metrics, render

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def parse(text: str) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    return {
        f.name: [(s.name, s.labels, s.value) for s in f.samples] for f in text_string_to_metric_families(text)
    }


def test_awkward_label_values_survive_the_round_trip() -> None:
    window = QuotaWindow(name='we"ird\\name\nx', pct_used=12.5, resets_at=NOW + timedelta(hours=1))
    q = ProviderQuota(provider_id="p", kind=ProviderKind.API_KEY, windows={window.key: window})
    got = parse(render(Metrics(), [q], NOW, version="1", started_at=NOW, connections=0, subscribers=0))
    ((_, labels, value),) = got["bhoga_quota_used_percent"]
    assert labels == {"provider": "p", "window": 'we"ird\\name\nx'} and value == 12.5


def test_counters_and_histogram() -> None:
    m = Metrics()
    m.count_poll("claude_code", ok=True)
    m.count_poll("claude_code", ok=True)
    m.count_poll("claude_code", ok=False)
    for seconds in (0.0002, 0.003, 7.0, 60.0):
        m.observe_rpc("quota.list", seconds)
    m.observe_rpc("quota.set", 0.001, failed=True)
    got = parse(render(m, [], NOW, version="1", started_at=NOW, connections=3, subscribers=1))
    assert {(labels["result"], v) for _, labels, v in got["bhoga_polls"]} == {("ok", 2), ("error", 1)}
    hist = {
        (n, labels.get("le")): v
        for n, labels, v in got["bhoga_rpc_duration_seconds"]
        if labels["method"] == "quota.list"
    }
    assert hist[("bhoga_rpc_duration_seconds_bucket", "0.00025")] == 1
    assert hist[("bhoga_rpc_duration_seconds_bucket", "0.005")] == 2
    assert hist[("bhoga_rpc_duration_seconds_bucket", "10")] == 3
    assert hist[("bhoga_rpc_duration_seconds_bucket", "+Inf")] == 4
    assert hist[("bhoga_rpc_duration_seconds_count", None)] == 4
    assert abs(hist[("bhoga_rpc_duration_seconds_sum", None)] - 67.0032) < 1e-9
    assert got["bhoga_rpc_errors"] == [("bhoga_rpc_errors_total", {"method": "quota.set"}, 1)]
    assert got["bhoga_connected_clients"] == [("bhoga_connected_clients", {}, 3)]


def test_unknown_remaining_is_absent_not_minus_one() -> None:
    q = ProviderQuota(provider_id="p", quota_pct=-1.0)
    got = parse(render(Metrics(), [q], NOW, version="1", started_at=NOW, connections=0, subscribers=0))
    assert got["bhoga_provider_remaining_ratio"] == []
