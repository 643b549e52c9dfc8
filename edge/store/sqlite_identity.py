"""The SQLite store's identity table: which click id, IP and user agent a visitor carries.

A visitor is known by keys: "a:<anonymousId>" and "u:<userId>". Each browser event updates the
rows of its keys; an identify carries both, so either id later finds the same click id. Like
`sqlite_schema`, these functions run inside the writer's transaction and never commit.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Sequence
from typing import Final

from edge.store.base import Identity, IdentityUpdate

TABLE: Final = """
CREATE TABLE IF NOT EXISTS identities (
    key TEXT PRIMARY KEY,       -- a:<anonymousId> or u:<userId>
    click_id TEXT,
    click_seen_at REAL,         -- when this click id was first seen (the attribution window)
    ip TEXT,
    user_agent TEXT,
    seen_at REAL NOT NULL       -- the visitor's latest browser event
);
"""

# A newer (or equally new) click replaces the stored one; an older one never does.
UPSERT: Final = """
INSERT INTO identities (key, click_id, click_seen_at, ip, user_agent, seen_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6)
ON CONFLICT (key) DO UPDATE SET
    click_id = CASE WHEN excluded.click_id IS NOT NULL AND (identities.click_seen_at IS NULL
        OR excluded.click_seen_at >= identities.click_seen_at)
        THEN excluded.click_id ELSE identities.click_id END,
    click_seen_at = CASE WHEN excluded.click_id IS NOT NULL AND (identities.click_seen_at IS NULL
        OR excluded.click_seen_at >= identities.click_seen_at)
        THEN excluded.click_seen_at ELSE identities.click_seen_at END,
    ip = COALESCE(excluded.ip, identities.ip),
    user_agent = COALESCE(excluded.user_agent, identities.user_agent),
    seen_at = MAX(excluded.seen_at, identities.seen_at)
"""


def update(connection: sqlite3.Connection, updates: Sequence[IdentityUpdate], now: float) -> None:
    connection.executemany(
        UPSERT,
        [
            (key, item.click_id, item.click_seen_at if item.click_id else None, item.ip,
             item.user_agent, now)
            for item in updates
            for key in item.keys
        ],
    )  # fmt: skip


def lookup(connection: sqlite3.Connection, keys: Sequence[str], since: float) -> Identity | None:
    marks = ",".join("?" * len(keys))
    rows = connection.execute(
        f"SELECT click_id, click_seen_at, ip, user_agent, seen_at FROM identities"
        f" WHERE key IN ({marks}) AND (seen_at >= ? OR click_seen_at >= ?)",
        (*keys, since, since),
    ).fetchall()
    if not rows:
        return None
    clicks = [row for row in rows if row[0] is not None and row[1] >= since]
    click = max(clicks, key=lambda row: row[1]) if clicks else None
    latest = max(rows, key=lambda row: row[4])
    return Identity(
        click_id=click[0] if click else None,
        click_seen_at=click[1] if click else None,
        ip=latest[2],
        user_agent=latest[3],
        seen_at=latest[4],
    )


def prune(connection: sqlite3.Connection, before: float) -> int:
    return connection.execute(
        "DELETE FROM identities WHERE seen_at < ?1 AND (click_seen_at IS NULL"
        " OR click_seen_at < ?1)",
        (before,),
    ).rowcount


def secret(connection: sqlite3.Connection, name: str) -> str:
    connection.execute(
        "INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
        (f"secret:{name}", secrets.token_urlsafe(32)),
    )
    row = connection.execute(
        "SELECT value FROM meta WHERE name = ?", (f"secret:{name}",)
    ).fetchone()
    return str(row[0])


def touch(connection: sqlite3.Connection, now: float) -> None:
    connection.execute(
        "INSERT INTO meta (name, value) VALUES ('writable-check', ?1)"
        " ON CONFLICT (name) DO UPDATE SET value = ?1",
        (str(now),),
    )
