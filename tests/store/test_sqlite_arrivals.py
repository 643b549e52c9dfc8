"""Arrivals in the SQLite store: durable before their answer, settled in one transaction with what
processing made, their personal data overwritten once settled (the rest is the contract's:
tests/store/contract/test_arrivals.py)."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from edge.store.errors import StoreUnavailable
from edge.store.sqlite import SQLiteStore
from edge.store.values import Arrival, Intake
from tests.outbound import conversion, skipped
from tests.store.contract.steps import arrival

pytestmark = pytest.mark.anyio


def on_disk(store: SQLiteStore, sql: str) -> list[tuple[object, ...]]:
    """What another process would see: a separate connection to the file."""
    with sqlite3.connect(store.path) as connection:
        return connection.execute(sql).fetchall()


async def test_concurrent_arrivals_share_commits_and_each_returns_once_on_disk(
    store: SQLiteStore,
) -> None:
    before = store.transactions
    seen_on_disk: list[bool] = []

    async def request(n: int) -> None:
        await store.put_arrival(arrival(n))
        rows = on_disk(store, f"SELECT 1 FROM arrivals WHERE CAST(body AS TEXT) LIKE '%m-{n}\"%'")
        seen_on_disk.append(bool(rows))

    # when 200 requests store their arrivals at once
    await asyncio.gather(*(request(n) for n in range(200)))

    # then each returned only once its arrival was committed, in a few shared transactions
    assert seen_on_disk == [True] * 200
    assert store.transactions - before < 20  # coalesced: typically 2
    assert [stored.arrival.received_at for stored in await store.arrivals(500)] == [
        1_700_000_000.0 + n for n in range(200)
    ]


async def test_settling_stores_what_processing_made_and_forgets_the_arrivals_together(
    store: SQLiteStore,
) -> None:
    # given two arrivals waiting
    await store.put_arrival(arrival(1))
    await store.put_arrival(arrival(2))
    first, second = await store.arrivals(10)
    # when the first is settled with what processing made of it
    result = await store.settle([first.id], Intake(outbound=[conversion(1)], skipped=[skipped(2)]))
    # then its items and skip records are stored, and only the second still waits
    assert result.stored == 1
    assert on_disk(store, "SELECT message_id FROM outbox") == [("msg-000001",)]
    assert on_disk(store, "SELECT reason FROM skipped") == [("not triggered",)]
    assert [stored.id for stored in await store.arrivals(10)] == [second.id]
    stats = await store.stats()
    assert (stats.arrivals, stats.oldest_arrival) == (1, second.arrival.received_at)


async def test_a_settled_arrivals_personal_data_is_overwritten_in_the_database_file(
    store: SQLiteStore,
) -> None:
    # given an arrival holding an email address as it came, unhashed, settled by processing
    email = b"private-person-7c1e@example.com"
    body = b'{"type":"identify","userId":"u-1","traits":{"email":"' + email + b'"}}'
    await store.put_arrival(Arrival("beacon", 1_700_000_000.0, body, ip="198.51.100.23"))
    [waiting] = await store.arrivals(10)
    await store.settle([waiting.id], Intake())
    store.close()
    # when the write-ahead log is folded into the database file and emptied
    with sqlite3.connect(store.path) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    # then neither the address nor the IP is left in the file, not even in freed space
    content = store.path.read_bytes()
    assert email not in content
    assert b"198.51.100.23" not in content


async def test_a_settle_that_fails_leaves_its_arrivals_to_be_processed_again(
    store: SQLiteStore,
) -> None:
    await store.put_arrival(arrival(1))
    [waiting] = await store.arrivals(10)

    # given a database that fails once the items are written, before the arrival is forgotten
    with sqlite3.connect(store.path) as connection:
        connection.execute(
            "CREATE TRIGGER full_disk BEFORE DELETE ON arrivals"
            " BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
        )
    connection.close()
    # when settling fails
    with pytest.raises(StoreUnavailable):
        await store.settle([waiting.id], Intake(outbound=[conversion(1)]))
    # then nothing of it is stored and the arrival still waits
    assert on_disk(store, "SELECT count(*) FROM outbox") == [(0,)]
    assert [stored.id for stored in await store.arrivals(10)] == [waiting.id]


async def test_processing_pays_one_transaction_a_slice_as_each_settle_takes_the_next(
    store: SQLiteStore,
) -> None:
    # given three slices' worth of arrivals
    await asyncio.gather(*(store.put_arrival(arrival(n)) for n in range(3 * 64)))
    before = store.transactions
    # when processing takes and settles them a slice at a time
    taken = []
    while batch := await store.arrivals(64):
        taken += batch
        await store.settle([stored.id for stored in batch], Intake())
    # then every one was taken once, in order, and each settle leased the next slice in its own
    # transaction: one a slice, beside the first look and the last (which found none)
    assert [stored.arrival.received_at - 1_700_000_000.0 for stored in taken] == list(range(192))
    assert store.transactions - before == 3 + 2
