"""The per-client rate limit: a burst, then the steady rate, per client, in bounded memory."""

from __future__ import annotations

from edge.capture.ratelimit import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_then_the_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=2, burst=3, clock=clock)
    assert [limiter.allow("a") for _ in range(4)] == [True, True, True, False]
    assert limiter.retry_after("a") == 1
    clock.now = 0.5  # one token back at 2 per second
    assert limiter.allow("a")
    assert not limiter.allow("a")


def test_clients_have_their_own_buckets() -> None:
    limiter = RateLimiter(rate=1, burst=1, clock=Clock())
    assert limiter.allow("a")
    assert not limiter.allow("a")
    assert limiter.allow("b")


def test_memory_is_bounded_by_forgetting_the_least_recent_client() -> None:
    limiter = RateLimiter(rate=1, burst=1, max_clients=2, clock=Clock())
    limiter.allow("a")
    limiter.allow("b")
    limiter.allow("c")  # "a" is forgotten
    assert len(limiter._buckets) == 2
    assert limiter.allow("a")  # starts again with a full bucket
