"""The store's files on disk: private to their owner, and a write-ahead log sized to what is being
written (checkpointed every 4 MiB, emptied when the store is idle)."""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import replace
from pathlib import Path

import pytest

from edge.store.sqlite import SQLiteStore
from edge.store.values import Intake
from tests.outbound import conversion, conversions

pytestmark = pytest.mark.anyio

MiB = 1 << 20


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def wal(store: SQLiteStore) -> Path:
    return store.path.with_name(store.path.name + "-wal")


def wal_size(store: SQLiteStore) -> int:
    try:
        return wal(store).stat().st_size
    except FileNotFoundError:
        return 0


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The usual umask, under which new files are readable by everyone (0644)."""
    before = os.umask(0o022)
    yield
    os.umask(before)


async def test_a_new_database_its_log_and_the_folders_made_for_it_are_private(
    tmp_path: Path, umask_022: None
) -> None:
    # Given a database whose folders do not exist yet (as the default location's may not),
    # under the usual umask
    path = tmp_path / "var" / "rokt-edge" / "edge.db"

    # When the store opens it, making its folders, and writes
    store = SQLiteStore(path, make_folders=True)
    try:
        await store.put(Intake(outbound=[conversion(1)]))

        # Then the file, its log and index are its owner's alone, and so are the folders made
        files = [path, path.with_name("edge.db-wal"), path.with_name("edge.db-shm")]
        assert [oct(mode(file)) for file in files] == [oct(0o600)] * 3
        assert [oct(mode(folder)) for folder in (path.parent, path.parent.parent)] == [
            oct(0o700)
        ] * 2
    finally:
        store.close()


async def test_an_existing_database_readable_by_others_is_narrowed_at_open_saying_so(
    tmp_path: Path, umask_022: None, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a database created by an older rokt-edge, readable by everyone (0644)
    path = tmp_path / "edge.db"
    with closing(sqlite3.connect(path)) as connection:
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("CREATE TABLE t (x)")
    path.chmod(0o644)
    folder_mode = mode(tmp_path)

    # When the store opens it
    with caplog.at_level(logging.WARNING, logger="rokt_edge.store"):
        store = SQLiteStore(path)
    try:
        await store.put(Intake(outbound=[conversion(1)]))
    finally:
        store.close()

    # Then it is its owner's alone, the log says so once, and its folder is left as it was
    assert oct(mode(path)) == oct(0o600)
    [line] = [r.getMessage() for r in caplog.records if r.name == "rokt_edge.store"]
    assert line.startswith(f"{path} was readable by others (mode 644); now 600")
    assert mode(tmp_path) == folder_mode
    # and opening it again says nothing more
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="rokt_edge.store"):
        SQLiteStore(path).close()
    assert not [r for r in caplog.records if r.name == "rokt_edge.store"]


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
