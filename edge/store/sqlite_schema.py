"""The SQLite store's tables and statements, one function per operation.

Each function runs inside the writer's transaction (see `edge.store.sqlite`) and never commits.
Times are epoch seconds (REAL); item states are the ones drawn in `edge.store.outbox`.

An item's state is where it is, beside its `outbox` row (written once at put):

    queue        pending (lease_until NULL) or claimed (lease_until set): narrow rows
    dead         dead-lettered, with the reason and the upstream's message
    neither      delivered, until pruned with its outbox row (`dry_runs` names those that were
                 recorded in a dry run rather than sent: their bodies stay, for `replay_dry_runs`)

so a claim touches only narrow rows, and an ack only deletes: the queue row, the body (not a dry
run's), and any dead letter another sender made of the item meanwhile (delivered wins). Why the
tables are cut this way: docs/architecture.md#the-outbox.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Sequence
from typing import Any, Final

from edge.store import (
    sqlite_arrivals,
    sqlite_budgets,
    sqlite_conversions,
    sqlite_dedup,
    sqlite_identity,
    sqlite_owners,
)
from edge.store.outbox import Claims
from edge.store.values import (
    DeadLetter,
    DryRunBody,
    ItemId,
    Paused,
    PutResult,
    Stats,
    UpstreamError,
)

# 2: bodies moved out of the outbox rows; 3: states moved out of them; 4: delivered is implicit,
# the queue holds each item's event time (a claim reads no outbox row); 5: identities keep hashed
# emails and mobiles, conversions are counted (`sqlite_conversions`); 6: a claim names its
# owner (`sqlite_owners`); 7: an arrival names its identity keys. Arrival leases came later as
# a table of their own (`sqlite_arrivals`), created where missing: older code ignores it.
VERSION: Final = 7
PAUSED: Final = "paused"
_TABLE: Final = re.compile(r"CREATE TABLE IF NOT EXISTS (\w+)")
DEAD_MESSAGES_SHOWN: Final = 10

TABLES: Final = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,          -- mapping + message id: a replayed event is stored once
    mapping TEXT NOT NULL,
    message_id TEXT NOT NULL,
    timestamp_ms INTEGER NOT NULL,     -- the event's time (the upstream's data-age limit)
    created_at REAL NOT NULL
);
-- Items waiting to be sent (pending) or being sent (claimed), in id order: claims take the
-- lowest due ids. No other index: the table holds only the queue, not what was delivered.
CREATE TABLE IF NOT EXISTS queue (
    id INTEGER PRIMARY KEY,            -- outbox.id
    available_at REAL NOT NULL,        -- not claimed before (retries)
    attempts INTEGER NOT NULL DEFAULT 0,
    lease_until REAL,                  -- claimed until; NULL: pending
    last_error TEXT,
    timestamp_ms INTEGER NOT NULL DEFAULT 0, -- outbox.timestamp_ms, read by every claim
    owner TEXT                         -- who claimed it (`sqlite_owners`), while claimed
);
CREATE TABLE IF NOT EXISTS dry_runs (
    id INTEGER PRIMARY KEY             -- outbox.id of an item delivered in a dry run
);
CREATE TABLE IF NOT EXISTS dead (
    id INTEGER PRIMARY KEY,            -- outbox.id
    reason TEXT NOT NULL,
    message TEXT NOT NULL,
    at REAL NOT NULL
);
-- Bodies of queued, dead and dry-run items, apart from their state (SQLite rewrites a whole
-- row on UPDATE); a delivered item's body is deleted at its ack, a dry run's when pruned.
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
    # Schema 1 kept each body in its outbox row: move the ones still needed to `bodies`; schemas
    # 1 and 2 kept each item's state there too: move it to the table of its state (schema 3's,
    # with its `delivered`); schema 3 kept delivered items in `delivered`: keep only dry runs.
    migrate = ""
    if version in (1, 2):
        migrate = (
            LEGACY_DELIVERED + (MIGRATE_FROM_1 if version == 1 else "") + MIGRATE_FROM_2
        ) + MIGRATE_FROM_3
    elif version == 3:
        migrate = "ALTER TABLE queue ADD COLUMN timestamp_ms INTEGER NOT NULL DEFAULT 0;"
        migrate += MIGRATE_FROM_3
    tables = (
        TABLES + sqlite_identity.TABLE + sqlite_dedup.TABLE + sqlite_arrivals.TABLE
        + sqlite_conversions.TABLE + sqlite_owners.TABLE + sqlite_budgets.TABLE
    )  # fmt: skip
    if version == VERSION and all(_exists(connection, name) for name in _TABLE.findall(tables)):
        return  # nothing to write: a store opens on a full disk (`rokt-edge status` does)
    if 0 < version < 5 and _exists(connection, "identities"):
        migrate += "".join(
            f"ALTER TABLE identities ADD COLUMN {column};"
            for column in sqlite_identity.ADDED_COLUMNS
        )
    if _exists(connection, "queue") and not _has_column(connection, "queue", "owner"):
        migrate += "ALTER TABLE queue ADD COLUMN owner TEXT;"  # schemas 3 to 5
    if _exists(connection, "arrivals") and not _has_column(connection, "arrivals", "keys"):
        migrate += "ALTER TABLE arrivals ADD COLUMN keys TEXT;"  # schemas 5 and 6
    connection.executescript(f"BEGIN; {tables} {migrate} PRAGMA user_version = {VERSION}; COMMIT;")


def _has_column(connection: sqlite3.Connection, table: str, column: str) -> bool:
    return any(row[1] == column for row in connection.execute(f"PRAGMA table_info({table})"))


def _exists(connection: sqlite3.Connection, table: str) -> bool:
    found = connection.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).fetchone()
    return found is not None


LEGACY_DELIVERED: Final = """
CREATE TABLE IF NOT EXISTS delivered (id INTEGER PRIMARY KEY, at REAL NOT NULL, dry_run INTEGER);
"""

MIGRATE_FROM_3: Final = """
UPDATE queue SET timestamp_ms = (SELECT timestamp_ms FROM outbox WHERE outbox.id = queue.id);
INSERT OR IGNORE INTO dry_runs (id) SELECT id FROM delivered WHERE dry_run;
DROP TABLE delivered;
"""


MIGRATE_FROM_1: Final = """
INSERT OR IGNORE INTO bodies (id, body) SELECT id, body FROM outbox WHERE state != 'delivered';
ALTER TABLE outbox DROP COLUMN body;
"""

MIGRATE_FROM_2: Final = """
INSERT OR IGNORE INTO queue (id, available_at, attempts, lease_until, last_error)
    SELECT id, available_at, attempts, CASE state WHEN 'claimed' THEN coalesce(lease_until, 0) END,
    last_error FROM outbox WHERE state IN ('pending', 'claimed');
