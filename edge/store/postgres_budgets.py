"""The PostgreSQL store's budgets (`edge.store.budgets`): a row per bucket, spent by the rule
every backend applies (`spend`) under the row's lock, so edges taking from one bucket at once
take one after the other. A bucket never used is made full first (`ON CONFLICT DO NOTHING`: the
first edge's), which is what `spend` makes of a missing one."""

from __future__ import annotations

from typing import Final

from edge.store.budgets import Bucket, spend
from edge.store.postgres_plan import Plan, Query, Result

MADE: Final = (
    "INSERT INTO budgets (name, tokens, updated_at) VALUES (%s, %s, %s)"
    " ON CONFLICT (name) DO NOTHING"
)
LOCKED: Final = "SELECT tokens, updated_at FROM budgets WHERE name = %s FOR UPDATE"


def take(name: str, rate: float, count: float, now: float) -> Plan[float]:
    full = spend(None, now, rate, 0.0)[0]
    _, found = yield [Query(MADE, (name, *full)), Query(LOCKED, (name,))]
    found_rows: Result = found
    bucket, wait = spend(Bucket(*found_rows.rows[0]), now, rate, count)
    yield Query("UPDATE budgets SET tokens = %s, updated_at = %s WHERE name = %s", (*bucket, name))
    return wait
