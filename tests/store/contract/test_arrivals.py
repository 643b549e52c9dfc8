"""Arrivals: what intake requests left, durable before their answer, taken by processing in the
order they came under a lease (`edge.store.arrivals`), and settled; on every backend."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from edge.store import Store
from edge.store.errors import StoreUnavailable
from edge.store.values import Intake, StoredArrival
from tests.outbound import conversion, skipped
from tests.store.conftest import Clock
from tests.store.contract.backends import Backend
from tests.store.contract.steps import arrival, rows_on_disk

pytestmark = pytest.mark.anyio


def ages(taken: list[StoredArrival]) -> list[float]:
    """Which arrivals were taken: the n of `arrival(n)`, in the order they came back."""
    return [stored.arrival.received_at - 1_700_000_000.0 for stored in taken]


async def test_an_arrival_comes_back_exactly_as_it_was_put(store: Store) -> None:
    # given a beacon's arrival with everything the request said about the visitor
    sent = arrival(
        1, ip="2001:db8::1", user_agent="Mozilla/5.0", gpc=True, cookie_anonymous_id="anon-1",
        cookie_click_id="click-1", cookie_click_seen_at=1_699_000_000,
    )  # fmt: skip
    # when it is put
    await store.put_arrival(sent)
    # then it waits, unchanged, to be processed
    [(_, stored)] = await store.arrivals(10)
    assert stored == sent


async def test_arrivals_come_oldest_first_a_slice_at_a_time(store: Store) -> None:
    for n in range(5):
        await store.put_arrival(arrival(n))
    first = await store.arrivals(2)
    assert [stored.arrival.received_at - 1_700_000_000.0 for stored in first] == [0, 1]


async def test_a_closed_store_refuses_arrivals(store: Store) -> None:
    store.close()
    with pytest.raises(StoreUnavailable):
        await store.put_arrival(arrival(1))


async def test_a_burst_larger_than_one_statement_is_stored_whole(store: Store) -> None:
    # given more arrivals at once than one INSERT statement takes
    await asyncio.gather(*(store.put_arrival(arrival(n)) for n in range(2500)))
    # then every one is stored, in order
    stored = await store.arrivals(3000)
    assert [each.arrival.received_at - 1_700_000_000.0 for each in stored] == list(range(2500))


# -- leases: each arrival processed by one process at a time ---------------------------------


async def test_two_processes_take_disjoint_arrivals_each_in_the_order_they_came(
    store: Store, backend: Backend
) -> None:
    # Given five arrivals, and a second process on the same store
    for n in range(5):
        await store.put_arrival(arrival(n))
    other = backend.open()

    # When each takes a slice
    first = await store.arrivals(2)
    second = await other.arrivals(10)

    # Then neither takes what the other holds, and each gets the oldest it may have
    assert (ages(first), ages(second)) == ([0, 1], [2, 3, 4])
    assert ages(await other.arrivals(10)) == [2, 3, 4]  # its own again, renewed
    assert ages(await store.arrivals(10)) == [0, 1]


async def test_an_arrival_waits_while_an_older_one_of_the_same_visitor_is_held_elsewhere(
    store: Store, backend: Backend
) -> None:
    # Given a visitor's beacon (its click) taken by one edge, then the shop's backend naming
    # that visitor as a customer and reporting the order, a later order of the same customer,
    # and another visitor's beacon
    await store.put_arrival(arrival(1, keys='["a:visitor"]'))
    await store.put_arrival(arrival(2, keys='["a:visitor","u:customer"]'))
    await store.put_arrival(arrival(3, keys='["u:customer"]'))
    await store.put_arrival(arrival(4, keys='["a:someone-else"]'))
    [beacon] = await store.arrivals(1)
    other = backend.open()

    # Then another edge takes only what does not depend on the beacon: stitching needs the
    # beacon's click before the order that follows it, whoever processes which
    assert ages(await other.arrivals(10)) == [4]

    # and once the beacon is settled (and that edge stops, giving back what it took next), the
    # rest follow, in the order they came
    await store.settle([beacon.id], Intake())
    await store.release_arrivals([])
    assert ages(await other.arrivals(10)) == [2, 3, 4]


async def test_what_a_process_took_and_did_not_settle_comes_first_in_its_next_slice(
    store: Store,
) -> None:
    # Given a slice of four taken, of which processing settled the first two (its time was up)
    for n in range(4):
        await store.put_arrival(arrival(n))
    taken = await store.arrivals(4)
    await store.settle([stored.id for stored in taken[:2]], Intake())
    await store.put_arrival(arrival(4))

    # When it takes the next slice
    following = await store.arrivals(10)

    # Then the rest of the first comes first, then the newer, in the order they came
    assert ages(following) == [2, 3, 4]
    assert [stored.id for stored in following[:2]] == [stored.id for stored in taken[2:]]


async def test_an_expired_lease_is_swept_and_its_arrivals_taken_again(
    store: Store, backend: Backend, clock: Clock
) -> None:
    # Given arrivals taken by a process that then died (it will never settle them)
    for n in range(3):
        await store.put_arrival(arrival(n))
    assert len(await store.arrivals(10, lease_seconds=30)) == 3
    survivor = backend.open()

    # Then while its lease runs, they are its own: no sweep frees them, no one else takes them
    clock.now += 29
    assert await survivor.sweep_arrivals() == 0
    assert await survivor.arrivals(10) == []

    # and once it has expired, a sweep frees them and the survivor takes them, in order
    clock.now += 2
    assert await survivor.sweep_arrivals() == 3
    assert ages(await survivor.arrivals(10)) == [0, 1, 2]
    assert await survivor.sweep_arrivals() == 0


async def test_an_arrival_held_by_its_writer_is_its_own_until_settled_or_its_writer_dies(
    store: Store, backend: Backend, clock: Clock
) -> None:
    # Given a command that stores a chunk to process it itself, and another process
    held = await store.hold_arrival(arrival(1), lease_seconds=30)
    other = backend.open()

    # Then it is stored as it was put, and no other process takes it while the lease runs
    assert held.arrival == arrival(1)
    assert await other.arrivals(10) == []
    clock.now += 29
    assert await other.sweep_arrivals() == 0
    assert await other.arrivals(10) == []

    # and had its writer died, a sweep frees it once the lease has run out
    clock.now += 2
    assert await other.sweep_arrivals() == 1
    assert ages(await other.arrivals(10)) == [1]


async def test_an_arrival_held_by_its_writer_is_settled_by_it(
    store: Store, backend: Backend
) -> None:
    held = await store.hold_arrival(arrival(1))
    result = await store.settle([held.id], Intake(outbound=[conversion(1)]))
    assert result.stored == 1
    assert await backend.open().arrivals(10) == []


async def test_released_arrivals_wait_in_their_place_for_the_next_taker(
    store: Store, backend: Backend
) -> None:
    # Given a process holding three arrivals, of which it settles one and then stops
    for n in range(4):
        await store.put_arrival(arrival(n))
    held = await store.arrivals(3)
    await store.settle([held[0].id], Intake())
    await store.release_arrivals([stored.id for stored in held])

    # Then another takes the rest at once, in their place
    assert ages(await backend.open().arrivals(10)) == [1, 2, 3]


async def test_settling_stores_what_processing_made_and_forgets_the_arrivals_in_one_transaction(
    store: Store, backend: Backend
) -> None:
    # Given two arrivals taken
    await store.put_arrival(arrival(1))
    await store.put_arrival(arrival(2))
    first, second = await store.arrivals(10)

    # When the first is settled with what processing made of it
    result = await store.settle([first.id], Intake(outbound=[conversion(1)], skipped=[skipped(2)]))

    # Then another process sees its item and skip record, and only the second still waiting
    assert result.stored == 1
    assert backend.has_item(conversion(1).key)
    stats = backend.open().stats_sync()
    assert (stats.pending, stats.skipped) == (1, {"not triggered": 1})
    assert (stats.arrivals, stats.oldest_arrival) == (1, second.arrival.received_at)
    # and a settled arrival is never taken again, by anyone
    assert [stored.id for stored in await store.arrivals(10)] == [second.id]
    assert first.id not in [stored.id for stored in await backend.open().arrivals(10)]


async def test_a_settle_that_fails_stores_nothing_and_leaves_its_arrivals_to_be_taken_again(
    store: Store, backend: Backend
) -> None:
    # Given an arrival taken, whose processing made something the store refuses
    await store.put_arrival(arrival(1))
    [taken] = await store.arrivals(10)
    broken = replace(skipped(2), reason=None)  # type: ignore[arg-type]

    # When settling fails
    with pytest.raises(StoreUnavailable):
        await store.settle([taken.id], Intake(outbound=[conversion(1)], skipped=[broken]))

    # Then nothing of it is stored, and the arrival still waits, for the same process first
    assert rows_on_disk(backend) == 0
    assert [stored.id for stored in await store.arrivals(10)] == [taken.id]
