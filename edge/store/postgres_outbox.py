"""The PostgreSQL store's outbox transitions (the states drawn in `edge.store.outbox`), each a plan
(`edge.store.postgres_plan`) of one statement, run as its own transaction.

A claim leases the lowest due ids with `UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED
LIMIT n)`: edges claiming at once take disjoint items without waiting for each other, and a row
another edge claimed meanwhile is rechecked and left out. A claimed row names its claimer
(`owner`). The claimed items come back as one row (ids, times, sizes and the bodies joined by
commas, as `Claims` keeps them), not a row each. Every other transition names its rows by id and
is safe to apply twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from edge.store.outbox import Claims
from edge.store.postgres_plan import Plan, Query, Result
from edge.store.values import DeadLetter, DryRunBody, ItemId

CLAIM: Final = """
WITH claimed AS (
    UPDATE queue SET lease_until = %(until)s, owner = %(owner)s
    WHERE id IN (
        SELECT id FROM queue WHERE lease_until IS NULL AND available_at <= %(now)s
        ORDER BY id LIMIT %(limit)s FOR UPDATE SKIP LOCKED)
    RETURNING id, timestamp_ms
)
SELECT count(*), string_agg(c.id::text, ',' ORDER BY c.id),
    string_agg(c.timestamp_ms::text, ',' ORDER BY c.id),
    string_agg(octet_length(b.body)::text, ',' ORDER BY c.id),
    convert_to(string_agg(b.body, ',' ORDER BY c.id), 'UTF8')
