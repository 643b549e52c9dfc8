"""The SQLite store's tables and statements, one function per operation.

Each function runs inside the writer's transaction (see `edge.store.sqlite`) and never commits.
Times are epoch seconds (REAL); item states are the ones drawn in `edge.store.base`.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any, Final

from edge.store import sqlite_arrivals, sqlite_dedup, sqlite_identity
from edge.store.base import (
    Claim,
    DeadLetter,
    DryRunBody,
    ItemId,
    Paused,
    PutResult,
    Stats,
    UpstreamError,
)

VERSION: Final = 2  # 2: bodies moved out of the outbox rows
PAUSED: Final = "paused"
DEAD_MESSAGES_SHOWN: Final = 10

TABLES: Final = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,          -- mapping + message id: a replayed event is stored once
    mapping TEXT NOT NULL,
    message_id TEXT NOT NULL,
    timestamp_ms INTEGER NOT NULL,     -- the event's time (the upstream's data-age limit)
    state TEXT NOT NULL DEFAULT 'pending',
    created_at REAL NOT NULL,
    available_at REAL NOT NULL,        -- not claimed before (retries)
    attempts INTEGER NOT NULL DEFAULT 0,
    lease_until REAL,
    last_error TEXT,
    dead_reason TEXT,
    dead_at REAL,
    delivered_at REAL,
    dry_run INTEGER NOT NULL DEFAULT 0
);
-- (state, rowid): claims walk pending items in id order; counts per state stay cheap.
CREATE INDEX IF NOT EXISTS outbox_by_state ON outbox (state);
-- Bodies apart from the state they would otherwise be rewritten with at every claim and ack
-- (SQLite rewrites a whole row on UPDATE); a delivered item's body is deleted at its ack.
CREATE TABLE IF NOT EXISTS bodies (
    id INTEGER PRIMARY KEY,            -- outbox.id
    body TEXT NOT NULL                 -- one contract A batch, as it is sent
);
CREATE TABLE IF NOT EXISTS skipped (
    key TEXT PRIMARY KEY,
    message_id TEXT NOT NULL,
    mapping TEXT,
    reason TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS dry_run_bodies (
    id INTEGER PRIMARY KEY, at REAL NOT NULL, path TEXT NOT NULL, body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS upstream_errors (
    id INTEGER PRIMARY KEY, at REAL NOT NULL, status INTEGER, message TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def create(connection: sqlite3.Connection) -> None:
    version = connection.execute("PRAGMA user_version").fetchone()[0]
    if version > VERSION:
        raise sqlite3.DatabaseError(f"the database is from a newer rokt-edge (schema {version})")
    # Schema 1 kept each body in its outbox row: move the ones still needed to `bodies`.
    migrate = MIGRATE_FROM_1 if version == 1 else ""
    tables = TABLES + sqlite_identity.TABLE + sqlite_dedup.TABLE + sqlite_arrivals.TABLE
    connection.executescript(f"BEGIN; {tables} {migrate} PRAGMA user_version = {VERSION}; COMMIT;")


MIGRATE_FROM_1: Final = """
INSERT OR IGNORE INTO bodies (id, body) SELECT id, body FROM outbox WHERE state != 'delivered';
ALTER TABLE outbox DROP COLUMN body;
"""


def put(
    connection: sqlite3.Connection,
    rows: list[tuple[str, str, str, int, str, float]],
    skipped: list[tuple[str, str, str | None, str]],
    now: float,
) -> PutResult:
    cursor = connection.executemany(
        "INSERT INTO outbox (key, mapping, message_id, timestamp_ms, created_at, available_at)"
        " VALUES (?1, ?2, ?3, ?4, ?6, ?6) ON CONFLICT (key) DO NOTHING",
        rows,
    )
    stored = max(cursor.rowcount, 0) if rows else 0
    # A key seen before keeps its body (pending) or needs none (delivered): OR IGNORE, pending.
    connection.executemany(
        "INSERT OR IGNORE INTO bodies (id, body)"
        " SELECT id, ? FROM outbox WHERE key = ? AND state = 'pending'",
        [(row[4], row[0]) for row in rows],
    )
    connection.executemany(
        "INSERT INTO skipped (key, message_id, mapping, reason, created_at)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (key) DO NOTHING",
        [(*row, now) for row in skipped],
    )
    return PutResult(stored=stored, duplicates=len(rows) - stored)


# Claimed items come back as one row (their fields as a JSON array, their bodies joined by a
# character no JSON text contains unescaped) rather than a row each: Python's sqlite3 lets go
# of the GIL and takes it back at every row, and with the event loop busy in another thread a
# thousand such hand-overs cost both threads more than the decoding below.
SEPARATOR: Final = "\x1e"  # JSON escapes every control character inside strings


def claim(connection: sqlite3.Connection, limit: int, now: float, until: float) -> list[Claim]:
    # The first `limit` due pending items with their bodies, in id order, then one UPDATE over
    # their id range: every due pending item between the first and the last id is among them
    # (ORDER BY id LIMIT), and the writer's transaction holds the lock between the two.
    count, fields, bodies, first, last = connection.execute(
        "SELECT count(*), json_group_array(json_array(id, key, message_id, timestamp_ms,"
        " attempts)), group_concat(body, char(30)), min(id), max(id) FROM ("
        " SELECT outbox.id, key, message_id, timestamp_ms, attempts, body FROM outbox"
        " LEFT JOIN bodies ON bodies.id = outbox.id"
        " WHERE state = 'pending' AND available_at <= ? ORDER BY outbox.id LIMIT ?)",
        (now, limit),
    ).fetchone()
    if not count:
        return []
    texts = bodies.split(SEPARATOR) if bodies is not None else []
    leased = connection.execute(
        "UPDATE outbox SET state = 'claimed', lease_until = ?"
        " WHERE id BETWEEN ? AND ? AND state = 'pending' AND available_at <= ?",
        (until, first, last, now),
    ).rowcount
    if not count == leased == len(texts):
        raise sqlite3.DatabaseError(f"claim: {count} due, {leased} leased, {len(texts)} bodies")
    claims = [
        Claim(id, key, message_id, timestamp_ms, body, attempts)
        for (id, key, message_id, timestamp_ms, attempts), body in zip(
            json.loads(fields), texts, strict=True
        )
    ]
    claims.sort()  # an aggregate promises no order; its rows come in id order in practice
    return claims


def _runs(ids: Sequence[ItemId]) -> list[tuple[ItemId, ItemId]]:
    """Sorted ids as (first, last) ranges of consecutive ids: a request's claims are usually
    one range, so a transition is one statement rather than one per id."""
    ordered = sorted(ids)
    if ordered and ordered == list(range(ordered[0], ordered[-1] + 1)):
        return [(ordered[0], ordered[-1])]  # the common case, compared in C
    runs: list[tuple[ItemId, ItemId]] = []
    for item in sorted(set(ordered)):
        if runs and item == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], item)
        else:
            runs.append((item, item))
    return runs


def ack(connection: sqlite3.Connection, ids: Sequence[ItemId], now: float, dry_run: bool) -> None:
    runs = _runs(ids)
    # Delivered wins over any other state: another sender may have dead-lettered or re-queued
    # the same item after its lease expired, but it did reach the upstream.
    connection.executemany(
        "UPDATE outbox SET state = 'delivered', delivered_at = ?, dry_run = ?, lease_until = NULL,"
        " dead_reason = NULL, dead_at = NULL"
        " WHERE id BETWEEN ? AND ? AND state != 'delivered'",
        [(now, int(dry_run), first, last) for first, last in runs],
    )
    connection.executemany("DELETE FROM bodies WHERE id BETWEEN ? AND ?", runs)


def retry(connection: sqlite3.Connection, ids: Sequence[ItemId], at: float, error: str) -> None:
    connection.executemany(
        "UPDATE outbox SET state = 'pending', available_at = ?, attempts = attempts + 1,"
        " last_error = ?, lease_until = NULL WHERE id = ? AND state = 'claimed'",
        [(at, error, item) for item in ids],
    )


def release(connection: sqlite3.Connection, ids: Sequence[ItemId]) -> None:
    connection.executemany(
        "UPDATE outbox SET state = 'pending', lease_until = NULL"
        " WHERE id = ? AND state = 'claimed'",
        [(item,) for item in ids],
    )


def dead(connection: sqlite3.Connection, letters: Sequence[DeadLetter], now: float) -> None:
    connection.executemany(
        "UPDATE outbox SET state = 'dead', dead_reason = ?, last_error = ?, dead_at = ?,"
        " lease_until = NULL WHERE id = ? AND state IN ('pending', 'claimed')",
        [(letter.reason, letter.message, now, letter.id) for letter in letters],
    )


def sweep(connection: sqlite3.Connection, now: float) -> int:
    cursor = connection.execute(
        "UPDATE outbox SET state = 'pending', lease_until = NULL"
        " WHERE state = 'claimed' AND lease_until < ?",
        (now,),
    )
    return cursor.rowcount


def replay(connection: sqlite3.Connection, since: float | None, now: float) -> int:
    cursor = connection.execute(
        "UPDATE outbox SET state = 'pending', available_at = ?1, attempts = 0, dead_reason = NULL,"
        " dead_at = NULL WHERE state = 'dead' AND (?2 IS NULL OR dead_at >= ?2)",
        (now, since),
    )
    return cursor.rowcount


def prune(connection: sqlite3.Connection, before: float) -> int:
    delivered = connection.execute(
        "DELETE FROM outbox WHERE state = 'delivered' AND delivered_at < ?", (before,)
    ).rowcount
    skipped = connection.execute("DELETE FROM skipped WHERE created_at < ?", (before,)).rowcount
    return delivered + skipped


def record_dry_run(
    connection: sqlite3.Connection, now: float, path: str, body: str, keep: int
) -> None:
    cursor = connection.execute(
        "INSERT INTO dry_run_bodies (at, path, body) VALUES (?, ?, ?)", (now, path, body)
    )
    connection.execute(
        "DELETE FROM dry_run_bodies WHERE id <= ?", ((cursor.lastrowid or 0) - keep,)
    )


def dry_run_bodies(connection: sqlite3.Connection, limit: int) -> list[DryRunBody]:
    rows = connection.execute(
        "SELECT at, path, body FROM dry_run_bodies ORDER BY id DESC LIMIT ?", (limit,)
    )
    return [DryRunBody(*row) for row in rows]


def record_upstream_error(
    connection: sqlite3.Connection, now: float, status: int | None, message: str, keep: int
) -> None:
    cursor = connection.execute(
        "INSERT INTO upstream_errors (at, status, message) VALUES (?, ?, ?)", (now, status, message)
    )
    connection.execute(
        "DELETE FROM upstream_errors WHERE id <= ?", ((cursor.lastrowid or 0) - keep,)
    )


def _keep_last(connection: sqlite3.Connection, table: str, last: int | None, keep: int) -> None:
    connection.execute(f"DELETE FROM {table} WHERE id <= ?", ((last or 0) - keep,))


def set_paused(connection: sqlite3.Connection, paused: Paused | None) -> None:
    if paused is None:
        connection.execute("DELETE FROM meta WHERE name = ?", (PAUSED,))
        return
    value = json.dumps({"since": paused.since, "reason": paused.reason})
    connection.execute(
        "INSERT INTO meta (name, value) VALUES (?, ?)"
        " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        (PAUSED, value),
    )


def stats(connection: sqlite3.Connection) -> Stats:
    def scalar(sql: str, *args: Any) -> Any:
        return connection.execute(sql, args).fetchone()[0]

    waiting = "state IN ('pending', 'claimed')"
    oldest_id = scalar(f"SELECT min(id) FROM outbox WHERE {waiting}")
    dead_messages = connection.execute(
        "SELECT dead_reason, last_error, count(*) AS n FROM outbox WHERE state = 'dead'"
        " GROUP BY dead_reason, last_error ORDER BY n DESC LIMIT ?",
        (DEAD_MESSAGES_SHOWN,),
    ).fetchall()
    paused = connection.execute("SELECT value FROM meta WHERE name = ?", (PAUSED,)).fetchone()
    return Stats(
        pending=scalar("SELECT count(*) FROM outbox WHERE state = 'pending'"),
        retrying=scalar("SELECT count(*) FROM outbox WHERE state = 'pending' AND attempts > 0"),
        in_flight=scalar("SELECT count(*) FROM outbox WHERE state = 'claimed'"),
        oldest_pending=None
        if oldest_id is None
        else scalar("SELECT created_at FROM outbox WHERE id = ?", oldest_id),
        delivered=scalar("SELECT count(*) FROM outbox WHERE state = 'delivered'"),
        delivered_dry_run=scalar(
            "SELECT count(*) FROM outbox WHERE state = 'delivered' AND dry_run = 1"
        ),
        dead=dict(
            connection.execute(
                "SELECT dead_reason, count(*) FROM outbox WHERE state = 'dead' GROUP BY dead_reason"
            ).fetchall()
        ),
        dead_messages=[(reason, message or "", n) for reason, message, n in dead_messages],
        skipped=dict(
            connection.execute("SELECT reason, count(*) FROM skipped GROUP BY reason").fetchall()
        ),
        upstream_errors=[
            UpstreamError(*row)
            for row in connection.execute(
                "SELECT at, status, message FROM upstream_errors ORDER BY id DESC"
            )
        ],
        paused=None if paused is None else Paused(**json.loads(paused[0])),
        dry_run_bodies=scalar("SELECT count(*) FROM dry_run_bodies"),
    )
