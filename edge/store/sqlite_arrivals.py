"""The SQLite store's arrivals: what intake requests left, kept until the processor settles them.

Like `sqlite_schema`, these functions run inside the writer's transaction and never commit. An
arrival row is deleted in the same transaction that writes what processing it produced
(`edge.store.arrivals.Arrivals.settle`). Leases (`edge.store.arrivals`) are rows of a narrow
table of their own, as the outbox's queue is beside its bodies: taking a lease writes a few
bytes, not the arrival's body again.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any, Final

from edge.store.arrivals import in_order
from edge.store.values import Arrival, StoredArrival

TABLE: Final = """
CREATE TABLE IF NOT EXISTS arrivals (
    id INTEGER PRIMARY KEY,            -- the order of arrival, the order of processing
    source TEXT NOT NULL,              -- beacon or api
    received_at REAL NOT NULL,
    body BLOB NOT NULL,                -- the request's JSON, as it came
    kind TEXT,                         -- the tracking API route's event type
    ip TEXT,                           -- none when every event was private (GPC, no consent)
    user_agent TEXT,
    gpc INTEGER NOT NULL DEFAULT 0,
    cookie_anonymous_id TEXT,          -- the visitor cookie the request carried
    cookie_click_id TEXT,
    cookie_click_seen_at INTEGER,
    keys TEXT                          -- its identity keys, a JSON array (Arrival.keys)
);
-- The arrivals a processor holds (`lease`): none of another holder's is taken until it is
-- released, settled, or swept back once expired.
CREATE TABLE IF NOT EXISTS arrival_leases (
    id INTEGER PRIMARY KEY,            -- arrivals.id
    owner TEXT NOT NULL,               -- the store that holds it (a process, one opening)
    until REAL NOT NULL                -- expired after (`sweep`)
);
"""

INSERT_HEAD: Final = (
    "INSERT INTO arrivals (source, received_at, body, kind, ip, user_agent, gpc,"
    " cookie_anonymous_id, cookie_click_id, cookie_click_seen_at, keys)"
)
ROW_MARKS: Final = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
INSERT: Final = f"{INSERT_HEAD} VALUES {ROW_MARKS}"
ROWS_PER_STATEMENT: Final = 1000  # 11,000 parameters: SQLite allows 32,766 by default


def insert(connection: sqlite3.Connection, rows: Sequence[Arrival]) -> None:
    """Arrivals are named tuples in the table's column order (gpc: a bool is an int)."""
    if len(rows) == 1:
        connection.execute(INSERT, rows[0])
        return
    # Many rows in one statement rather than `executemany`: Python's sqlite3 lets go of the GIL
    # and takes it back at every row, and with the event loop busy in another thread each
    # hand-over costs more than the row.
    for start in range(0, len(rows), ROWS_PER_STATEMENT):
        chunk = rows[start : start + ROWS_PER_STATEMENT]
        marks = ", ".join([ROW_MARKS] * len(chunk))
        values = [value for row in chunk for value in row]
        connection.execute(f"{INSERT_HEAD} VALUES {marks}", values)


def hold(connection: sqlite3.Connection, arrival: Arrival, owner: str, until: float) -> int:
    """Store an arrival leased to `owner` already; its id."""
    id = connection.execute(INSERT, arrival).lastrowid
    connection.execute(
        "INSERT INTO arrival_leases (id, owner, until) VALUES (?, ?, ?)", (id, owner, until)
    )
    assert id is not None
    return id


# Not held by another owner than the one asking (`?`).
FREE: Final = "id NOT IN (SELECT id FROM arrival_leases WHERE owner != ?)"
COLUMNS: Final = (
    "id, source, received_at, body, kind, ip, user_agent, gpc, cookie_anonymous_id,"
    " cookie_click_id, cookie_click_seen_at, keys"
)
LEASE_ONE: Final = (
    "INSERT INTO arrival_leases (id, owner, until) VALUES (?, ?, ?)"
    " ON CONFLICT (id) DO UPDATE SET until = excluded.until"
)


def lease(connection: sqlite3.Connection, limit: int, owner: str, until: float) -> list[Any]:
    """The oldest `limit` arrivals that no other owner holds, in the order they came, leased to
    `owner` until `until` (its own renewed), but for those that must wait (`in_order`); as rows,
    for `stored` (plain tuples cross from the writer process faster than named ones)."""
    rows = connection.execute(
        f"SELECT {COLUMNS} FROM arrivals WHERE {FREE} ORDER BY id LIMIT ?", (owner, limit)
    ).fetchall()
    if not rows:
        return rows
    others = connection.execute(
        "SELECT arrivals.id, arrivals.keys FROM arrival_leases JOIN arrivals USING (id)"
        " WHERE owner != ? AND arrivals.id < ?",
        (owner, rows[-1][0]),
    ).fetchall()
    taken = in_order(rows, others) if others else rows
    if len(taken) == len(rows):  # one statement: the rows between the first and the last
        connection.execute(
            f"INSERT INTO arrival_leases (id, owner, until) SELECT id, ?1, ?2 FROM arrivals"
            f" WHERE id BETWEEN ?3 AND ?4 AND {FREE.replace('?', '?1')}"
            " ON CONFLICT (id) DO UPDATE SET until = excluded.until",
            (owner, until, rows[0][0], rows[-1][0]),
        )
    else:
        connection.executemany(LEASE_ONE, [(row[0], owner, until) for row in taken])
    return taken


def stored(rows: Sequence[tuple[Any, ...]]) -> list[StoredArrival]:
    return [
        StoredArrival(
            id,
            Arrival(source, at, body, kind, ip, agent, bool(gpc), anonymous, click, seen, keys),
        )
        for id, source, at, body, kind, ip, agent, gpc, anonymous, click, seen, keys in rows
    ]


def delete(connection: sqlite3.Connection, ids: Sequence[int]) -> None:
    connection.executemany("DELETE FROM arrivals WHERE id = ?", [(id,) for id in ids])
    if ids:  # a slice is mostly one run of ids: one statement (the leases are a few bytes each)
        connection.execute(
            "DELETE FROM arrival_leases WHERE id BETWEEN ? AND ?"
            " AND NOT EXISTS (SELECT 1 FROM arrivals WHERE arrivals.id = arrival_leases.id)",
            (min(ids), max(ids)),
        )


def release(connection: sqlite3.Connection, ids: Sequence[int], owner: str) -> None:
    connection.executemany(
        "DELETE FROM arrival_leases WHERE id = ? AND owner = ?", [(id, owner) for id in ids]
    )


def sweep(connection: sqlite3.Connection, now: float) -> int:
    return connection.execute("DELETE FROM arrival_leases WHERE until < ?", (now,)).rowcount


def count(connection: sqlite3.Connection) -> tuple[int, float | None]:
    """How many arrivals wait, and when the oldest came."""
    query = "SELECT count(*), min(received_at) FROM arrivals"
    number, oldest = connection.execute(query).fetchone()
    return int(number), oldest
