"""Arrivals: what intake requests left, durable before their answer, taken by processing in the
order they came, and settled; on every backend."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from edge.store import Store
from edge.store.errors import StoreUnavailable
from edge.store.values import Intake
from tests.outbound import conversion, skipped
from tests.store.contract.backends import Backend
from tests.store.contract.steps import arrival, rows_on_disk

pytestmark = pytest.mark.anyio


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

    # Then nothing of it is stored, and the arrival still waits
    assert rows_on_disk(backend) == 0
    assert [stored.id for stored in await store.arrivals(10)] == [taken.id]
