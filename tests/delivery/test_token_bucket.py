"""The token bucket: Rokt's 270 batches/s on average, whatever the request sizes."""

from __future__ import annotations

import pytest

from edge.delivery.ratelimit import TokenBucket

pytestmark = pytest.mark.anyio


class Time:
    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


async def test_a_full_bucket_lets_one_seconds_worth_through_at_once() -> None:
    time = Time()
    bucket = TokenBucket(270, clock=time.clock, sleep=time.sleep)
    for _ in range(27):
        await bucket.acquire(10)
    assert time.now == 0.0


async def test_beyond_the_burst_the_average_is_the_rate() -> None:
    time = Time()
    bucket = TokenBucket(100, clock=time.clock, sleep=time.sleep)
    for _ in range(30):
        await bucket.acquire(10)  # 300 batches: 100 at once, then 200 at 100/s
    assert time.now == pytest.approx(2.0)


async def test_a_request_larger_than_the_bucket_goes_and_leaves_a_debt() -> None:
    time = Time()
    bucket = TokenBucket(50, clock=time.clock, sleep=time.sleep)
    await bucket.acquire(100)
    assert time.now == 0.0
    await bucket.acquire(100)  # waits for the debt (50) and a full bucket (50)
    assert time.now == pytest.approx(2.0)


async def test_a_rate_of_zero_is_no_limit() -> None:
    time = Time()
    bucket = TokenBucket(0, clock=time.clock, sleep=time.sleep)
    for _ in range(1000):
        await bucket.acquire(100)
    assert time.now == 0.0
