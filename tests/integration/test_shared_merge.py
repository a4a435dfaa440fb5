"""The shared-state merge scripts on a real Redis server: machines write in any order, replay after a
reconnect, and write at the same time, so the result must not depend on order or repetition."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from bhoga.protocol import QuotaWindow, Source
from bhogad.shared import records, scripts
from bhogad.shared.records import Keys
from tests.fakes.redis_server import RedisServer, server_binary

pytestmark = pytest.mark.skipif(
    server_binary() is None,
    reason="no redis-server or valkey-server on PATH (.ci/run installs Debian's redis-server)",
)

T0 = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
KEYS = Keys("merge-test")
ACCOUNT = "claude:org"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    import redis

    binary = server_binary()
    assert binary is not None
    server = RedisServer(Path(tmp_path_factory.mktemp("redis")), binary)
    server.start()
    try:
        with redis.Redis(port=server.port) as c:
            yield c
    finally:
        server.stop()


# A reading: which period (its reset), when it was taken, how much was used, by whom.
readings = st.lists(
    st.tuples(
        st.sampled_from([0, 1, 2]),  # period index: resets 5 h apart
        st.integers(min_value=0, max_value=3600),  # seconds after T0
        st.floats(min_value=0, max_value=120, allow_nan=False),
        st.sampled_from(["laptop", "server-1", "server-2"]),
    ),
    min_size=1,
    max_size=8,
)


def write(client: Any, key: str, reading: tuple[int, int, float, str]) -> None:
    period, seconds, used, device = reading
    w = QuotaWindow(
        name="burst",
        pct_used=used,
        resets_at=T0 + timedelta(hours=5 * (period + 1)),
        updated_at=T0 + timedelta(seconds=seconds),
        window_min=300,
        source=Source.OAUTH,
    )
    used_, resets, updated, body, expire = records.window_fields(w, device, T0)
    client.eval(
        scripts.MERGE_WINDOW,
        2,
        key,
        KEYS.windows(ACCOUNT),
        used_,
        resets,
        updated,
        body,
        # Far in the future: the test server's clock is now, the readings are from 2026.
        expire + 10**12,
        "burst",
        records.SAME_PERIOD_MS,
    )


def stored(client: Any, key: str) -> tuple[float, QuotaWindow | None]:
    got = records.window_from_fields(client.hgetall(key), T0 + timedelta(hours=1))
    assert got is not None
    return float(client.hget(key, "used")), got[0]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(readings=readings, seed=st.integers(0, 2**16))
def test_any_order_and_any_replay_gives_one_state(client: Any, readings: list[Any], seed: int) -> None:
    first, second = f"{KEYS.window(ACCOUNT, 'a')}", f"{KEYS.window(ACCOUNT, 'b')}"
    client.delete(first, second)
    for r in readings:
        write(client, first, r)
    shuffled = list(readings)
    random.Random(seed).shuffle(shuffled)
    for r in shuffled + shuffled[: len(shuffled) // 2]:  # and a replay of some, as after a reconnect
        write(client, second, r)
    used_a, w_a = stored(client, first)
    used_b, w_b = stored(client, second)
    assert used_a == used_b
    assert w_a is not None and w_b is not None and w_a.resets_at == w_b.resets_at

    # The latest period wins whatever its usage; within it usage is the most any reading saw, and
    # the rest of the reading is the newest one's.
    latest = max(r[0] for r in readings)
    in_period = [r for r in readings if r[0] == latest]
    assert used_a == max(r[2] for r in in_period)
    assert w_a.resets_at == T0 + timedelta(hours=5 * (latest + 1))
    assert w_a.updated_at == T0 + timedelta(seconds=max(r[1] for r in in_period))


def test_a_cooldown_only_grows(client: Any) -> None:
    key = KEYS.cooldown(ACCOUNT)
    client.delete(key)
    later = int((datetime.now(UTC) + timedelta(minutes=10)).timestamp() * 1000)
    sooner = later - 60_000
    assert client.eval(scripts.EXTEND_COOLDOWN, 1, key, later, "HTTP 429", "laptop") == 1
    assert client.eval(scripts.EXTEND_COOLDOWN, 1, key, sooner, "HTTP 429", "server-1") == 0
    assert int(client.hget(key, "until")) == later
    assert client.hget(key, "device") == b"laptop"
    assert 0 < client.pttl(key) <= 10 * 60 * 1000


def test_one_lease_holder_at_a_time(client: Any) -> None:
    key = KEYS.lease(ACCOUNT)
    client.delete(key)
    assert client.eval(scripts.TAKE_LEASE, 1, key, "laptop", 5000) == 0
    left = client.eval(scripts.TAKE_LEASE, 1, key, "server-1", 5000)
    assert 0 < left <= 5000
    assert client.eval(scripts.TAKE_LEASE, 1, key, "laptop", 5000) == 0  # the holder renews
    client.delete(key)  # the holder is gone and its lease ran out
    assert client.eval(scripts.TAKE_LEASE, 1, key, "server-1", 5000) == 0
