"""De-duplication in the store: one conversion reported twice, under two message ids, is stored
once, whichever source each copy came from and however close together they arrive; on every
backend."""

from __future__ import annotations

import asyncio
import json

import pytest

from edge.store import Store
from edge.store.values import DUPLICATE, REJECTED, SKIPPED, DeadLetter, Intake
from tests.outbound import conversion, message_ids
from tests.store.contract.backends import Backend
from tests.store.contract.steps import copy

pytestmark = pytest.mark.anyio

HOUR_MS = 3_600_000


@pytest.fixture
def store(backend: Backend) -> Store:
    return backend.open(dedup_window=24 * 3600.0)


def skipped_reasons(store: Store) -> list[tuple[str, str | None]]:
    outcomes = store.recent_sync(1000).outcomes
    return sorted((each.message_id, each.reason) for each in outcomes if each.state == SKIPPED)


async def test_the_second_copy_of_a_conversion_is_skipped_as_a_duplicate(
    store: Store,
) -> None:
    # Given the browser's copy of order-1, stored
    first = await store.put(Intake(outbound=[copy(1)]))
    # When the backend's copy (another message id) arrives a minute later
    second = await store.put(Intake(outbound=[copy(2, shift_ms=60_000)]))

    # Then only the first is in the outbox; the second is recorded as a duplicate
    assert (first.stored, first.deduplicated) == (1, 0)
    assert (second.stored, second.deduplicated) == (0, 1)
    [claim] = await store.claim(10, 60)
    assert message_ids([json.loads(claim.body)]) == ["msg-000001"]
    assert skipped_reasons(store) == [("msg-000002", DUPLICATE)]
    assert (await store.stats()).skipped == {DUPLICATE: 1}


async def test_the_same_event_again_is_not_a_duplicate_of_itself(store: Store) -> None:
    await store.put(Intake(outbound=[copy(1)]))
    again = await store.put(Intake(outbound=[copy(1)]))

    assert (again.stored, again.duplicates, again.deduplicated) == (0, 1, 0)
    assert skipped_reasons(store) == []


async def test_copies_put_at_the_same_moment_are_stored_once(store: Store) -> None:
    results = await asyncio.gather(*(store.put(Intake(outbound=[copy(n)])) for n in range(20)))

    assert sum(result.stored for result in results) == 1
    assert sum(result.deduplicated for result in results) == 19
    assert len(await store.claim(100, 60)) == 1


async def test_copies_within_one_intake_are_stored_once(store: Store) -> None:
    result = await store.put(Intake(outbound=[copy(1), copy(2)]))
    assert (result.stored, result.deduplicated) == (1, 1)


async def test_a_reused_order_number_outside_the_window_is_a_new_conversion(
    store: Store,
) -> None:
    await store.put(Intake(outbound=[copy(1)]))
    later = await store.put(Intake(outbound=[copy(2, shift_ms=25 * HOUR_MS)]))
    assert (later.stored, later.deduplicated) == (1, 0)


async def test_other_orders_and_items_without_a_dedup_key_pass(store: Store) -> None:
    result = await store.put(
        Intake(outbound=[copy(1, "order-1"), copy(2, "order-2"), conversion(3), conversion(4)])
    )
    assert (result.stored, result.deduplicated) == (4, 0)


async def test_a_dead_lettered_first_copy_lets_the_next_one_through(store: Store) -> None:
    # Given a first copy that the upstream rejected
    await store.put(Intake(outbound=[copy(1)]))
    [claim] = await store.claim(10, 60)
    await store.dead([DeadLetter(claim.id, REJECTED, "bad advertising id")])

    # When a second copy arrives, it is stored: the conversion never reached Rokt
    second = await store.put(Intake(outbound=[copy(2)]))
    assert (second.stored, second.deduplicated) == (1, 0)
    # and from then on it is the one later copies duplicate
    third = await store.put(Intake(outbound=[copy(3)]))
    assert third.deduplicated == 1
