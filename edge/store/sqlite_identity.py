"""The SQLite store's identity table: which click id, IP, user agent and hashed email and mobile
a visitor carries.

A visitor is known by keys: "a:<anonymousId>" and "u:<userId>". Each event updates the rows of
its keys; an identify carries both, so either id later finds the same click id. A click keeps the
time it was first seen, so the attribution window runs from the click, not from the visitor's
latest page. Emails and mobiles are kept as SHA-256 only. Like `sqlite_schema`, these functions
run inside the writer's transaction and never commit.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Sequence
from typing import Final

from edge.store.values import Identity, IdentityUpdate

TABLE: Final = """
CREATE TABLE IF NOT EXISTS identities (
    key TEXT PRIMARY KEY,       -- a:<anonymousId> or u:<userId>
    click_id TEXT,
    click_seen_at REAL,         -- when this click id was first seen (the attribution window)
    ip TEXT,
    user_agent TEXT,
    seen_at REAL NOT NULL,      -- the visitor's latest event
    email_sha256 TEXT,          -- SHA-256 of the normalized email (never the email)
    mobile_sha256 TEXT          -- SHA-256 of the mobile's national digits
);
"""
KEYS_PER_QUERY: Final = 500  # parameters per statement well below SQLite's limit
# Schema 4's table had no hashed identifiers (`sqlite_schema.create` adds what is missing).
ADDED_COLUMNS: Final = ("email_sha256 TEXT", "mobile_sha256 TEXT")

# The same click again keeps its first sighting; a different click replaces the stored one when
# it was first seen at the same time or later, never when it is older.
_REPLACES: Final = """
    excluded.click_id IS NOT NULL AND excluded.click_id IS NOT identities.click_id AND (
        identities.click_seen_at IS NULL OR excluded.click_seen_at >= identities.click_seen_at)"""
UPSERT: Final = f"""
INSERT INTO identities (key, click_id, click_seen_at, ip, user_agent, seen_at, email_sha256,
    mobile_sha256)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
ON CONFLICT (key) DO UPDATE SET
    click_id = CASE WHEN {_REPLACES} THEN excluded.click_id ELSE identities.click_id END,
    click_seen_at = CASE WHEN {_REPLACES} THEN excluded.click_seen_at
        WHEN excluded.click_id IS identities.click_id
        THEN MIN(COALESCE(excluded.click_seen_at, identities.click_seen_at),
            COALESCE(identities.click_seen_at, excluded.click_seen_at))
        ELSE identities.click_seen_at END,
    ip = COALESCE(excluded.ip, identities.ip),
    user_agent = COALESCE(excluded.user_agent, identities.user_agent),
    seen_at = MAX(excluded.seen_at, identities.seen_at),
    email_sha256 = COALESCE(excluded.email_sha256, identities.email_sha256),
    mobile_sha256 = COALESCE(excluded.mobile_sha256, identities.mobile_sha256)
"""


def update(connection: sqlite3.Connection, updates: Sequence[IdentityUpdate], now: float) -> None:
    connection.executemany(
        UPSERT,
        [
            (key, item.click_id, item.click_seen_at if item.click_id else None, item.ip,
             item.user_agent, now, item.email_sha256, item.mobile_sha256)
            for item in updates
            for key in item.keys
        ],
    )  # fmt: skip


def lookup(
    connection: sqlite3.Connection, keys: Sequence[str], since: float
) -> dict[str, Identity]:
    """Each key's record, seen (or its click first seen) at or after `since`; keys unknown (or
    not seen since) are left out."""
    found: dict[str, Identity] = {}
    for start in range(0, len(keys), KEYS_PER_QUERY):
        chunk = keys[start : start + KEYS_PER_QUERY]
        marks = ",".join("?" * len(chunk))
        rows = connection.execute(
            f"SELECT key, click_id, click_seen_at, ip, user_agent, seen_at, email_sha256,"
            f" mobile_sha256 FROM identities WHERE key IN ({marks})"
            f" AND (seen_at >= ? OR click_seen_at >= ?)",
            (*chunk, since, since),
        ).fetchall()
        found.update((row[0], Identity(*row[1:])) for row in rows)
    return found


def latest(connection: sqlite3.Connection, limit: int) -> list[tuple[str, Identity]]:
    """The `limit` records seen last, newest first, with their keys."""
    rows = connection.execute(
        "SELECT key, click_id, click_seen_at, ip, user_agent, seen_at, email_sha256,"
        " mobile_sha256 FROM identities ORDER BY seen_at DESC LIMIT ?",
        (limit,),
    )
    return [(row[0], Identity(*row[1:])) for row in rows]


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
