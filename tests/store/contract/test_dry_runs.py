"""Items recorded in a dry run go back to the queue once there are credentials (`rokt-edge
replay --dry-run`), on every backend."""

from __future__ import annotations

import pytest

from edge.jsontext import encode
from edge.store import Store
from edge.store.values import REJECTED, DeadLetter, Intake
from tests.outbound import conversion, conversions
from tests.store.conftest import Clock
from tests.store.contract.steps import record_in_a_dry_run

pytestmark = pytest.mark.anyio

DAY = 86400.0


async def test_only_dry_runs_are_replayed_not_items_really_delivered_or_dead(
    store: Store,
) -> None:
    # Given one item delivered, one dead and one recorded in a dry run
    await store.put(Intake(outbound=conversions(3)))
    first, second, third = await store.claim(3, lease_seconds=60)
    await store.ack([first.id])
    await store.dead([DeadLetter(second.id, REJECTED, "event_type is missing")])
    await store.ack([third.id], dry_run=True)

    # When dry runs are replayed, twice
    replayed = [await store.replay_dry_runs(), await store.replay_dry_runs()]

    # Then only the dry run is back, once
    assert replayed == [1, 0]
    [claim] = await store.claim(10, lease_seconds=60)
    assert claim.id == third.id


async def test_since_replays_the_dry_runs_stored_from_then_on(store: Store, clock: Clock) -> None:
    # Given an item recorded in a dry run a day ago, and one an hour ago
    await store.put(Intake(outbound=[conversion(1)]))
    await record_in_a_dry_run(store, 1)
    clock.now += DAY - 3600
    recent = conversion(2)
    await store.put(Intake(outbound=[recent]))
    await record_in_a_dry_run(store, 1)
    clock.now += 3600

    # When the dry runs of the last two hours are replayed (from the command line)
    replayed = store.replay_dry_runs_sync(since=clock.now - 7200)

    # Then the recent one waits to be sent; the older stays as it was recorded
    assert replayed == 1
    [claim] = await store.claim(10, lease_seconds=60)
    assert claim.body == encode(recent.body).decode()
    assert (await store.stats()).delivered_dry_run == 1
