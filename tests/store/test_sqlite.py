"""The embedded store: an outbox that keeps what it acknowledged, with group commit."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from edge.rokt import capi
from edge.settings import load_settings
from edge.store import open_store
from edge.store.errors import StoreUnavailable
from edge.store.sqlite import SQLiteStore, sqlite_path
from edge.store.sqlite_writer import pragma
from edge.store.values import (
    EXPIRED,
    REJECTED,
    DeadLetter,
    Identity,
    IdentityUpdate,
    Intake,
    Paused,
)
from tests.outbound import conversion, conversions, skipped
from tests.store.conftest import Clock

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


async def test_put_items_come_back_in_order_exactly_as_encoded(store: SQLiteStore) -> None:
    items = conversions(3)
    result = await store.put(Intake(outbound=items))
    assert (result.stored, result.duplicates) == (3, 0)

    claims = await store.claim(10, lease_seconds=60)

    assert [claim.body for claim in claims] == [capi.encode(i.body).decode() for i in items]
    assert [claim.timestamp_ms for claim in claims] == [item.timestamp_ms for item in items]
    assert [attempts(store, claim.id) for claim in claims] == [0, 0, 0]


async def test_a_replayed_event_is_stored_once(store: SQLiteStore) -> None:
    await store.put(Intake(outbound=[conversion(1)]))
    again = await store.put(Intake(outbound=[conversion(1), conversion(2)]))

    assert (again.stored, again.duplicates) == (1, 1)
    twice = await store.put(Intake(outbound=[conversion(3), conversion(3)]))  # in one request
    assert (twice.stored, twice.duplicates) == (1, 1)
    assert len(await store.claim(10, 60)) == 3


async def test_skipped_events_are_recorded_beside_the_items(store: SQLiteStore) -> None:
    intake = Intake(outbound=[conversion(1)], skipped=[skipped(1), skipped(2, "consent")])

    await store.put(intake)
    await store.put(intake)  # the same request again: nothing counted twice

    stats = await store.stats()
    assert stats.pending == 1
    assert stats.skipped == {"not triggered": 1, "consent": 1}


async def test_an_intake_is_all_or_nothing(store: SQLiteStore) -> None:
    broken_skip = replace(skipped(1), reason=None)  # type: ignore[arg-type]

    with pytest.raises(StoreUnavailable):
        await store.put(Intake(outbound=[conversion(1)], skipped=[broken_skip]))

    assert rows_on_disk(store.path) == 0


async def test_concurrent_puts_share_commits_and_each_returns_after_its_commit(
    store: SQLiteStore,
) -> None:
    before = store.transactions
    seen_on_disk: list[bool] = []

    async def producer(n: int) -> None:
        item = conversion(n)
        await store.put(Intake(outbound=[item]))
        with sqlite3.connect(store.path) as connection:
            row = connection.execute("SELECT 1 FROM outbox WHERE key = ?", (item.key,)).fetchone()
        seen_on_disk.append(row is not None)

    await asyncio.gather(*(producer(n) for n in range(200)))

    assert seen_on_disk == [True] * 200
    assert rows_on_disk(store.path) == 200
    assert store.transactions - before < 100  # coalesced (typically a handful)


async def test_without_group_commit_every_put_is_its_own_transaction(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "single.db", group_commit=False)
    try:
        before = store.transactions
        await asyncio.gather(*(store.put(Intake(outbound=[conversion(n)])) for n in range(20)))
        assert store.transactions - before == 20
    finally:
        store.close()


async def test_a_failing_put_does_not_fail_the_others_in_its_group(store: SQLiteStore) -> None:
    broken = replace(conversion(99), mapping=None)  # type: ignore[arg-type]

    results = await asyncio.gather(
        *(store.put(Intake(outbound=[item])) for item in [conversion(1), broken, conversion(2)]),
        return_exceptions=True,
    )

    assert isinstance(results[1], StoreUnavailable)
    assert [type(r).__name__ for r in (results[0], results[2])] == ["PutResult", "PutResult"]
    assert rows_on_disk(store.path) == 2


async def test_a_claim_is_leased_and_an_expired_lease_is_swept_back(
    store: SQLiteStore, clock: Clock
) -> None:
    await store.put(Intake(outbound=conversions(3)))
    first = await store.claim(2, lease_seconds=30)

    assert len(await store.claim(10, 30)) == 1  # the third only: the others are leased
    clock.now += 29
    assert await store.sweep() == 0
    clock.now += 2
    assert await store.sweep() == 3

    again = await store.claim(10, 30)
    assert [c.id for c in again] == [c.id for c in first] + [again[-1].id]


async def test_retry_waits_until_its_time_and_counts_the_attempt(
    store: SQLiteStore, clock: Clock
) -> None:
    await store.put(Intake(outbound=[conversion(1)]))
    [claim] = await store.claim(1, 30)

    await store.retry([claim.id], at=clock.now + 10, error="503 upstream unavailable")

    assert await store.claim(1, 30) == []
    assert (await store.stats()).retrying == 1
    clock.now += 10
    [again] = await store.claim(1, 30)
    assert attempts(store, again.id) == 1


async def test_release_returns_items_without_counting_an_attempt(store: SQLiteStore) -> None:
    await store.put(Intake(outbound=[conversion(1)]))
    [claim] = await store.claim(1, 30)

    await store.release([claim.id])

    [again] = await store.claim(1, 30)
    assert (again.id, attempts(store, again.id)) == (claim.id, 0)


async def test_due_now_makes_items_waiting_for_a_retry_due_at_once(
    store: SQLiteStore, clock: Clock
) -> None:
    # Given two items retried in an hour (upstream trouble), and one claimed
    await store.put(Intake(outbound=conversions(3)))
    first, second, _ = await store.claim(3, lease_seconds=60)
    await store.retry([first.id, second.id], clock.now + 3600, "503: unavailable")
    assert await store.claim(10, lease_seconds=60) == []

    # When delivery resumes
    waiting = await store.due_now()

    # Then the two waiting are due now (the claimed one stays claimed)
    assert waiting == 2
    assert [claim.id for claim in await store.claim(10, lease_seconds=60)] == [first.id, second.id]
    assert (await store.stats()).in_flight == 3


async def test_claims_and_acks_skip_the_items_between_them(
    store: SQLiteStore, clock: Clock
) -> None:
    """Claims lease id ranges and acks settle id ranges: items in a gap stay as they were."""
    await store.put(Intake(outbound=conversions(6)))
    first = await store.claim(6, 30)
    ids = [claim.id for claim in first]
    await store.retry([ids[1], ids[3]], at=clock.now + 60, error="503")  # not due for a minute
    await store.release([ids[0], ids[2], ids[4], ids[5]])

    again = await store.claim(10, 30)
    assert [claim.id for claim in again] == [ids[0], ids[2], ids[4], ids[5]]
    assert [claim.body for claim in again] == [first[i].body for i in (0, 2, 4, 5)]
    await store.ack([ids[5], ids[0], ids[2]])  # any order

    stats = await store.stats()
    assert (stats.delivered, stats.in_flight, stats.pending, stats.retrying) == (3, 1, 2, 2)
    clock.now += 60
    assert [claim.id for claim in await store.claim(10, 30)] == [ids[1], ids[3]]


async def test_dead_letters_keep_their_reason_and_replay_puts_them_back(
    store: SQLiteStore, clock: Clock
) -> None:
    await store.put(Intake(outbound=conversions(3)))
    a, b, c = await store.claim(3, 30)
    await store.dead([DeadLetter(a.id, REJECTED, "Error converting value &quot;x&quot;")])
    clock.now += 3600
    await store.dead([DeadLetter(b.id, REJECTED, "bad"), DeadLetter(c.id, EXPIRED, "31 days")])

    stats = await store.stats()
    assert stats.dead == {REJECTED: 2, EXPIRED: 1}
    assert (REJECTED, "bad", 1) in stats.dead_messages

    assert await store.replay(since=clock.now - 60) == 2  # the last two only
    assert [claim.id for claim in await store.claim(10, 30)] == [b.id, c.id]
    assert store.replay_sync() == 1
    assert (await store.stats()).dead == {}


async def test_an_ack_wins_over_a_dead_letter_and_a_delivered_item_stays_delivered(
    store: SQLiteStore,
) -> None:
    """Another sender dead-lettered an item whose lease had run out; this one's request had
    reached the upstream all the same."""
    await store.put(Intake(outbound=conversions(2)))
    a, b = await store.claim(2, 30)
    await store.dead([DeadLetter(a.id, REJECTED, "bad")])

    await store.ack([a.id, b.id])
    await store.dead([DeadLetter(b.id, EXPIRED, "too late")])
    await store.retry([b.id], at=0, error="503")

    stats = await store.stats()
    assert (stats.delivered, stats.dead, stats.pending, stats.in_flight) == (2, {}, 0, 0)
    assert await store.claim(10, 30) == []


async def test_delivery_is_recorded_and_old_deliveries_are_pruned(
    store: SQLiteStore, clock: Clock
) -> None:
    await store.put(Intake(outbound=conversions(2), skipped=[skipped(1)]))
    claims = await store.claim(2, 30)
    await store.ack([claims[0].id])
    await store.ack([claims[1].id], dry_run=True)

    stats = await store.stats()
    assert (stats.delivered, stats.delivered_dry_run) == (2, 1)
    assert (stats.pending, stats.in_flight) == (0, 0)

    clock.now += 10
    assert await store.prune(before=clock.now) == 3
    stats = await store.stats()
    assert (stats.delivered, stats.delivered_dry_run) == (0, 0)


async def test_pruning_keeps_what_is_still_queued_or_dead(store: SQLiteStore, clock: Clock) -> None:
    await store.put(Intake(outbound=conversions(3)))
    first, second, third = await store.claim(3, 30)
    await store.ack([first.id])
    await store.dead([DeadLetter(second.id, REJECTED, "bad")])
    await store.release([third.id])

    clock.now += 10
    assert await store.prune(before=clock.now) == 1  # the delivered one only

    stats = await store.stats()
    assert (stats.delivered, stats.pending, stats.dead) == (0, 1, {REJECTED: 1})
    assert (await store.put(Intake(outbound=conversions(3)))).stored == 1  # its key forgotten


async def test_dry_run_keeps_the_last_bodies(store: SQLiteStore) -> None:
    for n in range(5):
        await store.record_dry_run("/events", json.dumps({"n": n}), keep=3)

    bodies = await store.dry_run_bodies(10)
    assert [json.loads(body.body)["n"] for body in bodies] == [4, 3, 2]
    assert (await store.stats()).dry_run_bodies == 3


async def test_upstream_errors_are_kept_newest_first(store: SQLiteStore) -> None:
    for n in range(25):
        await store.record_upstream_error(500 + n % 4, f"error {n}")
    await store.record_upstream_error(None, "timed out")

    errors = (await store.stats()).upstream_errors
    assert len(errors) == 20
    assert (errors[0].status, errors[0].message) == (None, "timed out")


async def test_paused_state_is_visible_to_another_process(store: SQLiteStore) -> None:
    await store.set_paused(Paused(since=1.0, reason="403 credentials invalid"))
    other = SQLiteStore(store.path)
    try:
        assert other.stats_sync().paused == Paused(1.0, "403 credentials invalid")
        await store.set_paused(None)
        assert other.stats_sync().paused is None
    finally:
        other.close()


async def test_what_was_put_survives_closing_and_reopening(tmp_path: Path) -> None:
    path = tmp_path / "edge.db"
    first = SQLiteStore(path)
    first.put_sync(Intake(outbound=conversions(5)))
    first.close()

    second = SQLiteStore(path)
    try:
        stats = second.stats_sync()
        assert stats.pending == 5
        assert stats.oldest_pending is not None
    finally:
        second.close()


async def test_a_closed_store_refuses_work(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "edge.db")
    store.close()
    with pytest.raises(StoreUnavailable, match="closed"):
        await store.put(Intake(outbound=[conversion(1)]))


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
