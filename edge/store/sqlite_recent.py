"""The latest outcomes, read from the SQLite store's tables for `rokt-edge recent` (the reads both
backends share: `edge.store.outcomes`).
"""

from __future__ import annotations

import sqlite3

from edge.store import sqlite_schema as schema
from edge.store.outcomes import items_query, newest
from edge.store.values import Recent

ITEMS = items_query("?")
SKIPS = "SELECT created_at, message_id, mapping, reason FROM skipped ORDER BY rowid DESC LIMIT ?"


def read(connection: sqlite3.Connection, limit: int) -> Recent:
    items = connection.execute(ITEMS, (limit,))
    skips = connection.execute(SKIPS, (limit,)).fetchall()
    return Recent(newest(items.fetchall(), skips, limit), schema.dry_run_bodies(connection, limit))
