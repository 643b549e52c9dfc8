"""Arrivals: what intake requests left, kept until processing settles them.

    hold_arrival (a command that processes what it stores itself: an import) ──┐
                                                                               ▼
    put_arrival ──▶ waiting ──arrivals(n, lease)──▶ leased to this store ──settle──▶ gone
                       ▲                                │  (outbox items, skip records and
                       │                                │   identities written, the arrivals
                       │                                │   deleted: one transaction)
                       ├───────release_arrivals─────────┤
                       └─────────sweep_arrivals─────────┘ (lease expired: its holder died or hung;
                                                          or its holder known dead: owners.py)

A lease names its holder, the store object that took it (one per process: a process
incarnation), so that processes sharing a store process disjoint arrivals: `arrivals` takes the
oldest arrivals that no other holder's lease covers, in the order they came, and leases them to
this store until `lease_seconds` from now. An arrival this store already holds is taken again,
first, with its lease renewed: processing may take a slice and settle only its beginning (the
rest waits for the next slice, in order), or fail to settle and try again. A killed process's
arrivals are freed once it is known dead (`edge.store.owners`), at the latest when their lease
expires and a sweep frees them; duplicates that a process which only hung may then make are
harmless (outbox items are stored once per key).

Arrivals that share an identity key (`Arrival.keys`: a visitor's anonymousId or userId) are
processed in the order they came, whichever processes take them: one is not leased while an
older one sharing a key is held by another process (`in_order`), so a conversion is stitched
after the beacon and identify that came before it.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Final

from edge.store.values import Arrival, Intake, PutResult, StoredArrival

LEASE_SECONDS: Final = 10.0  # a slice takes milliseconds; a killed process's arrivals wait this


class Arrivals(ABC):
    """The arrivals role of a store (see the states above)."""

    @abstractmethod
    async def put_arrival(self, arrival: Arrival) -> None:
        """Store an intake request's arrival; returns once it is durable. Arrivals put at the
        same time share one transaction (the web service's hot path)."""

    @abstractmethod
    async def hold_arrival(
        self, arrival: Arrival, lease_seconds: float = LEASE_SECONDS
    ) -> StoredArrival:
        """Store an arrival already leased to this store, durably, for its writer to process and
        settle itself; should the writer die first, it is swept back like any other."""

    @abstractmethod
    async def arrivals(
        self, limit: int, lease_seconds: float = LEASE_SECONDS
    ) -> list[StoredArrival]:
        """Lease to this store the oldest `limit` arrivals not settled yet that no other
        holder's lease covers (its own first, renewed), in the order they came."""

    @abstractmethod
    async def settle(self, ids: Sequence[int], intake: Intake) -> PutResult:
        """Store what processing the arrivals `ids` produced and forget them, in one
        transaction: a crash before it leaves the arrivals to be processed again."""

    @abstractmethod
    async def release_arrivals(self, ids: Sequence[int]) -> None:
        """Give back arrivals this store holds and will not settle (processing stops): they
        wait for the next taker, in their place."""

    @abstractmethod
    async def sweep_arrivals(self) -> int:
        """Free the arrivals whose lease expired, whoever held them; how many."""


def in_order(
    candidates: Sequence[tuple[Any, ...]], held: Sequence[tuple[int, str | None]]
) -> list[tuple[Any, ...]]:
    """The candidates (rows: id first, keys last, in id order) that may be processed now: not
    one sharing an identity key with an older arrival another process holds (`held`: id and
    keys), nor with an older candidate left to wait for that reason."""
    blocked = [(id, set(json.loads(keys))) for id, keys in held if keys]
    waiting: set[str] = set()
    taken = []
    for row in candidates:
        keys = set(json.loads(row[-1])) if row[-1] else set()
        older = set().union(*(held_keys for id, held_keys in blocked if id < row[0]))
        if keys & (older | waiting):
            waiting |= keys
            continue
        taken.append(row)
    return taken
