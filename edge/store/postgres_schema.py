"""The PostgreSQL store's schema: versioned migrations, run by the edge itself when it opens the
store, serialized by an advisory lock so that several edges starting at once migrate once.

Tables are those of the SQLite store (`edge.store.sqlite_schema` says why the outbox is cut into
a narrow queue, the bodies and the dead letters), in the schema the connection's `search_path`
names (a URL may choose one: `?options=-csearch_path%3Dedge`). Times are the store's clock's
epoch seconds (double precision), never the server's `now()`. `rokt_edge_schema` holds the
version; a store whose schema is current opens without writing, and a database from a newer
rokt-edge is refused.
"""

from __future__ import annotations

from typing import Any, Final

import psycopg

from edge.store.errors import StoreConfigError

MIGRATING: Final = 0x6D696772  # pg_advisory_xact_lock's first key ("migr"); the second: the schema
VERSION_TABLE: Final = "rokt_edge_schema"

# Each migration once, in order; a released one is never edited (add the next instead).
MIGRATIONS: Final[tuple[tuple[int, str], ...]] = (
    (
        1,
        """
CREATE TABLE outbox (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key text NOT NULL UNIQUE,              -- mapping + message id: a replayed event is stored once
    mapping text NOT NULL,
    message_id text NOT NULL,
    timestamp_ms bigint NOT NULL,          -- the event's time (the upstream's data-age limit)
    created_at double precision NOT NULL
);
-- Pending (lease_until NULL) or claimed items, in id order: claims take the lowest due ids.
CREATE TABLE queue (
    id bigint PRIMARY KEY,                 -- outbox.id
    available_at double precision NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    lease_until double precision,          -- claimed until; NULL: pending
    owner text,                            -- the store that claimed it (`Store.owner`)
    last_error text,
    timestamp_ms bigint NOT NULL
);
CREATE INDEX queue_pending ON queue (id) WHERE lease_until IS NULL;
CREATE INDEX queue_owner ON queue (owner) WHERE owner IS NOT NULL;
CREATE TABLE dry_runs (id bigint PRIMARY KEY);
CREATE TABLE dead (
    id bigint PRIMARY KEY, reason text NOT NULL, message text NOT NULL,
    at double precision NOT NULL
);
CREATE TABLE bodies (id bigint PRIMARY KEY, body text NOT NULL);
CREATE TABLE skipped (
    key text PRIMARY KEY, message_id text NOT NULL, mapping text, reason text NOT NULL,
    created_at double precision NOT NULL,
    seq bigint GENERATED ALWAYS AS IDENTITY UNIQUE  -- the order they were recorded in
);
CREATE TABLE dry_run_bodies (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, at double precision NOT NULL,
    path text NOT NULL, body text NOT NULL
);
CREATE TABLE upstream_errors (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, at double precision NOT NULL,
    status integer, message text NOT NULL
);
CREATE TABLE meta (name text PRIMARY KEY, value text NOT NULL);
CREATE TABLE identities (
    key text PRIMARY KEY,                  -- a:<anonymousId> or u:<userId>
    click_id text,
    click_seen_at double precision,        -- when this click was first seen
    ip text,
    user_agent text,
    seen_at double precision NOT NULL,
    email_sha256 text,
    mobile_sha256 text
);
CREATE INDEX identities_seen ON identities (seen_at);
CREATE TABLE dedup (
    key text PRIMARY KEY,                  -- mapping, conversion type, confirmation ref
    outbox_key text NOT NULL,              -- the first copy's outbox key
    timestamp_ms bigint NOT NULL           -- the first copy's event time
);
CREATE TABLE conversion_counts (
    bucket bigint NOT NULL, source text NOT NULL, click_id boolean NOT NULL,
    email boolean NOT NULL, count bigint NOT NULL,
    PRIMARY KEY (bucket, source, click_id, email)
);
CREATE TABLE arrivals (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- the order of processing
    source text NOT NULL,
    received_at double precision NOT NULL,
    body bytea NOT NULL,
    kind text,
    ip text,
    user_agent text,
    gpc boolean NOT NULL DEFAULT false,
    cookie_anonymous_id text,
    cookie_click_id text,
    cookie_click_seen_at bigint
);
-- Leases apart from the arrivals (as the queue apart from the bodies): renewing one writes a
-- narrow row, not the arrival's body again.
CREATE TABLE arrival_leases (
    id bigint PRIMARY KEY,                 -- arrivals.id
    owner text NOT NULL,
    until double precision NOT NULL
);
CREATE INDEX arrival_leases_owner ON arrival_leases (owner);
-- The processes that beat (`edge.store.owners`), by the owner their leases and claims name.
CREATE TABLE owners (
    owner text PRIMARY KEY,                -- Store.owner: host/pid/random
    host text NOT NULL,
    pid integer NOT NULL,
    started_at double precision NOT NULL,  -- its first heartbeat
    seen_at double precision NOT NULL      -- its last
);
-- Token buckets every edge takes from (`edge.store.budgets`): the upstream's rate limit.
CREATE TABLE budgets (
    name text PRIMARY KEY,
    tokens double precision NOT NULL,      -- negative: in debt
    updated_at double precision NOT NULL
);
""",
    ),
    # An arrival names the identity keys its events may read or teach (`Arrival.keys`): the
    # arrivals of one visitor are processed in the order they came, whichever edge takes them.
    (2, "ALTER TABLE arrivals ADD COLUMN keys text;"),
)
VERSION: Final = MIGRATIONS[-1][0]


def migrate(connection: psycopg.Connection[Any], *, create: bool = True) -> None:
    """Bring the schema to `VERSION` (an autocommit connection). Without `create`, a database
    without a store is refused (StoreConfigError) rather than given one."""
    current = _version(connection)
    if current == VERSION:
        return  # nothing to write
    if current is None and not create:
        raise StoreConfigError("no rokt-edge store in this database (`rokt-edge serve` makes it)")
    with connection.transaction():
        connection.execute(
            "SELECT pg_advisory_xact_lock(%s, hashtext(current_schema()))", (MIGRATING,)
        )
        connection.execute(f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (version integer NOT NULL)")
        current = _version(connection) or 0  # again, under the lock: another edge may have
        if current > VERSION:
            raise StoreConfigError(f"the database is from a newer rokt-edge (schema {current})")
        for number, statements in MIGRATIONS:
            if number > current:
                connection.execute(statements.encode())
        if current < VERSION:
            connection.execute(f"DELETE FROM {VERSION_TABLE}")
            connection.execute(f"INSERT INTO {VERSION_TABLE} (version) VALUES (%s)", (VERSION,))


def _version(connection: psycopg.Connection[Any]) -> int | None:
    """The schema's version; None when the database has no store."""
    [(table,)] = connection.execute("SELECT to_regclass(%s) IS NOT NULL", (VERSION_TABLE,))
    if not table:
        return None
    row = connection.execute(f"SELECT max(version) FROM {VERSION_TABLE}").fetchone()
    version = row[0] if row else None
    if version is not None and version > VERSION:
        raise StoreConfigError(f"the database is from a newer rokt-edge (schema {version})")
    return None if version is None else int(version)
