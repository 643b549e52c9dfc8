"""A per-client rate limit: a token bucket per IP address, kept for the busiest recent clients.

Memory is bounded: beyond `max_clients` the least recently seen client is forgotten (it then
starts again with a full bucket, which errs on the side of accepting events).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable


class RateLimiter:
    def __init__(
        self,
        rate: float,
        burst: float,
        *,
        max_clients: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.max_clients = max_clients
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, when

    def allow(self, client: str) -> bool:
        """Take one token for `client`; False when it has none left."""
        now = self._clock()
        tokens, updated = self._buckets.pop(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - updated) * self.rate)
        allowed = tokens >= 1.0
        self._buckets[client] = (tokens - 1.0 if allowed else tokens, now)
        if len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        return allowed

    def exhausted(self, client: str) -> bool:
        """Whether `client` has no token left (taking none)."""
        found = self._buckets.get(client)
        if found is None:
            return False
        tokens, updated = found
        return min(self.burst, tokens + (self._clock() - updated) * self.rate) < 1.0

    def retry_after(self, client: str) -> int:
        """Whole seconds until `client` has a token again (for the Retry-After header)."""
        tokens, _ = self._buckets.get(client, (self.burst, 0.0))
        missing = max(0.0, 1.0 - tokens)
        return max(1, int(missing / self.rate + 0.999)) if self.rate > 0 else 1
