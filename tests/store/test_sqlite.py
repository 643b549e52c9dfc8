"""The embedded store: an outbox that keeps what it acknowledged, with group commit."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from edge.settings import load_settings
from edge.store import open_store
from edge.store.sqlite import SQLiteStore, sqlite_path
from edge.store.sqlite_writer import pragma
from edge.store.values import (
    REJECTED,
    Identity,
    IdentityUpdate,
    Intake,
)
from tests.outbound import conversion

pytestmark = pytest.mark.anyio


def rows_on_disk(path: Path) -> int:
    """What another process would see: a separate connection to the file."""
    with sqlite3.connect(path) as connection:
        count: int = connection.execute("SELECT count(*) FROM outbox").fetchone()[0]
    return count


def attempts(store: SQLiteStore, item_id: int) -> int:
    """The failed attempts the queue counts for an item, read from the file."""
    with sqlite3.connect(store.path) as connection:
        row = connection.execute("SELECT attempts FROM queue WHERE id = ?", (item_id,)).fetchone()
    connection.close()
    count: int = row[0]
    return count


async def test_without_group_commit_every_put_is_its_own_transaction(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "single.db", group_commit=False)
    try:
        before = store.transactions
        await asyncio.gather(*(store.put(Intake(outbound=[conversion(n)])) for n in range(20)))
        assert store.transactions - before == 20
    finally:
        store.close()


def test_the_database_url_names_a_relative_or_absolute_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert sqlite_path("sqlite:///rokt-edge.db") == Path("rokt-edge.db")
    assert sqlite_path("sqlite:////var/lib/edge.db") == Path("/var/lib/edge.db")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    settings = load_settings({"ROKT_EDGE_DATABASE_URL": "sqlite:///data/edge.db"})
    assert settings.database_url == f"sqlite:///{tmp_path}/data/edge.db"  # made absolute, once
    monkeypatch.chdir("/")
    store = open_store(settings)
    store.close()
    assert (tmp_path / "data" / "edge.db").exists()


async def test_a_schema_1_database_keeps_its_queue(tmp_path: Path) -> None:
    """Schema 1 kept bodies in the outbox rows; opening it moves them to their own table."""
    path = tmp_path / "old.db"
    item = conversion(1)
    with sqlite3.connect(path) as old:
        old.executescript(
            "CREATE TABLE outbox (id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE,"
            " mapping TEXT NOT NULL, message_id TEXT NOT NULL, timestamp_ms INTEGER NOT NULL,"
            " body TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'pending', created_at REAL NOT NULL,"
            " available_at REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, lease_until REAL,"
            " last_error TEXT, dead_reason TEXT, dead_at REAL, delivered_at REAL,"
            " dry_run INTEGER NOT NULL DEFAULT 0);"
            "CREATE INDEX outbox_by_state ON outbox (state); PRAGMA user_version = 1;"
        )
        old.execute(
            "INSERT INTO outbox (key, mapping, message_id, timestamp_ms, body, created_at,"
            " available_at) VALUES (?, ?, ?, ?, ?, 0, 0)",
            (item.key, item.mapping, item.message_id, item.timestamp_ms, "{}"),
        )
    old.close()

    store = SQLiteStore(path)
    try:
        [claim] = await store.claim(10, 60)
        assert (claim.timestamp_ms, claim.body) == (item.timestamp_ms, "{}")
        assert (await store.put(Intake(outbound=[conversion(2)]))).stored == 1
    finally:
        store.close()


async def test_only_lease_transitions_skip_the_fsync(store: SQLiteStore) -> None:
    """synchronous=NORMAL for a group of claims and acks alone; FULL as soon as it holds a put."""
    setting = (pragma, ("synchronous",))

    assert await store._run(pragma, "synchronous", durable=False) == 1  # NORMAL
    assert await store._run(pragma, "synchronous") == 2  # FULL
    relaxed = store._submit(setting, durable=False)
    durable = store._submit(setting)
    assert await durable == 2  # alone, or in the same group as the relaxed job: FULL either way
    assert await relaxed in (1, 2)


async def test_a_schema_2_database_keeps_every_item_in_its_state(tmp_path: Path) -> None:
    """Schema 2 kept each item's state in its outbox row; opening it moves each to its table."""
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as old:
        old.executescript(
            "CREATE TABLE outbox (id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE,"
            " mapping TEXT NOT NULL, message_id TEXT NOT NULL, timestamp_ms INTEGER NOT NULL,"
            " state TEXT NOT NULL DEFAULT 'pending', created_at REAL NOT NULL,"
            " available_at REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, lease_until REAL,"
            " last_error TEXT, dead_reason TEXT, dead_at REAL, delivered_at REAL,"
            " dry_run INTEGER NOT NULL DEFAULT 0);"
            "CREATE INDEX outbox_by_state ON outbox (state);"
            "CREATE TABLE bodies (id INTEGER PRIMARY KEY, body TEXT NOT NULL);"
            "PRAGMA user_version = 2;"
        )
        times: dict[int, int] = {}
        for n, (state, extra) in enumerate(
            [
                ("pending", "attempts = 2"),
                ("claimed", "lease_until = 1e12"),
                ("delivered", "delivered_at = 5, dry_run = 1"),
                ("dead", "dead_reason = 'rejected', last_error = 'bad', dead_at = 7"),
            ],
            start=1,
        ):
            item = conversion(n)
            times[n] = item.timestamp_ms
            old.execute(
                "INSERT INTO outbox (id, key, mapping, message_id, timestamp_ms, created_at,"
                " available_at) VALUES (?, ?, ?, ?, ?, 0, 0)",
                (n, item.key, item.mapping, item.message_id, item.timestamp_ms),
            )
            old.execute(f"UPDATE outbox SET state = ?, {extra} WHERE id = ?", (state, n))
            if state != "delivered":
                old.execute("INSERT INTO bodies (id, body) VALUES (?, ?)", (n, f"[{n}]"))
    old.close()

    store = SQLiteStore(path)
    try:
        stats = await store.stats()
        assert (stats.pending, stats.retrying, stats.in_flight) == (1, 1, 1)
        assert (stats.delivered, stats.delivered_dry_run) == (1, 1)
        assert stats.dead_messages == [(REJECTED, "bad", 1)]
        [claim] = await store.claim(10, 60)
        assert (claim.id, attempts(store, claim.id), claim.body) == (1, 2, "[1]")
        assert claim.timestamp_ms == times[1]
        assert await store.replay() == 1
        assert [claim.body for claim in await store.claim(10, 60)] == ["[4]"]
        assert (await store.put(Intake(outbound=[conversion(3)]))).duplicates == 1
    finally:
        store.close()


