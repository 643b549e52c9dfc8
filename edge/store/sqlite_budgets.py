"""The SQLite store's budgets (`edge.store.budgets`): a row per bucket, spent inside the writer's
transaction, like `sqlite_schema`."""

from __future__ import annotations

import sqlite3
from typing import Final

from edge.store.budgets import Bucket, spend

TABLE: Final = """
CREATE TABLE IF NOT EXISTS budgets (
    name TEXT PRIMARY KEY,
    tokens REAL NOT NULL,              -- negative: in debt
    updated_at REAL NOT NULL
);
"""


def take(connection: sqlite3.Connection, name: str, rate: float, count: float, now: float) -> float:
    row = connection.execute(
        "SELECT tokens, updated_at FROM budgets WHERE name = ?", (name,)
    ).fetchone()
    bucket, wait = spend(None if row is None else Bucket(*row), now, rate, count)
    connection.execute(
        "INSERT INTO budgets (name, tokens, updated_at) VALUES (?, ?, ?)"
        " ON CONFLICT (name) DO UPDATE SET tokens = excluded.tokens,"
        " updated_at = excluded.updated_at",
        (name, *bucket),
    )
    return wait
