"""The SQLite store's arrivals: what intake requests left, kept until the processor settles them.

Like `sqlite_schema`, these functions run inside the writer's transaction and never commit
(except `waiting`, a read on the caller's connection). An arrival row is deleted in the same
transaction that writes what processing it produced (`edge.store.arrivals.Arrivals.settle`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Final

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
    cookie_click_seen_at INTEGER
);
"""

INSERT_HEAD: Final = (
    "INSERT INTO arrivals (source, received_at, body, kind, ip, user_agent, gpc,"
    " cookie_anonymous_id, cookie_click_id, cookie_click_seen_at)"
)
ROW_MARKS: Final = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
INSERT: Final = f"{INSERT_HEAD} VALUES {ROW_MARKS}"
ROWS_PER_STATEMENT: Final = 1000  # 10,000 parameters: SQLite allows 32,766 by default


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


def waiting(connection: sqlite3.Connection, limit: int) -> list[StoredArrival]:
    """The oldest `limit` arrivals, in the order they came."""
    rows = connection.execute(
        "SELECT id, source, received_at, body, kind, ip, user_agent, gpc, cookie_anonymous_id,"
        " cookie_click_id, cookie_click_seen_at FROM arrivals ORDER BY id LIMIT ?",
        (limit,),
    )
    return [
        StoredArrival(
            id, Arrival(source, at, body, kind, ip, agent, bool(gpc), anonymous, click, seen)
        )
        for id, source, at, body, kind, ip, agent, gpc, anonymous, click, seen in rows
    ]


def delete(connection: sqlite3.Connection, ids: Sequence[int]) -> None:
    connection.executemany("DELETE FROM arrivals WHERE id = ?", [(id,) for id in ids])


def count(connection: sqlite3.Connection) -> tuple[int, float | None]:
    """How many arrivals wait, and when the oldest came."""
    query = "SELECT count(*), min(received_at) FROM arrivals"
    number, oldest = connection.execute(query).fetchone()
    return int(number), oldest
