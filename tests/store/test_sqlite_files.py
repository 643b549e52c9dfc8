"""The store's files on disk: a write-ahead log sized to what is being written (checkpointed every
4 MiB, emptied when the store is idle)."""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from dataclasses import replace
from pathlib import Path

import pytest

from edge.store.base import Intake
from edge.store.sqlite import SQLiteStore
from tests.outbound import conversion, conversions

pytestmark = pytest.mark.anyio

MiB = 1 << 20


def wal(store: SQLiteStore) -> Path:
    return store.path.with_name(store.path.name + "-wal")


def wal_size(store: SQLiteStore) -> int:
    try:
        return wal(store).stat().st_size
    except FileNotFoundError:
        return 0


async def test_the_log_is_emptied_once_nothing_is_written(store: SQLiteStore) -> None:
    # Given a store that has just written a few hundred items
    await store.put(Intake(outbound=conversions(300)))
    assert wal_size(store) > 0

    # When nothing more is written for a while
    deadline = time.monotonic() + 15
    while wal_size(store) and time.monotonic() < deadline:
        time.sleep(0.1)

    # Then the log is truncated to nothing (checkpointed into the file), and nothing is lost
    assert wal_size(store) == 0
    assert (await store.stats()).pending == 300
    with closing(sqlite3.connect(store.path)) as reader:
        assert reader.execute("SELECT count(*) FROM bodies").fetchone() == (300,)


async def test_under_a_steady_load_the_log_stays_near_4_mib_not_16(store: SQLiteStore) -> None:
    # Given items of 128 KB each (the log grows fast)
    pad = "x" * (128 << 10)

    # When 24 MiB of them are put, one after another, the log measured after each
    largest = 0
    for n in range(192):
        item = conversion(n)
        await store.put(Intake(outbound=[replace(item, body={**item.body, "pad": pad})]))
        largest = max(largest, wal_size(store))

    # Then the log never grew much past its 4 MiB checkpoint (1,000 pages of 16 KiB were 16 MiB)
    assert 4 * MiB <= largest < 6 * MiB
