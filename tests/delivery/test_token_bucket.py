"""The rate limit: Rokt's 270 batches/s on average, whatever the request sizes, for every sender
on the store together (the bucket is the store's: `edge.store.budgets`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.delivery.ratelimit import SharedBucket
from edge.store.sqlite import SQLiteStore

pytestmark = pytest.mark.anyio


class Time:
    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def time() -> Time:
    return Time()


@pytest.fixture
def store(tmp_path: Path, time: Time) -> Iterator[SQLiteStore]:
    store = SQLiteStore(tmp_path / "edge.db", clock=time.clock)
    yield store
    store.close()


def bucket(store: SQLiteStore, time: Time, rate: float) -> SharedBucket:
    return SharedBucket(store, "upstream/capi/account", rate, sleep=time.sleep)


async def test_a_full_bucket_lets_one_seconds_worth_through_at_once(
    store: SQLiteStore, time: Time
) -> None:
    limit = bucket(store, time, 270)
    for _ in range(27):
        await limit.acquire(10)
    assert time.now == 0.0


async def test_beyond_the_burst_the_average_is_the_rate(store: SQLiteStore, time: Time) -> None:
    limit = bucket(store, time, 100)
    for _ in range(30):
        await limit.acquire(10)  # 300 batches: 100 at once, then 200 at 100/s
    assert time.now == pytest.approx(2.0)


async def test_a_request_larger_than_the_bucket_goes_and_leaves_a_debt(
    store: SQLiteStore, time: Time
) -> None:
    limit = bucket(store, time, 50)
    await limit.acquire(100)
    assert time.now == 0.0
    await limit.acquire(100)  # waits for the debt (50) and a full bucket (50)
    assert time.now == pytest.approx(2.0)


async def test_a_rate_of_zero_is_no_limit(store: SQLiteStore, time: Time) -> None:
    limit = bucket(store, time, 0)
    for _ in range(1000):
        await limit.acquire(100)
    assert time.now == 0.0


async def test_two_senders_on_one_store_share_one_rate(tmp_path: Path, time: Time) -> None:
    # Given two edges' senders on one store, each sending 100 batches in requests of 10
    stores = [SQLiteStore(tmp_path / "shared.db", clock=time.clock) for _ in range(2)]
    try:
        limits = [bucket(store, time, 100) for store in stores]
        for _ in range(10):
            for limit in limits:
                await limit.acquire(10)
        # Then together they took 200 batches at the rate of one: 100 at once, 100 at 100/s
        assert time.now == pytest.approx(1.0)
    finally:
        for store in stores:
            store.close()