FROM claimed c LEFT JOIN bodies b USING (id)
"""


class ClaimError(RuntimeError):
    """Claimed items without their bodies: the store is inconsistent."""


def claim(limit: int, now: float, until: float, owner: str) -> Plan[Claims]:
    params = {"limit": limit, "now": now, "until": until, "owner": owner}
    found: Result = yield Query(CLAIM, params, alone=True)
    [(count, ids, times, sizes, bodies)] = found.rows
    if not count:
        return Claims([], b"", [], [])
    lengths = list(map(int, sizes.split(","))) if sizes else []
    if len(lengths) != count:
        raise ClaimError(f"claim: {count} items leased, {len(lengths)} bodies")
    return Claims(list(map(int, ids.split(","))), bytes(bodies), lengths,
                  list(map(int, times.split(","))))  # fmt: skip


# Delivered wins over any other state: another sender may have dead-lettered the same item
# after its lease expired, but it did reach the upstream. A dry run keeps the body, to be sent
# once there are credentials.
ACK: Final = """
WITH delivered AS (DELETE FROM queue WHERE id = ANY(%(ids)s::bigint[]) RETURNING id),
recorded AS (
    INSERT INTO dry_runs (id) SELECT id FROM delivered WHERE %(dry_run)s
    ON CONFLICT (id) DO NOTHING
),
undead AS (DELETE FROM dead WHERE id = ANY(%(ids)s::bigint[]))
DELETE FROM bodies WHERE id = ANY(%(ids)s::bigint[]) AND NOT %(dry_run)s
"""


def ack(ids: Sequence[ItemId], dry_run: bool) -> Plan[None]:
    yield Query(ACK, {"ids": list(ids), "dry_run": dry_run}, alone=True)


def retry(ids: Sequence[ItemId], at: float, error: str) -> Plan[None]:
    yield Query(
        "UPDATE queue SET available_at = %s, attempts = attempts + 1, last_error = %s,"
        " lease_until = NULL, owner = NULL"
        " WHERE id = ANY(%s::bigint[]) AND lease_until IS NOT NULL",
        (at, error, list(ids)),
        alone=True,
    )


def release(ids: Sequence[ItemId]) -> Plan[None]:
    yield Query(
        "UPDATE queue SET lease_until = NULL, owner = NULL"
        " WHERE id = ANY(%s::bigint[]) AND lease_until IS NOT NULL",
        (list(ids),),
        alone=True,
    )


# Only a queued item (pending or claimed) can die: a delivered one stays delivered.
DEAD: Final = """
WITH letters AS (
    SELECT * FROM unnest(%s::bigint[], %s::text[], %s::text[]) AS letter (id, reason, message)
), died AS (
    INSERT INTO dead (id, reason, message, at)
    SELECT letters.id, letters.reason, letters.message, %s FROM letters JOIN queue USING (id)
    ON CONFLICT (id) DO NOTHING
)
DELETE FROM queue WHERE id IN (SELECT id FROM letters)
"""


def dead(letters: Sequence[DeadLetter], now: float) -> Plan[None]:
    ids = [letter.id for letter in letters]
    reasons = [letter.reason for letter in letters]
    messages = [letter.message for letter in letters]
    yield Query(DEAD, (ids, reasons, messages, now), alone=True)


def due_now(now: float) -> Plan[int]:
    done: Result = yield Query(
        "UPDATE queue SET available_at = %s WHERE lease_until IS NULL AND available_at > %s",
        (now, now),
        alone=True,
    )
    return done.affected


def sweep(now: float) -> Plan[int]:
    done: Result = yield Query(
        "UPDATE queue SET lease_until = NULL, owner = NULL WHERE lease_until < %s",
        (now,),
        alone=True,
    )
    return done.affected


REPLAY: Final = """
WITH chosen AS (
    DELETE FROM dead WHERE %(since)s::double precision IS NULL OR at >= %(since)s
    RETURNING id, message
), queued AS (
    INSERT INTO queue (id, available_at, last_error, timestamp_ms)
    SELECT chosen.id, %(now)s, chosen.message, outbox.timestamp_ms
    FROM chosen JOIN outbox USING (id)
    ON CONFLICT (id) DO NOTHING
)
SELECT count(*) FROM chosen
"""


def replay(since: float | None, now: float) -> Plan[int]:
    done: Result = yield Query(REPLAY, {"since": since, "now": now}, alone=True)
    return int(done.rows[0][0])


# Stored at or after `since`: an item is recorded in a dry run moments after it is stored. One
# acknowledged before dry runs kept bodies (or pruned meanwhile) has none: it stays.
REPLAY_DRY_RUNS: Final = """
WITH queued AS (
    INSERT INTO queue (id, available_at, timestamp_ms)
    SELECT id, %(now)s, outbox.timestamp_ms
    FROM dry_runs JOIN outbox USING (id) JOIN bodies USING (id)
    WHERE %(since)s::double precision IS NULL OR outbox.created_at >= %(since)s
    ON CONFLICT (id) DO NOTHING
    RETURNING id
), forgotten AS (
    DELETE FROM dry_runs WHERE id IN (SELECT id FROM queued)
)
SELECT count(*) FROM queued
"""


def replay_dry_runs(since: float | None, now: float) -> Plan[int]:
    done: Result = yield Query(REPLAY_DRY_RUNS, {"since": since, "now": now}, alone=True)
    return int(done.rows[0][0])


# Items delivered and stored before `before` (older than the upstream's data-age limit, so
# never sent again), with a dry run's body; old skip records, dedup entries and counts.
PRUNE: Final = """
WITH delivered AS (
    DELETE FROM outbox WHERE created_at < %(before)s
    AND NOT EXISTS (SELECT 1 FROM queue WHERE queue.id = outbox.id)
    AND NOT EXISTS (SELECT 1 FROM dead WHERE dead.id = outbox.id)
    RETURNING id
), bodies_gone AS (
    DELETE FROM bodies WHERE id IN (SELECT id FROM delivered)
), dry_runs_gone AS (
    DELETE FROM dry_runs WHERE id IN (SELECT id FROM delivered)
), skips AS (
    DELETE FROM skipped WHERE created_at < %(before)s RETURNING 1
), dedups AS (
    DELETE FROM dedup WHERE timestamp_ms < %(dedup_before)s RETURNING 1
), counts AS (
    DELETE FROM conversion_counts WHERE bucket < %(before)s RETURNING 1
)
SELECT (SELECT count(*) FROM delivered) + (SELECT count(*) FROM skips)
    + (SELECT count(*) FROM dedups) + (SELECT count(*) FROM counts)
"""


def prune(before: float, dedup_before_ms: int) -> Plan[int]:
    params = {"before": before, "dedup_before": dedup_before_ms}
    done: Result = yield Query(PRUNE, params, alone=True)
    return int(done.rows[0][0])


# -- what the sender keeps beside the outbox: dry-run bodies, the upstream's errors ---------------


def record_dry_run(now: float, path: str, body: str, keep: int) -> Plan[None]:
    yield Query(
        "WITH added AS (INSERT INTO dry_run_bodies (at, path, body) VALUES (%s, %s, %s)"
        " RETURNING id) DELETE FROM dry_run_bodies WHERE id <= (SELECT id FROM added) - %s",
        (now, path, body, keep),
        alone=True,
    )


def dry_run_bodies(limit: int) -> Plan[list[DryRunBody]]:
    found: Result = yield Query(
        "SELECT at, path, body FROM dry_run_bodies ORDER BY id DESC LIMIT %s", (limit,), alone=True
    )
    return [DryRunBody(*row) for row in found.rows]


def record_upstream_error(now: float, status: int | None, message: str, keep: int) -> Plan[None]:
    yield Query(
        "WITH added AS (INSERT INTO upstream_errors (at, status, message) VALUES (%s, %s, %s)"
        " RETURNING id) DELETE FROM upstream_errors WHERE id <= (SELECT id FROM added) - %s",
        (now, status, message, keep),
        alone=True,
    )
