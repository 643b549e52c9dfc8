"""Items recorded in a dry run keep what it takes to send them, and go back to the queue once
there are credentials (`rokt-edge replay --dry-run`)."""

from __future__ import annotations

import sqlite3
from contextlib import closing

import pytest

from edge.jsontext import encode
from edge.store.sqlite import SQLiteStore
from edge.store.values import Intake
from tests.outbound import conversion, conversions
from tests.store.conftest import Clock
from tests.store.contract.steps import record_in_a_dry_run

pytestmark = pytest.mark.anyio

DAY = 86400.0


def bodies_kept(store: SQLiteStore) -> int:
    with closing(sqlite3.connect(store.path)) as connection:
        count: int = connection.execute("SELECT count(*) FROM bodies").fetchone()[0]
    return count


async def test_items_recorded_in_a_dry_run_go_back_to_the_queue_exactly_as_they_were_put(
    store: SQLiteStore,
) -> None:
    # Given three items recorded in a dry run (never sent)
    items = conversions(3)
    await store.put(Intake(outbound=items))
    await record_in_a_dry_run(store, 3)
    stats = await store.stats()
    assert (stats.pending, stats.delivered, stats.delivered_dry_run) == (0, 3, 3)

    # When they are replayed, real credentials being set
    replayed = await store.replay_dry_runs()

    # Then they wait to be sent, with the very bodies that were put, and are no dry run any more
    assert replayed == 3
    stats = await store.stats()
    assert (stats.pending, stats.delivered, stats.delivered_dry_run) == (3, 0, 0)
    claims = await store.claim(10, lease_seconds=60)
    assert claims.bodies == [encode(item.body).decode() for item in items]
    assert list(claims.timestamps) == [item.timestamp_ms for item in items]
    # and, once really delivered, their bodies are gone as any delivered item's
    await store.ack(claims.ids)
    assert bodies_kept(store) == 0
    assert await store.replay_dry_runs() == 0


async def test_a_dry_run_recorded_without_its_body_stays_recorded(store: SQLiteStore) -> None:
    # Given an item recorded in a dry run by an older rokt-edge, which deleted its body
    await store.put(Intake(outbound=[conversion(1)]))
    await record_in_a_dry_run(store, 1)
    with closing(sqlite3.connect(store.path)) as connection, connection:
        connection.execute("DELETE FROM bodies")

    # When dry runs are replayed
    replayed = await store.replay_dry_runs()

    # Then it is not queued with nothing to send; the count of dry runs still shows it
    assert replayed == 0
    stats = await store.stats()
    assert (stats.pending, stats.delivered_dry_run) == (0, 1)


async def test_pruning_forgets_a_dry_run_with_its_body(store: SQLiteStore, clock: Clock) -> None:
    # Given an item recorded in a dry run 31 days ago (older than the data-age limit)
    await store.put(Intake(outbound=[conversion(1)]))
    await record_in_a_dry_run(store, 1)
    assert bodies_kept(store) == 1
    clock.now += 31 * DAY

    # When the sender's housekeeping prunes what is older than 30 days
    await store.prune(before=clock.now - 30 * DAY)

    # Then the item and its body are gone: nothing left to replay
    assert bodies_kept(store) == 0
    assert (await store.stats()).delivered_dry_run == 0
    assert await store.replay_dry_runs() == 0
