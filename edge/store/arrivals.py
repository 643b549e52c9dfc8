"""Arrivals: what intake requests left, kept until processing settles them.

put_arrival ──▶ waiting ──arrivals(n)──▶ processed ──settle──▶ gone (outbox items, skip
                                                               records and identities
                                                               written, the arrivals
                                                               deleted: one transaction)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from edge.store.values import Arrival, Intake, PutResult, StoredArrival


class Arrivals(ABC):
    """The arrivals role of a store (see the states above)."""

    @abstractmethod
    async def put_arrival(self, arrival: Arrival) -> None:
        """Store an intake request's arrival; returns once it is durable. Arrivals put at the
        same time share one transaction (the web service's hot path)."""

    @abstractmethod
    async def arrivals(self, limit: int) -> list[StoredArrival]:
        """The oldest `limit` arrivals not settled yet, in the order they came."""

    @abstractmethod
    async def settle(self, ids: Sequence[int], intake: Intake) -> PutResult:
        """Store what processing the arrivals `ids` produced and forget them, in one
        transaction: a crash before it leaves the arrivals to be processed again."""
