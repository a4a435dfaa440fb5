"""Out-of-range times from a harness cannot brick a real daemon, before or after a restart.

Two classes from issue 10, end to end through the socket, the client and the ``bhoga`` command: a
turn dated near year 9999 (which once made every later ``bhoga status`` an internal error, even after
a restart) and a ``retry-after`` decades ahead (which once cooled a provider for 73 years).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bhoga.errors import InvalidParams
from bhoga.quota.values import LONGEST_WINDOW
from tests.conftest import DaemonProcess
from tests.fakes.http_server import Reply, serving

MODEL = "claude-opus-4"


def _status_and_best_work(daemon: DaemonProcess) -> None:
    status = daemon.cli("status", "--json")
    assert status.returncode == 0, status.stderr
    json.loads(status.stdout)
    best = daemon.cli("best", MODEL)
    assert best.returncode == 0, best.stderr
    assert best.stdout.split("\t")[0] == "claude_code"
    with daemon.router() as router:
        rec = router.best_for(MODEL)
        assert rec is not None and rec.provider_id == "claude_code"


@pytest.mark.parametrize("at", ["9999-12-30T00:00:00Z", "1970-01-01T00:00:00Z", "2262-04-11T23:47:16Z"])
def test_a_turn_dated_out_of_range_is_refused_naming_the_field(daemon: DaemonProcess, at: str) -> None:
    with daemon.router() as router:
        router.set_quota("claude_code", 80)
        with pytest.raises(InvalidParams) as refused:
            router.call("turns.record", {"provider": "claude_code", "model": MODEL, "at": at})
        assert refused.value.data.get("field") == "at"
        assert refused.value.kind == "out_of_range"
        # Nothing of the refused turn was kept.
        assert router.turns() == []
    _status_and_best_work(daemon)
    daemon.restart()
    _status_and_best_work(daemon)


def test_a_retry_after_decades_ahead_does_not_cool_for_decades(daemon: DaemonProcess) -> None:
    with daemon.router() as router:
        router.set_quota("claude_code", 80)
        before = datetime.now(UTC)
        router.record_turn(
            "claude_code",
            MODEL,
            headers={"retry-after": "Wed, 21 Oct 2099 07:28:00 GMT"},
            status_code=429,
            wait=True,
        )
        quota = router.quotas()["claude_code:*"]
        # Advice no real window can justify is not believed: the default cooldown stands in for it.
        assert quota.cooldown_until is not None
        assert quota.cooldown_until < before + timedelta(minutes=10)
        # A long but believable one is kept, capped at the longest real window.
        router.record_turn(
            "claude_code",
            MODEL,
            headers={"retry-after": str(int(timedelta(days=31, hours=12).total_seconds()))},
            status_code=429,
            wait=True,
        )
        capped = router.quotas()["claude_code:*"].cooldown_until
        assert capped is not None and capped <= datetime.now(UTC) + LONGEST_WINDOW
        assert capped > datetime.now(UTC) + LONGEST_WINDOW - timedelta(minutes=10)
    daemon.restart()
    with daemon.router() as router:
        again = router.quotas()["claude_code:*"].cooldown_until
        assert again is not None and again <= datetime.now(UTC) + LONGEST_WINDOW
    status = daemon.cli("status")
    assert status.returncode == 0, status.stderr


def test_a_provider_answer_out_of_range_is_a_poll_failure_with_a_reason(make_daemon: Any) -> None:
    """OpenRouter's ``usage_monthly: 1e308`` over ``limit: 1e-300`` once became an infinite percent
    that went on the wire as ``null``: ``bhoga status`` printed a traceback and ``Router.quotas()``
    raised. Now the poll fails, saying why, and the rest of the answer stands."""
    with serving() as openrouter:
        openrouter.route(
            "/api/v1/key",
            Reply(body=b'{"data": {"limit": 1e-300, "usage_monthly": 1e308, "limit_reset": "monthly"}}'),
        )
        openrouter.route("/api/v1/credits", {"data": {"total_credits": 10, "total_usage": 4}})
        d: DaemonProcess = make_daemon(
            config=f"providers:\n  openrouter:\n    base_url: {openrouter.url}/api/v1\n",
            env={"OPENROUTER_API_KEY": "sk-or-v1-fixture"},
        )
        with d.router() as router:
            deadline = time.monotonic() + 20
            while router.quotas()["openrouter:*"].last_poll_at is None:
                assert time.monotonic() < deadline, "openrouter was never polled"
                time.sleep(0.1)
            q = router.quotas()["openrouter:*"]
            assert "out of range" in (q.last_poll_error or "") and "percent used inf" in (
                q.last_poll_error or ""
            )
            assert set(q.windows) == {"credits"} and q.windows["credits"].pct_used == 40.0
        status = d.cli("status")
        assert status.returncode == 0, status.stderr
        assert "out of range" in status.stdout
        assert "sk-or-v1-fixture" not in status.stdout + d.log_text()
