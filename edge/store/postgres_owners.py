"""The PostgreSQL store's owners (`edge.store.owners`): a row per process incarnation that beats,
and the sweep that frees a dead one's arrival leases and outbox claims at once; each a plan
(`edge.store.postgres_plan`) of one statement. Two edges sweeping the same dead owner at once
free each lease once: the second's update finds the rows no longer its.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from edge.store.postgres_plan import Plan, Query, Result
from edge.store.values import Owner


def beat(owner: str, host: str, pid: int, now: float) -> Plan[None]:
    yield Query(
        "INSERT INTO owners (owner, host, pid, started_at, seen_at) VALUES (%s, %s, %s, %s, %s)"
        " ON CONFLICT (owner) DO UPDATE SET seen_at = excluded.seen_at",
        (owner, host, pid, now, now),
        alone=True,
    )


SWEEP: Final = """
WITH dead AS (
    SELECT owner FROM owners WHERE seen_at < %(before)s
    UNION SELECT unnest(%(gone)s::text[])
    EXCEPT SELECT %(own)s
), forgotten AS (
    DELETE FROM owners WHERE owner IN (SELECT owner FROM dead)
), claims AS (
    UPDATE queue SET lease_until = NULL, owner = NULL
    WHERE owner IN (SELECT owner FROM dead) AND lease_until IS NOT NULL
    RETURNING 1
), leases AS (
    DELETE FROM arrival_leases WHERE owner IN (SELECT owner FROM dead) RETURNING 1
)
SELECT (SELECT count(*) FROM claims) + (SELECT count(*) FROM leases)
"""


def sweep_dead(silent_before: float, gone: Sequence[str], own: str) -> Plan[int]:
    """Free what the owners silent since before `silent_before`, or named in `gone`, hold
    (never `own`'s), and forget them; how many leases and claims were freed."""
    params = {"before": silent_before, "gone": list(gone), "own": own}
    done: Result = yield Query(SWEEP, params, alone=True)
    return int(done.rows[0][0])


LISTED: Final = """
SELECT owner, host, pid, started_at, seen_at,
    (SELECT count(*) FROM arrival_leases AS lease WHERE lease.owner = o.owner),
    (SELECT count(*) FROM queue WHERE queue.owner = o.owner AND queue.lease_until IS NOT NULL)
FROM owners AS o ORDER BY started_at, owner
"""


def listed() -> Plan[list[Owner]]:
    found: Result = yield Query(LISTED, alone=True)
    return owners(found.rows)


def owners(rows: Sequence[tuple[object, ...]]) -> list[Owner]:
    return [Owner(*row) for row in rows]  # type: ignore[arg-type]
