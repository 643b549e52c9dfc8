"""The latest outcomes, read from the SQLite store's tables for `rokt-edge recent`.

An outbox item's state is where it is (`edge.store.sqlite_schema`): in the queue (pending,
retrying or in flight), dead, or neither (delivered; recorded in a dry run when `dry_runs` names
it). Skip records are beside them. Both are read newest first by their row ids, which grow as
they are written, so neither read scans a table.
"""

from __future__ import annotations

import sqlite3

from edge.store import sqlite_schema as schema
from edge.store.values import (
    DEAD,
    DELIVERED,
    DRY_RUN,
    IN_FLIGHT,
    PENDING,
    RETRYING,
    SKIPPED,
    Outcome,
    Recent,
)

ITEMS = f"""
SELECT outbox.created_at,
    CASE WHEN queue.id IS NOT NULL AND queue.lease_until IS NOT NULL THEN '{IN_FLIGHT}'
         WHEN queue.id IS NOT NULL AND queue.attempts > 0 THEN '{RETRYING}'
         WHEN queue.id IS NOT NULL THEN '{PENDING}'
         WHEN dead.id IS NOT NULL THEN '{DEAD}'
         WHEN dry_runs.id IS NOT NULL THEN '{DRY_RUN}'
         ELSE '{DELIVERED}' END,
    outbox.message_id, outbox.mapping, dead.reason, coalesce(dead.message, queue.last_error),
    dead.at, bodies.body
FROM (SELECT id, created_at, message_id, mapping FROM outbox ORDER BY id DESC LIMIT ?) AS outbox
LEFT JOIN queue ON queue.id = outbox.id
LEFT JOIN dead ON dead.id = outbox.id
LEFT JOIN dry_runs ON dry_runs.id = outbox.id
LEFT JOIN bodies ON bodies.id = outbox.id
ORDER BY outbox.id DESC
"""
SKIPS = "SELECT created_at, message_id, mapping, reason FROM skipped ORDER BY rowid DESC LIMIT ?"


def read(connection: sqlite3.Connection, limit: int) -> Recent:
    items = [Outcome(*row) for row in connection.execute(ITEMS, (limit,))]
    skips = [
        Outcome(at, SKIPPED, message_id, mapping, reason)
        for at, message_id, mapping, reason in connection.execute(SKIPS, (limit,))
    ]
    outcomes = sorted(items + skips, key=lambda outcome: outcome.at, reverse=True)[:limit]
    return Recent(outcomes, schema.dry_run_bodies(connection, limit))
