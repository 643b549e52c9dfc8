"""The SQLite store's owners (`edge.store.owners`): a row per process incarnation that beats, and
the sweep that frees a dead one's arrival leases and outbox claims. Run inside the writer's
transaction, like `sqlite_schema`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Final

from edge.store.values import Owner

TABLE: Final = """
CREATE TABLE IF NOT EXISTS owners (
    owner TEXT PRIMARY KEY,            -- Store.owner: host/pid/random
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    started_at REAL NOT NULL,          -- its first heartbeat
    seen_at REAL NOT NULL              -- its last
);
"""


def beat(connection: sqlite3.Connection, owner: str, host: str, pid: int, now: float) -> None:
    connection.execute(
        "INSERT INTO owners (owner, host, pid, started_at, seen_at) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (owner) DO UPDATE SET seen_at = excluded.seen_at",
        (owner, host, pid, now, now),
    )


def sweep_dead(
    connection: sqlite3.Connection, silent_before: float, gone: Sequence[str], own: str
) -> int:
    """Free what the owners silent since before `silent_before`, or named in `gone`, hold, and
    forget them; how many leases and claims were freed."""
    dead = {
        owner
        for (owner,) in connection.execute(
            "SELECT owner FROM owners WHERE seen_at < ?", (silent_before,)
        )
    }
    dead.update(gone)
    dead.discard(own)
    freed = 0
    for owner in sorted(dead):
        freed += connection.execute(
            "UPDATE queue SET lease_until = NULL, owner = NULL"
            " WHERE owner = ? AND lease_until IS NOT NULL",
            (owner,),
        ).rowcount
        freed += connection.execute("DELETE FROM arrival_leases WHERE owner = ?", (owner,)).rowcount
        connection.execute("DELETE FROM owners WHERE owner = ?", (owner,))
    return freed


def listed(connection: sqlite3.Connection) -> list[Owner]:
    rows = connection.execute(
        "SELECT owner, host, pid, started_at, seen_at,"
        " (SELECT count(*) FROM arrival_leases AS l WHERE l.owner = o.owner),"
        " (SELECT count(*) FROM queue AS q WHERE q.owner = o.owner"
        "  AND q.lease_until IS NOT NULL)"
        " FROM owners AS o ORDER BY started_at, owner"
    ).fetchall()
    return [Owner(*row) for row in rows]