async def test_a_schema_3_database_keeps_every_item_and_its_dry_runs(tmp_path: Path) -> None:
    """Schema 3 kept a row per delivered item; opening it keeps only which were dry runs, and
    copies each queued item's event time beside it."""
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as old:
        old.executescript(
            "CREATE TABLE outbox (id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE,"
            " mapping TEXT NOT NULL, message_id TEXT NOT NULL, timestamp_ms INTEGER NOT NULL,"
            " created_at REAL NOT NULL);"
            "CREATE TABLE queue (id INTEGER PRIMARY KEY, available_at REAL NOT NULL,"
            " attempts INTEGER NOT NULL DEFAULT 0, lease_until REAL, last_error TEXT);"
            "CREATE TABLE delivered (id INTEGER PRIMARY KEY, at REAL NOT NULL,"
            " dry_run INTEGER NOT NULL);"
            "CREATE TABLE dead (id INTEGER PRIMARY KEY, reason TEXT NOT NULL,"
            " message TEXT NOT NULL, at REAL NOT NULL);"
            "CREATE TABLE bodies (id INTEGER PRIMARY KEY, body TEXT NOT NULL);"
            "PRAGMA user_version = 3;"
        )
        items = {n: conversion(n) for n in range(1, 6)}
        for n, item in items.items():
            old.execute(
                "INSERT INTO outbox VALUES (?, ?, ?, ?, ?, 0)",
                (n, item.key, item.mapping, item.message_id, item.timestamp_ms),
            )
        old.executescript(
            "INSERT INTO queue (id, available_at, attempts) VALUES (1, 0, 2);"
            "INSERT INTO queue (id, available_at, lease_until) VALUES (2, 0, 1e12);"
            "INSERT INTO delivered VALUES (3, 5, 1), (4, 5, 0);"
            "INSERT INTO dead VALUES (5, 'rejected', 'bad', 7);"
            "INSERT INTO bodies VALUES (1, '[1]'), (2, '[2]'), (5, '[5]');"
        )
    old.close()

    store = SQLiteStore(path)
    try:
        stats = await store.stats()
        assert (stats.pending, stats.retrying, stats.in_flight) == (1, 1, 1)
        assert (stats.delivered, stats.delivered_dry_run) == (2, 1)
        assert stats.dead_messages == [(REJECTED, "bad", 1)]
        [claim] = await store.claim(10, 60)
        assert (claim.id, claim.timestamp_ms, claim.body) == (1, items[1].timestamp_ms, "[1]")
        assert await store.replay() == 1
        [again] = await store.claim(10, 60)
        assert (again.id, again.timestamp_ms, again.body) == (5, items[5].timestamp_ms, "[5]")
        assert (await store.put(Intake(outbound=[items[3], items[4]]))).duplicates == 2
    finally:
        store.close()


async def test_a_schema_4_database_keeps_its_visitors_and_learns_hashed_identifiers(
    tmp_path: Path,
) -> None:
    """Schema 4's identities had no hashed email or mobile: opening it adds the columns and
    keeps every visitor's click."""
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as old:
        old.executescript(
            "CREATE TABLE identities (key TEXT PRIMARY KEY, click_id TEXT, click_seen_at REAL,"
            " ip TEXT, user_agent TEXT, seen_at REAL NOT NULL);"
            "INSERT INTO identities VALUES ('a:A', 'CLICK', 100.0, '1.1.1.1', 'UA', 200.0);"
            "PRAGMA user_version = 4;"
        )
    old.close()

    store = SQLiteStore(path)
    try:
        assert await store.identity(["a:A"], since=0) == Identity(
            "CLICK", 100.0, "1.1.1.1", "UA", 200.0
        )
        email = "e" * 64
        update = IdentityUpdate(("a:A",), None, None, None, None, email_sha256=email)
        await store.put(Intake(identities=[update]))
        found = await store.identity(["a:A"], since=0)
        assert found is not None
        assert (found.click_id, found.email_sha256) == ("CLICK", email)
    finally:
        store.close()
