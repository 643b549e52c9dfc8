"""The SQLite store's de-duplication table: the first copy of each conversion.

The browser and the merchant's backend often both report one order, under different message
ids. Each conversion is known by its dedup key (mapping, conversion type, confirmation ref); the
table keeps the first copy's outbox key and event time. A later copy with another message id
whose event time is within the window of the first's is a duplicate: not stored, recorded as
skipped. A copy outside the window is a new conversion (a reused order number) and replaces the
entry; so does any copy when the first one was dead-lettered, since that one never arrived.

Like `sqlite_schema`, these functions run inside the writer's transaction, in the same one as
the outbox insert: two copies put at the same moment are checked one after the other, and only
one is stored. (A server-grade store would do the same with `INSERT … ON CONFLICT` in the
transaction that inserts the outbox rows.)
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Final

TABLE: Final = """
CREATE TABLE IF NOT EXISTS dedup (
    key TEXT PRIMARY KEY,          -- mapping, conversion type, confirmation ref
    outbox_key TEXT NOT NULL,      -- the first copy's outbox key (mapping + message id)
    timestamp_ms INTEGER NOT NULL  -- the first copy's event time
);
"""

# (outbox key, dedup key or None, event time in ms)
Check = tuple[str, str | None, int]


def admit(connection: sqlite3.Connection, checks: Sequence[Check], window_ms: int) -> list[bool]:
    """For each item: True to store it, False when it duplicates a conversion already stored."""
    verdicts: list[bool] = []
    for outbox_key, dedup_key, timestamp_ms in checks:
        if dedup_key is None:
            verdicts.append(True)
            continue
        first = connection.execute(
            "SELECT d.outbox_key, d.timestamp_ms, dead.id IS NOT NULL FROM dedup d"
            " LEFT JOIN outbox o ON o.key = d.outbox_key LEFT JOIN dead ON dead.id = o.id"
            " WHERE d.key = ?",
            (dedup_key,),
        ).fetchone()
        if first is not None:
            first_key, first_ms, dead = first
            if first_key == outbox_key:  # the same event again: the outbox key settles it
                verdicts.append(True)
                continue
            if abs(first_ms - timestamp_ms) <= window_ms and not dead:
                verdicts.append(False)
                continue
        connection.execute(
            "INSERT INTO dedup (key, outbox_key, timestamp_ms) VALUES (?, ?, ?)"
            " ON CONFLICT (key) DO UPDATE SET outbox_key = excluded.outbox_key,"
            " timestamp_ms = excluded.timestamp_ms",
            (dedup_key, outbox_key, timestamp_ms),
        )
        verdicts.append(True)
    return verdicts


def prune(connection: sqlite3.Connection, before_ms: int) -> int:
    """Forget conversions whose event time is before `before_ms`; how many."""
    return connection.execute("DELETE FROM dedup WHERE timestamp_ms < ?", (before_ms,)).rowcount