INSERT OR IGNORE INTO delivered (id, at, dry_run)
    SELECT id, coalesce(delivered_at, created_at), dry_run FROM outbox WHERE state = 'delivered';
INSERT OR IGNORE INTO dead (id, reason, message, at)
    SELECT id, coalesce(dead_reason, 'rejected'), coalesce(last_error, ''),
    coalesce(dead_at, created_at) FROM outbox WHERE state = 'dead';
CREATE TABLE outbox_3 (
    id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, mapping TEXT NOT NULL,
    message_id TEXT NOT NULL, timestamp_ms INTEGER NOT NULL, created_at REAL NOT NULL
);
INSERT INTO outbox_3 SELECT id, key, mapping, message_id, timestamp_ms, created_at FROM outbox;
DROP TABLE outbox;
ALTER TABLE outbox_3 RENAME TO outbox;
"""


def put(
    connection: sqlite3.Connection,
    rows: list[tuple[str, str, str, int, str]],
    skipped: list[tuple[str, str, str | None, str]],
    now: float,
) -> PutResult:
    # Rows are numbered up from the highest id, so the new items are those above it: a key seen
    # before keeps the row, state and body it has (pending, dead, or delivered).
    [(last,)] = connection.execute("SELECT coalesce(max(id), 0) FROM outbox")
    cursor = connection.executemany(
        "INSERT INTO outbox (key, mapping, message_id, timestamp_ms, created_at)"
        " VALUES (?1, ?2, ?3, ?4, ?6) ON CONFLICT (key) DO NOTHING",
        [(*row, now) for row in rows],
    )
    stored = max(cursor.rowcount, 0) if rows else 0
    if stored:
        connection.execute(
            "INSERT INTO queue (id, available_at, timestamp_ms)"
            " SELECT id, ?, timestamp_ms FROM outbox WHERE id > ?",
            (now, last),
        )
        connection.executemany(
            "INSERT OR IGNORE INTO bodies (id, body)"
            " SELECT id, ? FROM outbox WHERE key = ? AND id > ?",
            [(row[4], row[0], last) for row in rows],
        )
    connection.executemany(
        "INSERT INTO skipped (key, message_id, mapping, reason, created_at)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (key) DO NOTHING",
        [(*row, now) for row in skipped],
    )
    return PutResult(stored=stored, duplicates=len(rows) - stored)


# Claimed items come back as one row (their ids, times, sizes and bodies each joined into one
# text or blob) rather than a row each. The bodies go to the sender as one bytes object, joined
# by commas as a request joins them (`Claims`), so a claim of a thousand items crosses from the
# writer process as a handful of objects, not thousands.


def claim(
    connection: sqlite3.Connection, limit: int, now: float, until: float, owner: str
) -> Claims:
    # The first `limit` due pending items with their bodies, in id order, then one UPDATE over
    # their id range: every due pending item between the first and the last id is among them
    # (ORDER BY id LIMIT), and the writer's transaction holds the lock between the two.
    count, ids, times, oldest, sizes, bodies, first, last = connection.execute(
        "SELECT count(*), group_concat(id), group_concat(timestamp_ms), min(timestamp_ms),"
        " group_concat(length(CAST(body AS BLOB))), CAST(group_concat(body, ',') AS BLOB),"
        " min(id), max(id) FROM ("
        " SELECT id, timestamp_ms FROM queue WHERE lease_until IS NULL AND available_at <= ?"
        " ORDER BY id LIMIT ?) LEFT JOIN bodies USING (id)",
        (now, limit),
    ).fetchone()
    if not count:
        return Claims([], b"", [], [])
    leased = connection.execute(
        "UPDATE queue SET lease_until = ?, owner = ?"
        " WHERE id BETWEEN ? AND ? AND lease_until IS NULL AND available_at <= ?",
        (until, owner, first, last, now),
    ).rowcount
    lengths = list(map(int, sizes.split(","))) if sizes is not None else []
    if not count == leased == len(lengths):
        raise sqlite3.DatabaseError(f"claim: {count} due, {leased} leased, {len(lengths)} bodies")
    timestamps = list(map(int, times.split(",")))
    # Every aggregate of the row steps through the same rows in the same order, so the columns
    # line up; that order is the subquery's (by id) in practice, but is not promised.
    if ids != ",".join(map(str, range(first, last + 1))):
        claimed = Claims(list(map(int, ids.split(","))), bodies, lengths, timestamps, oldest)
        rows = sorted(claimed)
        return Claims.of(
            [r.id for r in rows], [r.body for r in rows], [r.timestamp_ms for r in rows]
        )
    return Claims(range(first, last + 1), bodies, lengths, timestamps, oldest)


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
    if dry_run:  # recorded, not sent: the body stays, to be sent once there are credentials
        connection.executemany(
            "INSERT OR IGNORE INTO dry_runs (id) SELECT id FROM queue WHERE id BETWEEN ? AND ?",
            runs,
        )
    # Delivered wins over any other state: another sender may have dead-lettered the same item
    # after its lease expired, but it did reach the upstream.
    connection.executemany("DELETE FROM queue WHERE id BETWEEN ? AND ?", runs)
    connection.executemany("DELETE FROM dead WHERE id BETWEEN ? AND ?", runs)
    if not dry_run:
        connection.executemany("DELETE FROM bodies WHERE id BETWEEN ? AND ?", runs)


def retry(connection: sqlite3.Connection, ids: Sequence[ItemId], at: float, error: str) -> None:
    connection.executemany(
        "UPDATE queue SET available_at = ?, attempts = attempts + 1, last_error = ?,"
        " lease_until = NULL WHERE id = ? AND lease_until IS NOT NULL",
        [(at, error, item) for item in ids],
    )


def release(connection: sqlite3.Connection, ids: Sequence[ItemId]) -> None:
    connection.executemany(
        "UPDATE queue SET lease_until = NULL WHERE id = ? AND lease_until IS NOT NULL",
        [(item,) for item in ids],
    )


def dead(connection: sqlite3.Connection, letters: Sequence[DeadLetter], now: float) -> None:
    # Only a queued item (pending or claimed) can die: a delivered one stays delivered.
    connection.executemany(
        "INSERT OR IGNORE INTO dead (id, reason, message, at) SELECT id, ?, ?, ? FROM queue"
        " WHERE id = ?",
        [(letter.reason, letter.message, now, letter.id) for letter in letters],
    )
    connection.executemany("DELETE FROM queue WHERE id = ?", [(letter.id,) for letter in letters])


def due_now(connection: sqlite3.Connection, now: float) -> int:
    cursor = connection.execute(
        "UPDATE queue SET available_at = ? WHERE lease_until IS NULL AND available_at > ?",
        (now, now),
    )
    return cursor.rowcount


def sweep(connection: sqlite3.Connection, now: float) -> int:
    cursor = connection.execute("UPDATE queue SET lease_until = NULL WHERE lease_until < ?", (now,))
    return cursor.rowcount


def replay(connection: sqlite3.Connection, since: float | None, now: float) -> int:
    chosen = "?1 IS NULL OR at >= ?1"
    connection.execute(
        "INSERT OR IGNORE INTO queue (id, available_at, last_error, timestamp_ms)"
        f" SELECT id, ?2, message, timestamp_ms FROM dead JOIN outbox USING (id) WHERE {chosen}",
        (since, now),
    )
    return connection.execute(f"DELETE FROM dead WHERE {chosen}", (since,)).rowcount


def replay_dry_runs(connection: sqlite3.Connection, since: float | None, now: float) -> int:
    # Stored at or after `since`: an item is recorded in a dry run moments after it is stored.
    # One acknowledged before dry runs kept bodies (or pruned meanwhile) has none: it stays.
    replayed = connection.execute(
        "INSERT OR IGNORE INTO queue (id, available_at, timestamp_ms)"
        " SELECT id, ?2, timestamp_ms FROM dry_runs JOIN outbox USING (id) JOIN bodies USING (id)"
        " WHERE ?1 IS NULL OR created_at >= ?1",
        (since, now),
    ).rowcount
    connection.execute("DELETE FROM dry_runs WHERE id IN (SELECT id FROM queue)")
    return replayed


def prune(connection: sqlite3.Connection, before: float) -> int:
    """Forget items delivered and stored before `before` (older than the upstream's data-age
    limit, so never sent again: a replay of one is expired), and old skip records."""
    delivered = connection.execute(
        "DELETE FROM outbox WHERE created_at < ? AND id NOT IN (SELECT id FROM queue)"
        " AND id NOT IN (SELECT id FROM dead)",
        (before,),
    ).rowcount
    gone = "SELECT id FROM dry_runs WHERE id NOT IN (SELECT id FROM outbox)"
    connection.execute(f"DELETE FROM bodies WHERE id IN ({gone})")
    connection.execute(f"DELETE FROM dry_runs WHERE id IN ({gone})")
    skipped = connection.execute("DELETE FROM skipped WHERE created_at < ?", (before,)).rowcount
    return delivered + skipped


def record_dry_run(
    connection: sqlite3.Connection, now: float, path: str, body: str, keep: int
) -> None:
    cursor = connection.execute(
        "INSERT INTO dry_run_bodies (at, path, body) VALUES (?, ?, ?)", (now, path, body)
    )
    _keep_last(connection, "dry_run_bodies", cursor.lastrowid, keep)


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
    _keep_last(connection, "upstream_errors", cursor.lastrowid, keep)


def _keep_last(connection: sqlite3.Connection, table: str, last: int | None, keep: int) -> None:
    """Forget all but the newest `keep` rows of `table`, whose newest id is `last`."""
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

    pending, retrying, in_flight = connection.execute(
        "SELECT count(*) FILTER (WHERE lease_until IS NULL),"
        " count(*) FILTER (WHERE lease_until IS NULL AND attempts > 0),"
        " count(*) FILTER (WHERE lease_until IS NOT NULL) FROM queue"
    ).fetchone()
    # Delivered: every item neither queued nor dead.
    delivered = (
        scalar("SELECT count(*) FROM outbox")
        - pending
        - in_flight
        - scalar("SELECT count(*) FROM dead")
    )
    delivered_dry_run = scalar("SELECT count(*) FROM dry_runs")
    dead_messages = connection.execute(
        "SELECT reason, message, count(*) AS n FROM dead"
        " GROUP BY reason, message ORDER BY n DESC LIMIT ?",
        (DEAD_MESSAGES_SHOWN,),
    ).fetchall()
    paused = connection.execute("SELECT value FROM meta WHERE name = ?", (PAUSED,)).fetchone()
    return Stats(
        pending=pending,
        retrying=retrying,
        in_flight=in_flight,
        oldest_pending=scalar(
            "SELECT created_at FROM (SELECT min(id) AS id FROM queue) LEFT JOIN outbox USING (id)"
        ),
        delivered=delivered,
        delivered_dry_run=delivered_dry_run,
        dead=dict(
            connection.execute("SELECT reason, count(*) FROM dead GROUP BY reason").fetchall()
        ),
        dead_messages=[(reason, message, n) for reason, message, n in dead_messages],
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


def new_keys(connection: sqlite3.Connection, stored: int) -> set[str]:
    """The keys of the `stored` items the last `put` added (ids are numbered up)."""
    rows = connection.execute(
        "SELECT key FROM outbox ORDER BY id DESC LIMIT ?", (stored,)
    ).fetchall()
    return {row[0] for row in rows}
