"""The optional /metrics endpoint over HTTP on localhost, for Prometheus scrapers."""

from __future__ import annotations

import socket
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import DaemonProcess


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_metrics_port_serves_the_same_exposition_as_the_rpc(make_daemon: Any) -> None:
    port = _free_port()
    d: DaemonProcess = make_daemon(f"server:\n  metrics_port: {port}\n")
    with d.router() as router:
        router.set_quota("claude_code", 60, weekly_pct=30)
    response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert response.status_code == 200 and response.headers["content-type"].startswith(
        "text/plain; version=0.0.4"
    )
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    used = {
        (s.labels["provider"], s.labels["window"]): s.value
        for s in families["bhoga_quota_used_percent"].samples
    }
    assert used[("claude_code", "weekly")] == 70.0
    assert httpx.get(f"http://127.0.0.1:{port}/other", timeout=10).status_code == 404
    assert httpx.post(f"http://127.0.0.1:{port}/metrics", timeout=10).status_code == 405


def test_metrics_port_in_use_does_not_stop_the_daemon(make_daemon: Any) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        d: DaemonProcess = make_daemon(f"server:\n  metrics_port: {taken.getsockname()[1]}\n")
        with d.router() as router:
            assert router.hello().protocol == 1
        assert "cannot serve metrics over HTTP" in d.log_text()
