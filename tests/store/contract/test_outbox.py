"""The outbox's transitions: put, claim, ack, retry, release, dead, sweep, replay, prune (the
states drawn in `edge.store.outbox`), on every backend."""

from __future__ import annotations

import pytest

from edge.jsontext import encode
from edge.store import Store
from edge.store.values import EXPIRED, REJECTED, DeadLetter, Intake
from tests.outbound import conversion, conversions, skipped
from tests.store.conftest import Clock
from tests.store.contract.backends import Backend

pytestmark = pytest.mark.anyio


async def test_put_items_come_back_in_order_exactly_as_encoded(
    store: Store, backend: Backend
) -> None:
    items = conversions(3)
    result = await store.put(Intake(outbound=items))
    assert (result.stored, result.duplicates) == (3, 0)

    claims = await store.claim(10, lease_seconds=60)

    assert [claim.body for claim in claims] == [encode(i.body).decode() for i in items]
    assert [claim.timestamp_ms for claim in claims] == [item.timestamp_ms for item in items]
    assert [backend.attempts(claim.id) for claim in claims] == [0, 0, 0]


async def test_a_replayed_event_is_stored_once(store: Store) -> None:
    await store.put(Intake(outbound=[conversion(1)]))
    again = await store.put(Intake(outbound=[conversion(1), conversion(2)]))

    assert (again.stored, again.duplicates) == (1, 1)
    twice = await store.put(Intake(outbound=[conversion(3), conversion(3)]))  # in one request
    assert (twice.stored, twice.duplicates) == (1, 1)
    assert len(await store.claim(10, 60)) == 3


async def test_skipped_events_are_recorded_beside_the_items(store: Store) -> None:
    intake = Intake(outbound=[conversion(1)], skipped=[skipped(1), skipped(2, "consent")])

    await store.put(intake)
    await store.put(intake)  # the same request again: nothing counted twice

    stats = await store.stats()
    assert stats.pending == 1
    assert stats.skipped == {"not triggered": 1, "consent": 1}


async def test_a_claim_is_leased_and_an_expired_lease_is_swept_back(
    store: Store, clock: Clock
) -> None:
    await store.put(Intake(outbound=conversions(3)))
    first = await store.claim(2, lease_seconds=30)

    assert len(await store.claim(10, 30)) == 1  # the third only: the others are leased
    clock.now += 29
    assert await store.sweep() == 0
    clock.now += 2
    assert await store.sweep() == 3

    again = await store.claim(10, 30)
    assert [c.id for c in again] == [c.id for c in first] + [again[-1].id]


async def test_retry_waits_until_its_time_and_counts_the_attempt(
    store: Store, backend: Backend, clock: Clock
) -> None:
    await store.put(Intake(outbound=[conversion(1)]))
    [claim] = await store.claim(1, 30)

    await store.retry([claim.id], at=clock.now + 10, error="503 upstream unavailable")

    assert await store.claim(1, 30) == []
    assert (await store.stats()).retrying == 1
    clock.now += 10
    [again] = await store.claim(1, 30)
    assert backend.attempts(again.id) == 1


async def test_release_returns_items_without_counting_an_attempt(
    store: Store, backend: Backend
) -> None:
    await store.put(Intake(outbound=[conversion(1)]))
    [claim] = await store.claim(1, 30)

    await store.release([claim.id])

    [again] = await store.claim(1, 30)
    assert (again.id, backend.attempts(again.id)) == (claim.id, 0)


async def test_due_now_makes_items_waiting_for_a_retry_due_at_once(
    store: Store, clock: Clock
) -> None:
    # Given two items retried in an hour (upstream trouble), and one claimed
    await store.put(Intake(outbound=conversions(3)))
    first, second, _ = await store.claim(3, lease_seconds=60)
    await store.retry([first.id, second.id], clock.now + 3600, "503: unavailable")
    assert await store.claim(10, lease_seconds=60) == []

    # When delivery resumes
    waiting = await store.due_now()

    # Then the two waiting are due now (the claimed one stays claimed)
    assert waiting == 2
    assert [claim.id for claim in await store.claim(10, lease_seconds=60)] == [first.id, second.id]
    assert (await store.stats()).in_flight == 3


