"""A token bucket: at most `rate` batches per second on average, bursts of one second's worth.

A request may take more tokens than the bucket holds (100 batches at 50/s): it waits for a full
bucket, goes, and leaves the bucket in debt, so the average stays at `rate`. Waiters are served
in order. A rate of 0 means no limit.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class TokenBucket:
    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.rate = rate
        self.capacity = max(rate, 1.0)
        self.tokens = self.capacity
        self._clock = clock
        self._sleep = sleep
        self._updated = clock()
        self._lock = asyncio.Lock()

    async def acquire(self, count: int) -> None:
        if self.rate <= 0:
            return
        async with self._lock:
            needed = min(count, self.capacity)
            self._refill()
            if self.tokens < needed:
                await self._sleep((needed - self.tokens) / self.rate)
                self._refill()
            self.tokens -= count

    def _refill(self) -> None:
        now = self._clock()
        self.tokens = min(self.capacity, self.tokens + (now - self._updated) * self.rate)
        self._updated = now
