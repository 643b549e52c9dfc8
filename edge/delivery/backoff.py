"""The retry policy: pure functions of the attempt number and the upstream's headers.

`backoff(n)` is the wait after the n-th failure in a row: exponential from `base`, capped at
`cap`, with "equal jitter" (half of the delay fixed, half random) so that many senders recovering
from the same outage do not come back in step, and no wait is ever close to zero.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Final

MAX_RETRY_AFTER: Final = 3600.0  # a Retry-After beyond an hour is taken as an hour


def backoff(
    attempt: int,
    *,
    base: float = 1.0,
    cap: float = 300.0,
    random_fraction: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait after failure number `attempt` (1, 2, …): in [d/2, d], d = base·2^(n-1)."""
    exponent = min(max(attempt, 1) - 1, 64)  # 2**64 is already past any cap
    delay = min(cap, base * 2.0**exponent)
    return delay / 2 + random_fraction() * delay / 2


def retry_after(value: str | None, now: float) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None when unusable."""
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - now
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)
