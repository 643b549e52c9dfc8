"""The latest outcomes (`rokt-edge recent`), as both SQL backends read them from the same tables.

An outbox item's state is where it is: in the queue (pending, retrying or in flight), dead, or
neither (delivered; recorded in a dry run when `dry_runs` names it). Skip records are beside
them. Both are read newest first by ids that grow as rows are written, so neither read scans a
table.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from edge.store.values import (
    DEAD,
    DELIVERED,
    DRY_RUN,
    IN_FLIGHT,
    PENDING,
    RETRYING,
    SKIPPED,
    Outcome,
)


def items_query(limit: str) -> str:
    """The newest items with their state, message, error and body; `limit`: the backend's
    parameter marker for the count."""
    return f"""
SELECT outbox.created_at,
    CASE WHEN queue.id IS NOT NULL AND queue.lease_until IS NOT NULL THEN '{IN_FLIGHT}'
         WHEN queue.id IS NOT NULL AND queue.attempts > 0 THEN '{RETRYING}'
         WHEN queue.id IS NOT NULL THEN '{PENDING}'
         WHEN dead.id IS NOT NULL THEN '{DEAD}'
         WHEN dry_runs.id IS NOT NULL THEN '{DRY_RUN}'
         ELSE '{DELIVERED}' END,
    outbox.message_id, outbox.mapping, dead.reason, coalesce(dead.message, queue.last_error),
    dead.at, bodies.body
FROM (SELECT id, created_at, message_id, mapping FROM outbox ORDER BY id DESC LIMIT {limit})
    AS outbox
LEFT JOIN queue ON queue.id = outbox.id
LEFT JOIN dead ON dead.id = outbox.id
LEFT JOIN dry_runs ON dry_runs.id = outbox.id
LEFT JOIN bodies ON bodies.id = outbox.id
ORDER BY outbox.id DESC
"""


def newest(
    items: Iterable[tuple[Any, ...]], skips: Iterable[tuple[Any, ...]], limit: int
) -> list[Outcome]:
    """The newest `limit` outcomes of the items' rows (`items_query`) and the skip records'
    (time, message id, mapping, reason)."""
    outcomes = [Outcome(*row) for row in items] + [
        Outcome(at, SKIPPED, message_id, mapping, reason)
        for at, message_id, mapping, reason in skips
    ]
    outcomes.sort(key=lambda outcome: outcome.at, reverse=True)
    return outcomes[:limit]
