"""The upstream's rate limit: at most `rate` batches per second on average for every sender on
the store together (a fleet of edges shares Rokt's 270/s per account), bursts of one second's
worth. The bucket lives in the store (`edge.store.budgets`); a sender asks it before each
request and waits as long as it is told. Waiters in one process are served in order. A rate of
0 means no limit.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable

from edge.settings import Settings
from edge.store.budgets import Budgets


def budget_name(settings: Settings) -> str:
    """The bucket of the upstream account the settings send to (its key hashed: the store never
    holds the key itself)."""
    account = hashlib.sha256((settings.api_key or "").encode()).hexdigest()[:16]
    return f"upstream/{settings.upstream}/{account}"


class SharedBucket:
    def __init__(
        self,
        budgets: Budgets,
        name: str,
        rate: float,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.budgets = budgets
        self.name = name
        self.rate = rate
        self._sleep = sleep
        self._lock = asyncio.Lock()

    async def acquire(self, count: int) -> None:
        """Raises StoreError when the store cannot be asked (the request waits for a retry)."""
        if self.rate <= 0:
            return
        async with self._lock:
            while wait := await self.budgets.take_budget(self.name, self.rate, count):
                await self._sleep(wait)
