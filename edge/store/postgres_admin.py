"""What the PostgreSQL store reads for `rokt-edge status`, `recent`, `/metrics` and the demo panel,
and the small shared state beside it (a pause, secrets, identities read by key), each a plan
(`edge.store.postgres_plan`). Reads run in one read-only snapshot, their statements sent in one
round trip.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from typing import Final

from edge.store.outcomes import items_query, newest
from edge.store.postgres_arrivals import COUNT as ARRIVALS
from edge.store.postgres_owners import LISTED as OWNERS
from edge.store.postgres_owners import owners
from edge.store.postgres_plan import Plan, Query, Result
from edge.store.values import (
    ConversionShare,
    DryRunBody,
    Identity,
    Paused,
    Recent,
    Stats,
    UpstreamError,
)

PAUSED: Final = "paused"
DEAD_MESSAGES_SHOWN: Final = 10
WINDOWS: Final = (("1h", 3600.0), ("24h", 86400.0))  # conversion shares (`sqlite_conversions`)

STATS: Final = (
    # pending, retrying, in flight, and when the oldest queued item was stored
    """SELECT count(*) FILTER (WHERE lease_until IS NULL),
        count(*) FILTER (WHERE lease_until IS NULL AND attempts > 0),
        count(*) FILTER (WHERE lease_until IS NOT NULL),
        (SELECT created_at FROM outbox WHERE id = (SELECT min(id) FROM queue))
    FROM queue""",
    "SELECT (SELECT count(*) FROM outbox), (SELECT count(*) FROM dry_runs),"
    " (SELECT count(*) FROM dry_run_bodies)",
    "SELECT reason, count(*) FROM dead GROUP BY reason",
    "SELECT reason, message, count(*) AS n FROM dead GROUP BY reason, message"
    f" ORDER BY n DESC LIMIT {DEAD_MESSAGES_SHOWN}",
    "SELECT reason, count(*) FROM skipped GROUP BY reason",
    "SELECT at, status, message FROM upstream_errors ORDER BY id DESC",
    f"SELECT value FROM meta WHERE name = '{PAUSED}'",
    ARRIVALS,
    OWNERS,
    *(
        "SELECT source, sum(count), sum(count) FILTER (WHERE click_id),"
        f" sum(count) FILTER (WHERE email) FROM conversion_counts WHERE bucket > %(now)s - {s}"
        " GROUP BY source ORDER BY source"
        for _, s in WINDOWS
    ),
)


def stats(now: float) -> Plan[Stats]:
    results: list[Result] = yield [Query(sql, {"now": now}) for sql in STATS]
    queue, totals, dead, dead_messages, skipped, errors, paused, arrivals, held, *shares = (
        result.rows for result in results
    )
    [(pending, retrying, in_flight, oldest_pending)] = queue
    [(items, dry_runs, dry_run_bodies)] = totals
    [(waiting, oldest_arrival)] = arrivals
    dead_counts = {reason: int(n) for reason, n in dead}
    delivered = items - pending - in_flight - sum(dead_counts.values())  # neither queued nor dead
    return Stats(
        pending=pending,
        retrying=retrying,
        in_flight=in_flight,
        oldest_pending=oldest_pending,
        delivered=delivered,
        delivered_dry_run=dry_runs,
        dead=dead_counts,
        dead_messages=[(reason, message, int(n)) for reason, message, n in dead_messages],
        skipped={reason: int(n) for reason, n in skipped},
        upstream_errors=[UpstreamError(*row) for row in errors],
        paused=Paused(**json.loads(paused[0][0])) if paused else None,
        dry_run_bodies=dry_run_bodies,
        arrivals=waiting,
        oldest_arrival=oldest_arrival,
        conversions=[
            ConversionShare(source, window, int(n), int(clicks or 0), int(emails or 0))
            for (window, _), rows in zip(WINDOWS, shares, strict=True)
            for source, n, clicks, emails in rows
        ],
        owners=owners(held),
    )


ITEMS: Final = items_query("%(limit)s")
SKIPS: Final = (
    "SELECT created_at, message_id, mapping, reason FROM skipped ORDER BY seq DESC LIMIT %(limit)s"
)
BODIES: Final = "SELECT at, path, body FROM dry_run_bodies ORDER BY id DESC LIMIT %(limit)s"


def recent(limit: int) -> Plan[Recent]:
    items, skips, bodies = yield [Query(sql, {"limit": limit}) for sql in (ITEMS, SKIPS, BODIES)]
    return Recent(newest(items.rows, skips.rows, limit), [DryRunBody(*row) for row in bodies.rows])


# -- identities --------------------------------------------------------------------------------

IDENTITY: Final = (
    "key, click_id, click_seen_at, ip, user_agent, seen_at, email_sha256, mobile_sha256"
)


def identities(keys: Sequence[str], since: float) -> Plan[dict[str, Identity]]:
    """Each key's record, seen (or its click first seen) at or after `since`."""
    found: Result = yield Query(
        f"SELECT {IDENTITY} FROM identities WHERE key = ANY(%s::text[])"
        " AND (seen_at >= %s OR click_seen_at >= %s)",
        (list(keys), since, since),
        alone=True,
    )
    return {row[0]: Identity(*row[1:]) for row in found.rows}


def latest_identities(limit: int) -> Plan[list[tuple[str, Identity]]]:
    found: Result = yield Query(
        f"SELECT {IDENTITY} FROM identities ORDER BY seen_at DESC LIMIT %s", (limit,), alone=True
    )
    return [(row[0], Identity(*row[1:])) for row in found.rows]


def prune_identities(before: float) -> Plan[int]:
    done: Result = yield Query(
        "DELETE FROM identities WHERE seen_at < %(before)s"
        " AND (click_seen_at IS NULL OR click_seen_at < %(before)s)",
        {"before": before},
        alone=True,
    )
    return done.affected


# -- shared state --------------------------------------------------------------------------------


def set_paused(paused: Paused | None) -> Plan[None]:
    if paused is None:
        yield Query("DELETE FROM meta WHERE name = %s", (PAUSED,), alone=True)
        return
    value = json.dumps({"since": paused.since, "reason": paused.reason})
    yield Query(
        "INSERT INTO meta (name, value) VALUES (%s, %s)"
        " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        (PAUSED, value),
        alone=True,
    )


def secret(name: str) -> Plan[str]:
    """Generated by the first edge that asks; the others read it (the insert waits for theirs)."""
    key = f"secret:{name}"
    yield Query(
        "INSERT INTO meta (name, value) VALUES (%s, %s) ON CONFLICT (name) DO NOTHING",
        (key, secrets.token_urlsafe(32)),
    )
    found: Result = yield Query("SELECT value FROM meta WHERE name = %s", (key,))
    return str(found.rows[0][0])


def touch(now: float) -> Plan[None]:
    yield Query(
        "INSERT INTO meta (name, value) VALUES ('writable-check', %(now)s)"
        " ON CONFLICT (name) DO UPDATE SET value = %(now)s",
        {"now": str(now)},
        alone=True,
    )
