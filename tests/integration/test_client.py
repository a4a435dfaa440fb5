"""The real client against a real daemon: the library's API, reconnects, threads, fork, asyncio."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
from typing import Any

import pytest

import bhoga
from bhoga import DaemonNotRunning, InvalidParams, ProviderStatus, Router, operations
from bhoga.aio import AsyncRouter, Reply, subscribe
from bhoga.errors import DaemonStartFailed
from bhoga.protocol import (
    DaemonStatus,
    Lagged,
    Method,
    ModelParams,
    QuotaChanged,
    Ranking,
    SetQuotaParams,
)
from tests.conftest import DaemonProcess


def test_library_api_round_trip(daemon: DaemonProcess) -> None:
    with daemon.router() as router:
        assert router.best_for("claude-opus-4") is None  # nothing available on a bare machine
        router.set_quota("claude_code", 90.0, weekly_pct=60.0)
        router.set_quota("anthropic_api", pct_remaining=75.0)
        rec = router.best_for("claude-opus-4")
        assert rec is not None
        assert (rec.provider_id, rec.model_id, rec.hermes_model, rec.priority) == (
            "anthropic_api",
            "claude-opus-4",
            "claude-opus-4",
            2,
        )
        assert rec.quota_pct == pytest.approx(0.75) and rec.status is ProviderStatus.OK
        quotas = router.quotas()
        assert quotas["claude_code:*"].windows["weekly"].pct_remaining == pytest.approx(60.0)
        assert quotas["claude_code:*"].quota_pct == pytest.approx(0.60)


def test_documented_override_pattern_takes_effect(daemon: DaemonProcess) -> None:
    """§7 item 19: best_for → set_quota → best_for used to have no effect."""
    with daemon.router() as router:
        router.set_quota("claude_code", 80)
        router.set_quota("anthropic_api", 50)
        first = router.best_for("claude-opus-4")
        router.record_turn("claude_code", "claude-opus-4", 100, 20, wait=True)
        router.set_quota("claude_code", 5, weekly_pct=5)
        second = router.best_for("claude-opus-4")
    assert first is not None and first.provider_id == "claude_code"
    assert second is not None and second.provider_id == "anthropic_api"


def test_set_quota_rejects_out_of_range_as_value_error(daemon: DaemonProcess) -> None:
    with daemon.router() as router, pytest.raises(ValueError, match="0–100"):
        router.set_quota("claude_code", 101)
    with daemon.router() as router, pytest.raises(InvalidParams) as info:
        router.set_quota("no-such-provider", 50)
    assert info.value.kind == "unknown_provider"


def test_record_turn_is_fire_and_forget_yet_nothing_is_lost(daemon: DaemonProcess) -> None:
    with daemon.router() as router:
        for i in range(300):
            router.record_turn("anthropic_api", "claude-opus-4", i, 1, {"X-Ignored": "1"}, 200, agent="a")
        stored = router.turns(limit=1000)  # a request on the same connection: answered after the turns
    assert [t.input_tokens for t in stored] == list(range(300))
    assert all(t.agent == "a" for t in stored)


def test_daemon_not_running_names_the_socket_and_the_fix(tmp_root: Any) -> None:
    path = tmp_root / "nothing.sock"
    with pytest.raises(DaemonNotRunning) as info, Router(socket_path=path) as router:
        router.best_for("gpt-5.4")
    message = str(info.value)
    assert str(path) in message and "bhogad" in message
    # record_turn without wait must not raise into a harness's hot path; it counts the drop.
    router = Router(socket_path=path)
    assert router.record_turn("openai_api", "gpt-5.4", 1, 1) is None
    assert router.dropped_turns == 1


def test_reconnects_after_a_daemon_restart(daemon: DaemonProcess) -> None:
    router = daemon.router()
    router.set_quota("claude_code", 40)
    daemon.restart()
    # The old connection is dead; the next call reconnects and sees the persisted quota.
    assert router.quotas()["claude_code:*"].quota_pct == pytest.approx(0.40)
    router.close()


def test_thread_safe_shared_router(daemon: DaemonProcess) -> None:
    router = daemon.router()
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(100):
                router.record_turn("anthropic_api", f"m{n}", i, 0, wait=(i % 10 == 0))
                assert router.best_for("claude-opus-4") is not None
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    turns = router.turns(limit=5000)
    router.close()
    assert len(turns) == 800
    for n in range(8):  # each thread's turns arrived in its own order
        assert [t.input_tokens for t in turns if t.model == f"m{n}"] == list(range(100))


def test_fork_child_gets_its_own_connection(daemon: DaemonProcess) -> None:
    router = daemon.router()
    router.set_quota("claude_code", 70)
    pid = os.fork()
    if pid == 0:  # child: use the inherited router
        code = 0
        try:
            router.set_quota("openai-codex", 33)
            if router.quotas()["openai-codex:*"].quota_pct != pytest.approx(0.33):
                code = 1
        except BaseException:
            code = 2
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    # The parent's connection was not disturbed by the child.
    assert router.quotas()["openai-codex:*"].quota_pct == pytest.approx(0.33)
    router.close()


def test_async_router_and_events(daemon: DaemonProcess) -> None:
    async def main() -> None:
        # subscribe() returns once the daemon acknowledged: no sleep, and the first event is not missed.
        async with subscribe(daemon.socket) as events, AsyncRouter(socket_path=daemon.socket) as router:
            await router.set_quota("claude_code", 55)
            event = await asyncio.wait_for(anext(events), 10)
            assert isinstance(event, QuotaChanged)
            assert event.provider == "claude_code" and event.cause == "manual"
            assert event.quota.quota_pct == pytest.approx(0.55)
            turn_id = await router.record_turn("claude_code", "claude-opus-4", 10, 5, agent="a1", wait=True)
            rec = await router.best_for("claude-opus-4", agent="a1")
            turns = await router.turns(agent="a1")
            usage = await router.usage("all", group_by="agent")
            status = await router.status()
            with pytest.raises(InvalidParams) as refused:
                await router.set_quota("claude_code", 150)
            assert refused.value.kind == "out_of_range"
            assert (await router.hello()).protocol == 1  # the connection survived the error reply
            # A snapshot sent on the subscribed connection comes back in order among the events.
            sent = await events.send(operations.quotas())
            while not isinstance(reply := await asyncio.wait_for(anext(events), 10), Reply):
                pass
            assert reply.id == sent and reply.result["claude_code:*"].quota_pct == pytest.approx(0.55)
        assert turn_id == 1
        assert rec is not None and rec.provider_id == "claude_code"
        assert [t.id for t in turns] == [1] and status.turns_stored == 1
        assert [(row.key, row.turns, row.input_tokens) for row in usage.rows] == [(["a1"], 1, 10)]

    asyncio.run(main())


def test_async_record_turn_is_fire_and_forget_yet_nothing_is_lost(daemon: DaemonProcess) -> None:
    async def main() -> list[int]:
        async with AsyncRouter(socket_path=daemon.socket) as router:
            for i in range(200):
                assert await router.record_turn("anthropic_api", "claude-opus-4", i, 1) is None
            stored = await router.turns(limit=1000)  # same connection: answered after the turns
            assert router.dropped_turns == 0
        return [t.input_tokens for t in stored]

    assert asyncio.run(main()) == list(range(200))


def test_async_router_without_daemon_drops_turns_and_names_the_socket(tmp_root: Any) -> None:
    path = tmp_root / "nothing.sock"

    async def main() -> None:
        router = AsyncRouter(socket_path=path)
        assert await router.record_turn("openai_api", "gpt-5.4", 1, 1) is None
        assert router.dropped_turns == 1
        with pytest.raises(DaemonNotRunning, match=str(path)):
            await router.best_for("gpt-5.4")
        with pytest.raises(DaemonNotRunning, match=str(path)):
            async with subscribe(path):
                pass
        await router.close()

    asyncio.run(main())


def test_subscription_reports_lag_and_recovers_with_a_snapshot(daemon: DaemonProcess) -> None:
    """A subscriber that stops reading is told it lagged (events were dropped), then resynchronises."""

    async def main() -> None:
        async with subscribe(daemon.socket) as events:
            # Not reading while the daemon produces far more events than its per-subscriber backlog.
            with daemon.router() as router:
                for i in range(4000):  # as notifications: the daemon needs no round trip per event
                    params = SetQuotaParams(provider="claude_code", pct_remaining=i % 100)
                    router.notify(Method.SET_QUOTA, params)
                router.set_quota("claude_code", 99)  # a request: every notification before it is done
            seen: list[type] = []
            with contextlib.suppress(TimeoutError):
                while True:  # what the daemon buffered before it started dropping
                    seen.append(type(await events.next(idle_s=2.0)))
            assert seen and set(seen) == {QuotaChanged}
            # The daemon says so with the next event it can send, ahead of that event.
            with daemon.router() as router:
                router.set_quota("claude_code", 42)
            assert isinstance(await asyncio.wait_for(anext(events), 30), Lagged)
            after = await asyncio.wait_for(anext(events), 30)
            assert isinstance(after, QuotaChanged) and after.quota.quota_pct == pytest.approx(0.42)
            sent = await events.send(operations.quotas())
            while not isinstance(reply := await asyncio.wait_for(anext(events), 30), Reply):
                pass
            assert reply.id == sent
            assert reply.result["claude_code:*"].quota_pct == pytest.approx(0.42)

    asyncio.run(main())


def test_import_bhoga_stays_light() -> None:
    import subprocess
    import sys

    heavy = "('anyio', 'structlog', 'yaml', 'httpx', 'bhogad', 'ruamel')"
    code = f"import sys, bhoga; print(' '.join(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
    assert callable(bhoga.model_family) and callable(bhoga.calibrate)


def test_autostart_starts_a_daemon_when_none_runs(tmp_root: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """``Router(autostart=True)`` spawns bhogad itself; several racing starters end with one daemon."""
    run = tmp_root / "run"
    run.mkdir(mode=0o700)
    # The spawned daemon inherits this environment: keep its state and config inside the test.
    monkeypatch.setenv("BHOGA_STATE", str(tmp_root / "state"))
    monkeypatch.setenv("BHOGA_CONFIG", str(tmp_root / "none.yaml"))
    sock = run / "auto.sock"
    routers = [Router(socket_path=sock, autostart=True) for _ in range(3)]
    try:
        pids = {router.hello().pid for router in routers}
        assert len(pids) == 1  # the instance lock let exactly one of the spawned daemons serve
        routers[0].set_quota("claude_code", 50)
        assert routers[2].quotas()["claude_code:*"].quota_pct == pytest.approx(0.5)
    finally:
        for router in routers:
            router.close()
        for pid in pids:
            os.kill(pid, signal.SIGTERM)


def test_autostart_reports_the_daemons_own_start_up_error(
    tmp_root: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A daemon that cannot start: the error is its own words and names the log that holds them."""
    run = tmp_root / "run"
    run.mkdir(mode=0o700)
    state = tmp_root / "state"
    config = tmp_root / "config.yaml"
    config.write_text("routing:\n  strategy: [not, a, strategy]\n")
    monkeypatch.setenv("BHOGA_STATE", str(state))
    monkeypatch.setenv("BHOGA_CONFIG", str(config))
    with pytest.raises(DaemonStartFailed) as info, Router(socket_path=run / "a.sock", autostart=True) as r:
        r.best_for("claude-opus-4")
    error = info.value
    assert isinstance(error, DaemonNotRunning)  # what harnesses already catch
    log = state / "bhogad.log"
    assert error.log == str(log) and str(log) in str(error)
    assert "config" in error.reason and str(config) in error.reason
    assert "autostart=True" not in str(error)  # the old advice, wrong when autostart was on
    assert error.reason in log.read_text()


def test_call_by_operation_is_typed_by_its_result(daemon: DaemonProcess) -> None:
    async def via_async() -> Ranking:
        async with AsyncRouter(socket_path=daemon.socket) as router:
            return await router.call(operations.RANK, ModelParams(model="claude-opus-4"))

    with daemon.router() as router:
        ranking = router.call(operations.RANK, ModelParams(model="claude-opus-4"))
        status = router.call(operations.STATUS, None)
        raw = router.call("daemon.status")  # by name: decoded as plain JSON
    assert isinstance(ranking, Ranking) and ranking.model == "claude-opus-4"
    assert isinstance(status, DaemonStatus) and raw["pid"] == status.pid
    assert asyncio.run(via_async()) == ranking
