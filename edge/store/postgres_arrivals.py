"""The PostgreSQL store's arrivals (the states drawn in `edge.store.arrivals`), each a plan
(`edge.store.postgres_plan`).

Intake's arrivals are written with a binary COPY, one statement and so a transaction by itself:
the fastest way in of those measured (bench/store_drivers.py). A lease is a narrow row of
`arrival_leases`. Edges take slices one at a time (an advisory lock for the lease's short
transaction: `LOCK`); a slice locks the oldest arrivals no other holder's lease covers with
`FOR UPDATE SKIP LOCKED` (not waiting for a settle under way) and writes their leases with `ON
CONFLICT … WHERE owner = this one`, so an arrival is never leased to two edges at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from edge.store.arrivals import in_order
from edge.store.postgres_plan import Plan, Query, Result
from edge.store.values import Arrival, StoredArrival

COLUMNS: Final = (
    "source, received_at, body, kind, ip, user_agent, gpc, cookie_anonymous_id,"
    " cookie_click_id, cookie_click_seen_at, keys"
)
TYPES: Final = (
    "text", "float8", "bytea", "text", "text", "text", "bool", "text", "text", "int8", "text",
)  # fmt: skip
COPY: Final = f"COPY arrivals ({COLUMNS}) FROM STDIN (FORMAT BINARY)"


def insert(rows: Sequence[Arrival]) -> Plan[None]:
    """Arrivals are named tuples in the table's column order."""
    yield Query(COPY, rows, copy=TYPES, alone=True)


HOLD: Final = f"""
WITH held AS (
    INSERT INTO arrivals ({COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
    RETURNING id
), leased AS (
    INSERT INTO arrival_leases (id, owner, until) SELECT id, %s, %s FROM held
)
SELECT id FROM held
"""


def hold(arrival: Arrival, owner: str, until: float) -> Plan[int]:
    """Store an arrival leased to `owner` already; its id."""
    done: Result = yield Query(HOLD, (*arrival, owner, until), alone=True)
    return int(done.rows[0][0])


# Leases are taken one edge at a time: each lease's transaction first takes this lock (the
# store's schema's), so its statement sees every lease committed before it. Without it, an
# arrival another edge leased after the statement began would be seen free, locked (that edge's
# lock gone with its commit), then refused by the lease's WHERE, eating the slice's LIMIT.
LOCK: Final = "SELECT pg_advisory_xact_lock(%s, hashtext(current_schema()))"
LEASING: Final = 0x6C656173  # "leas"
CANDIDATES: Final = f"""
SELECT id, {COLUMNS} FROM arrivals
WHERE NOT EXISTS (
    SELECT 1 FROM arrival_leases
    WHERE arrival_leases.id = arrivals.id AND arrival_leases.owner <> %(owner)s)
ORDER BY id LIMIT %(limit)s FOR UPDATE SKIP LOCKED
"""
# What other edges hold, for `in_order` (their slices: a few thousand rows at most).
HELD: Final = """
SELECT arrivals.id, arrivals.keys FROM arrival_leases JOIN arrivals USING (id)
WHERE arrival_leases.owner <> %(owner)s AND arrivals.keys IS NOT NULL
"""
LEASE: Final = """
INSERT INTO arrival_leases AS lease (id, owner, until)
SELECT unnest(%(ids)s::bigint[]), %(owner)s, %(until)s
ON CONFLICT (id) DO UPDATE SET until = excluded.until WHERE lease.owner = excluded.owner
"""


def lease(limit: int, owner: str, until: float) -> Plan[list[StoredArrival]]:
    """The oldest `limit` arrivals no other owner holds, in the order they came, leased to
    `owner` until `until` (its own renewed), but for those that must wait for an older one of
    the same visitor held elsewhere (`in_order`)."""
    params = {"limit": limit, "owner": owner, "until": until}
    _, candidates, held = yield [
        Query(LOCK, (LEASING,)),
        Query(CANDIDATES, params),
        Query(HELD, params),
    ]
    rows = candidates.rows
    taken = in_order(rows, held.rows) if rows and held.rows else rows
    if taken:
        yield Query(LEASE, {**params, "ids": [row[0] for row in taken]})
    return stored(taken)


def stored(rows: Sequence[tuple[Any, ...]]) -> list[StoredArrival]:
    return [StoredArrival(row[0], Arrival(*row[1:])) for row in rows]


def delete(ids: Sequence[int]) -> list[Query]:
    """Statements that forget settled arrivals, for the settle's transaction."""
    return [
        Query("DELETE FROM arrivals WHERE id = ANY(%s::bigint[])", (list(ids),)),
        Query("DELETE FROM arrival_leases WHERE id = ANY(%s::bigint[])", (list(ids),)),
    ]


def release(ids: Sequence[int], owner: str) -> Plan[None]:
    yield Query(
        "DELETE FROM arrival_leases WHERE id = ANY(%s::bigint[]) AND owner = %s",
        (list(ids), owner),
        alone=True,
    )


def sweep(now: float) -> Plan[int]:
    done: Result = yield Query("DELETE FROM arrival_leases WHERE until < %s", (now,), alone=True)
    return done.affected


COUNT: Final = "SELECT count(*), min(received_at) FROM arrivals"
