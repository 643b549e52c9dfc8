"""De-duplication in the SQLite store: what it keeps of each conversion, pruned with the
delivered items (the rest is the contract's: tests/store/contract/test_dedup.py)."""

from __future__ import annotations

import sqlite3

import pytest

from edge.store.sqlite import SQLiteStore
from edge.store.values import Intake
from tests.store.contract.steps import copy

pytestmark = pytest.mark.anyio


async def test_old_entries_are_pruned_with_the_delivered_items(store: SQLiteStore) -> None:
    await store.put(Intake(outbound=[copy(1)]))
    item = copy(1)
    await store.prune(before=item.timestamp_ms / 1000 + 25 * 3600)

    with sqlite3.connect(store.path) as connection:
        assert connection.execute("SELECT count(*) FROM dedup").fetchone() == (0,)