async def test_claims_and_acks_skip_the_items_between_them(store: Store, clock: Clock) -> None:
    """Claims lease id ranges and acks settle id ranges: items in a gap stay as they were."""
    await store.put(Intake(outbound=conversions(6)))
    first = await store.claim(6, 30)
    ids = [claim.id for claim in first]
    await store.retry([ids[1], ids[3]], at=clock.now + 60, error="503")  # not due for a minute
    await store.release([ids[0], ids[2], ids[4], ids[5]])

    again = await store.claim(10, 30)
    assert [claim.id for claim in again] == [ids[0], ids[2], ids[4], ids[5]]
    assert [claim.body for claim in again] == [first[i].body for i in (0, 2, 4, 5)]
    await store.ack([ids[5], ids[0], ids[2]])  # any order

    stats = await store.stats()
    assert (stats.delivered, stats.in_flight, stats.pending, stats.retrying) == (3, 1, 2, 2)
    clock.now += 60
    assert [claim.id for claim in await store.claim(10, 30)] == [ids[1], ids[3]]


async def test_dead_letters_keep_their_reason_and_replay_puts_them_back(
    store: Store, clock: Clock
) -> None:
    await store.put(Intake(outbound=conversions(3)))
    a, b, c = await store.claim(3, 30)
    await store.dead([DeadLetter(a.id, REJECTED, "Error converting value &quot;x&quot;")])
    clock.now += 3600
    await store.dead([DeadLetter(b.id, REJECTED, "bad"), DeadLetter(c.id, EXPIRED, "31 days")])

    stats = await store.stats()
    assert stats.dead == {REJECTED: 2, EXPIRED: 1}
    assert (REJECTED, "bad", 1) in stats.dead_messages

    assert await store.replay(since=clock.now - 60) == 2  # the last two only
    assert [claim.id for claim in await store.claim(10, 30)] == [b.id, c.id]
    assert store.replay_sync() == 1
    assert (await store.stats()).dead == {}


async def test_an_ack_wins_over_a_dead_letter_and_a_delivered_item_stays_delivered(
    store: Store,
) -> None:
    """Another sender dead-lettered an item whose lease had run out; this one's request had
    reached the upstream all the same."""
    await store.put(Intake(outbound=conversions(2)))
    a, b = await store.claim(2, 30)
    await store.dead([DeadLetter(a.id, REJECTED, "bad")])

    await store.ack([a.id, b.id])
    await store.dead([DeadLetter(b.id, EXPIRED, "too late")])
    await store.retry([b.id], at=0, error="503")

    stats = await store.stats()
    assert (stats.delivered, stats.dead, stats.pending, stats.in_flight) == (2, {}, 0, 0)
    assert await store.claim(10, 30) == []


async def test_delivery_is_recorded_and_old_deliveries_are_pruned(
    store: Store, clock: Clock
) -> None:
    await store.put(Intake(outbound=conversions(2), skipped=[skipped(1)]))
    claims = await store.claim(2, 30)
    await store.ack([claims[0].id])
    await store.ack([claims[1].id], dry_run=True)

    stats = await store.stats()
    assert (stats.delivered, stats.delivered_dry_run) == (2, 1)
    assert (stats.pending, stats.in_flight) == (0, 0)

    clock.now += 10
    assert await store.prune(before=clock.now) == 3
    stats = await store.stats()
    assert (stats.delivered, stats.delivered_dry_run) == (0, 0)


async def test_pruning_keeps_what_is_still_queued_or_dead(store: Store, clock: Clock) -> None:
    await store.put(Intake(outbound=conversions(3)))
    first, second, third = await store.claim(3, 30)
    await store.ack([first.id])
    await store.dead([DeadLetter(second.id, REJECTED, "bad")])
    await store.release([third.id])

    clock.now += 10
    assert await store.prune(before=clock.now) == 1  # the delivered one only

    stats = await store.stats()
    assert (stats.delivered, stats.pending, stats.dead) == (0, 1, {REJECTED: 1})
    assert (await store.put(Intake(outbound=conversions(3)))).stored == 1  # its key forgotten
