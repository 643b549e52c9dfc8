"""Owners: each process on a store beats while alive; a dead one's arrival leases and outbox
claims are freed the moment it is known dead, not when each lease runs out
(`edge.store.owners`); on every backend."""

from __future__ import annotations

import os
import socket

import pytest

from edge.store import Store
from edge.store.values import Intake
from tests.outbound import conversion
from tests.store.conftest import Clock
from tests.store.contract.backends import Backend
from tests.store.contract.steps import arrival

pytestmark = pytest.mark.anyio

LONG_LEASE = 120.0  # the sender's default: what a dead owner's claims would otherwise wait


async def holding(store: Store, arrivals: int, items: int) -> None:
    """`store` leases `arrivals` arrivals and claims `items` outbox items (others may wait)."""
    await store.put(Intake(outbound=[conversion(n) for n in range(items)]))
    for n in range(arrivals):
        await store.put_arrival(arrival(n))
    assert len(await store.arrivals(arrivals, lease_seconds=LONG_LEASE)) == arrivals
    assert len(await store.claim(items, lease_seconds=LONG_LEASE)) == items


async def test_a_beating_owner_is_listed_with_where_it_runs_and_what_it_holds(
    store: Store,
) -> None:
    await store.heartbeat()
    await holding(store, arrivals=2, items=3)
    [owner] = await store.owners()
    assert owner.owner == store.owner
    assert (owner.host, owner.pid) == (socket.gethostname(), os.getpid())
    assert (owner.arrivals, owner.items) == (2, 3)
    assert (await store.stats()).owners == [owner]


async def test_a_silent_owners_leases_and_claims_are_freed_at_once_and_it_is_forgotten(
    store: Store, backend: Backend, clock: Clock
) -> None:
    # Given an edge holding arrivals and items under long leases, then killed (it beats no more)
    await store.heartbeat()
    await holding(store, arrivals=2, items=3)
    survivor = backend.open()
    await survivor.heartbeat()

    # Then while it may only be slow, nothing of it is taken
    clock.now += 4
    await survivor.heartbeat()
    assert await survivor.sweep_dead_owners(silent_seconds=5) == 0
    assert await survivor.arrivals(10) == []

    # and once it has been silent long enough, everything it held is free at once, long before
    # its leases would have run out, and it is forgotten; the survivor keeps what it has
    clock.now += 2
    assert await survivor.sweep_dead_owners(silent_seconds=5) == 5
    assert len(await survivor.arrivals(10)) == 2
    assert len(await survivor.claim(10, lease_seconds=60)) == 3
    assert [owner.owner for owner in await survivor.owners()] == [survivor.owner]


async def test_an_owner_known_gone_is_freed_without_waiting_for_its_silence(
    store: Store, backend: Backend
) -> None:
    # Given an edge killed a moment ago (on this host: its process no longer runs)
    await store.heartbeat()
    await holding(store, arrivals=1, items=1)
    restarted = backend.open()
    await restarted.heartbeat()

    # When the edge started again on the store names it gone
    freed = await restarted.sweep_dead_owners(silent_seconds=5, gone=[store.owner])

    # Then it takes back at once what its earlier life held
    assert freed == 2
    assert len(await restarted.arrivals(10)) == 1
    assert len(await restarted.claim(10, lease_seconds=60)) == 1


async def test_a_store_never_frees_its_own_leases_nor_an_owner_that_never_beat(
    store: Store, backend: Backend, clock: Clock
) -> None:
    # Given a store that never beat (a command holding an arrival for a moment), and another
    await holding(store, arrivals=1, items=1)
    other = backend.open()
    await other.heartbeat()
    clock.now += 60

    # Then no sweep frees what the unregistered one holds (its leases run out as before), and
    # a store naming itself gone frees nothing of its own
    assert await other.sweep_dead_owners(silent_seconds=5, gone=[other.owner]) == 0
    assert await other.arrivals(10) == []
    assert len(await other.claim(10, lease_seconds=60)) == 0
    clock.now += LONG_LEASE
    assert await other.sweep_arrivals() == 1
    assert await other.sweep() == 1
