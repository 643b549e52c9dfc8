"""Budgets: token buckets kept in the store, so that a limit holds for every process on it as a
whole: Rokt's 270 batches/s per account for a fleet of edges, not per edge.

A bucket fills at `rate` tokens a second up to one second's worth (at least one token). A taker
asks for what its request needs and is told either that it took them or how long to wait before
asking again; a request needing more than a full bucket goes once the bucket is full and leaves it
in debt, so the average stays at `rate` whatever the request sizes (`spend`, the rule every
backend applies in one transaction).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Final, NamedTuple

# A wait this short counts as none: waiting (needed - tokens) / rate refills the bucket to what
# was needed give or take the clock's rounding (0.2 µs at today's epoch), which must not ask for
# another wait. The bucket goes that much into debt: the average holds.
TOLERANCE_SECONDS: Final = 1e-3


class Bucket(NamedTuple):
    tokens: float  # negative: in debt
    updated_at: float  # the store's clock


def spend(bucket: Bucket | None, now: float, rate: float, count: float) -> tuple[Bucket, float]:
    """The bucket after asking for `count` tokens at `now` (None: a bucket never used, full),
    and the seconds to wait before asking again (0: taken)."""
    capacity = max(rate, 1.0)
    if bucket is None:
        tokens = capacity
    else:
        tokens = min(capacity, bucket.tokens + max(0.0, now - bucket.updated_at) * rate)
    wait = (min(count, capacity) - tokens) / rate
    if wait > TOLERANCE_SECONDS:
        return Bucket(tokens, now), wait
    return Bucket(tokens - count, now), 0.0


class Budgets(ABC):
    """The budgets role of a store."""

    @abstractmethod
    async def take_budget(self, name: str, rate: float, count: float) -> float:
        """Take `count` tokens from the bucket `name` (`spend`, with `rate`) in one transaction;
        0 when taken, else the seconds to wait before asking again."""
