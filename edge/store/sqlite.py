"""The embedded store: one SQLite file in WAL mode, written by one thread with group commit.

Every operation is a job run by the writer thread. The thread takes whatever jobs are waiting
(up to `max_group`), runs each inside a savepoint of one transaction, commits once, and only then
resolves their futures. While one commit waits for the disk, the next puts queue up and share
the next commit: durability costs one fsync per group, not one per put, and a job that fails
rolls back its savepoint without failing the others.

`synchronous=FULL`: in WAL mode NORMAL already survives a crash of the process, but a power
loss or kernel crash can take back the last commits, and "nothing acknowledged is ever lost"
covers the machine too. Group commit is what makes FULL affordable (see `bench/outbox.py`).

Only the sender's lease transitions (claim, ack, retry, release, sweep) are committed with
`synchronous=NORMAL` when a group holds nothing else: their commits skip the fsync. This is safe
because, in WAL mode, a commit is written to the log before it returns (a crash of the process
loses nothing, whatever the setting), and the log only grows in order: every FULL commit and
every checkpoint syncs the whole log first, so what survives a power loss is always a prefix of
the commits. A relaxed commit can therefore only be lost together with everything after it, and
never takes a put (always FULL, and its whole group with it) along. Losing one is harmless:
    claim    the items are pending again, as if never claimed (whatever was sent of them
             before the power went is sent again: a duplicate, as for a lost ack)
    ack      the items are claimed (or pending) again and are sent again after their lease:
             a duplicate with the same source_message_id, which the upstream de-duplicates
    retry,   the items stay claimed until their lease runs out and a sweep returns them:
    release  a later attempt, never a lost item
    sweep    made again by the next sweep
Dead letters, replays, pauses and everything intake writes stay FULL.

Raises the store errors drawn in `edge.store.base` (StoreUnavailable for any failed write).
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path
from typing import Any, Final, TypeVar

from edge.rokt.capi import encode
from edge.store import sqlite_arrivals, sqlite_dedup, sqlite_identity
from edge.store import sqlite_schema as schema
from edge.store.base import (
    DUPLICATE,
    UPSTREAM_ERRORS_KEPT,
    Arrival,
    Claim,
    DeadLetter,
    DryRunBody,
    Identity,
    Intake,
    ItemId,
    Paused,
    PutResult,
    Stats,
    Store,
    StoredArrival,
    StoreUnavailable,
)
from edge.store.coalesce import Coalescer

T = TypeVar("T")
Job = Callable[[sqlite3.Connection], Any]
BUSY_TIMEOUT_MS: Final = 5000  # another process (the CLI, a second sender) holding the lock
MAX_GROUP: Final = 1024
DEDUP_WINDOW_SECONDS: Final = 86400.0


class SQLiteStore(Store):
    def __init__(
        self,
        path: str | Path,
        *,
        group_commit: bool = True,
        clock: Callable[[], float] = time.time,
        dedup_window: float = DEDUP_WINDOW_SECONDS,
    ) -> None:
        self.path = Path(path)
        self.clock = clock
        self.dedup_window = dedup_window  # seconds between two copies of one conversion
        self.transactions = 0  # commits made, for tests and benchmarks
        self._max_group = MAX_GROUP if group_commit else 1
        self._synced = True  # the connection's synchronous setting is FULL (as _connect leaves it)
        # (job, its future, whether its commit must be synced to disk: see the docstring)
        self._jobs: queue.SimpleQueue[tuple[Job, Future[Any], bool] | None] = queue.SimpleQueue()
        self._closed = False
        self._read_connection: sqlite3.Connection | None = None
        self._close_lock = threading.Lock()
        self._arrivals: Coalescer[Arrival] = Coalescer(self._submit, sqlite_arrivals.insert)
        ready: Future[None] = Future()
        self._thread = threading.Thread(
            target=self._write_loop, args=(ready,), name="rokt-edge-store", daemon=True
        )
        self._thread.start()
        ready.result()  # raises here if the file cannot be opened

    # -- the writer thread ------------------------------------------------------------------

    def _write_loop(self, ready: Future[None]) -> None:
        try:
            connection = _connect(self.path)
        except (sqlite3.Error, OSError) as error:
            ready.set_exception(StoreUnavailable(f"cannot open {self.path}: {error}"))
            return
        ready.set_result(None)
        try:
            stopping = False
            while not stopping:
                first = self._jobs.get()
                if first is None:
                    break
                group = [first]
                while len(group) < self._max_group:
                    try:
                        job = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                    if job is None:
                        stopping = True
                        break
                    group.append(job)
                self._commit(connection, group)
        finally:
            connection.close()

    def _commit(
        self, connection: sqlite3.Connection, group: list[tuple[Job, Future[Any], bool]]
    ) -> None:
        live = [(job, future) for job, future, _ in group if future.set_running_or_notify_cancel()]
        if not live:
            return
        outcomes: list[tuple[bool, Any]] = []
        durable = any(sync for _, future, sync in group if future.running())
        try:
            if durable != self._synced:
                connection.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
                self._synced = durable
            connection.execute("BEGIN IMMEDIATE")
            if len(live) == 1:  # alone, a job needs no savepoint: a failure rolls back all
                job, _ = live[0]
                try:
                    outcomes.append((True, job(connection)))
                except Exception as error:
                    connection.rollback()
                    outcomes.append((False, error))
            for job, _ in live if len(live) > 1 else ():
                connection.execute("SAVEPOINT job")
                try:
                    outcomes.append((True, job(connection)))
                except Exception as error:  # one bad job must not fail the group
                    connection.execute("ROLLBACK TO job")
                    outcomes.append((False, error))
                connection.execute("RELEASE job")
            if connection.in_transaction:
                connection.execute("COMMIT")
        except sqlite3.Error as error:
            if connection.in_transaction:
                connection.rollback()
            failure = StoreUnavailable(f"{self.path}: {error}")
            for _, future in live:
                future.set_exception(failure)
            return
        self.transactions += 1
        for (_, future), (ok, value) in zip(live, outcomes, strict=True):
            if ok:
                future.set_result(value)
            elif isinstance(value, sqlite3.Error):
                future.set_exception(StoreUnavailable(f"{self.path}: {value}"))
            else:
                future.set_exception(value)

    def _submit(self, job: Callable[[sqlite3.Connection], T], durable: bool = True) -> Future[T]:
        future: Future[T] = Future()
        with self._close_lock:
            if self._closed:
                raise StoreUnavailable(f"{self.path}: the store is closed")
            self._jobs.put((job, future, durable))
        return future

    async def _run(self, job: Callable[[sqlite3.Connection], T], durable: bool = True) -> T:
        return await asyncio.wrap_future(self._submit(job, durable))

    def close(self) -> None:
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
            self._jobs.put(None)
        self._thread.join()
        if self._read_connection is not None:
            self._read_connection.close()

    # -- the interface ----------------------------------------------------------------------

    async def put(self, intake: Intake) -> PutResult:
        return await self._run(self._put_job(intake))

    def put_sync(self, intake: Intake) -> PutResult:
        return self._submit(self._put_job(intake)).result()

    def _put_job(self, intake: Intake) -> Callable[[sqlite3.Connection], PutResult]:
        # Encoding happens in the caller's thread, so the writer thread only writes.
        now = self.clock()
        rows = [
            (item.key, item.mapping, item.message_id, item.timestamp_ms, _text(item.body), now)
            for item in intake.outbound
        ]
        skipped = [
            (f"{item.mapping or ''}\n{item.message_id}", item.message_id, item.mapping, item.reason)
            for item in intake.skipped
        ]
        identities = list(intake.identities)
        checks = [(item.key, item.dedup_key, item.timestamp_ms) for item in intake.outbound]
        window_ms = round(self.dedup_window * 1000)

        def put(connection: sqlite3.Connection) -> PutResult:
            kept, dropped = rows, skipped
            if any(check[1] is not None for check in checks):
                verdicts = sqlite_dedup.admit(connection, checks, window_ms)
                kept = [row for row, new in zip(rows, verdicts, strict=True) if new]
                dropped = skipped + [
                    (row[0], row[2], row[1], DUPLICATE)
                    for row, new in zip(rows, verdicts, strict=True)
                    if not new
                ]
            result = schema.put(connection, kept, dropped, now)
            if identities:
                sqlite_identity.update(connection, identities, now)
            return PutResult(result.stored, result.duplicates, len(rows) - len(kept))

        return put

    async def put_arrival(self, arrival: Arrival) -> None:
        await self._arrivals.put(arrival)

    async def arrivals(self, limit: int) -> list[StoredArrival]:
        """Read on the caller's thread, beside the writer (WAL), like `identity`."""
        try:
            return sqlite_arrivals.waiting(self._reader(), limit)
        except sqlite3.Error as error:
            raise StoreUnavailable(f"{self.path}: {error}") from None

    async def settle(self, ids: Sequence[int], intake: Intake) -> PutResult:
        # Not synced to disk (synchronous=NORMAL, as the lease transitions): a settle lost to a
        # power cut is lost with everything after it (see the docstring), and its arrivals,
        # committed with FULL before, are simply processed again (the outbox keeps one item
        # per key, and the identity updates are the same again).
        put = self._put_job(intake)
        ids = list(ids)

        def settle(connection: sqlite3.Connection) -> PutResult:
            result = put(connection)
            sqlite_arrivals.delete(connection, ids)
            return result

        return await self._run(settle, durable=False)

    async def claim(self, limit: int, lease_seconds: float) -> list[Claim]:
        now = self.clock()
        return await self._run(
            lambda c: schema.claim(c, limit, now, now + lease_seconds), durable=False
        )

    async def ack(self, ids: Sequence[ItemId], *, dry_run: bool = False) -> None:
        now = self.clock()
        await self._run(lambda c: schema.ack(c, ids, now, dry_run), durable=False)

    async def retry(self, ids: Sequence[ItemId], at: float, error: str) -> None:
        await self._run(lambda c: schema.retry(c, ids, at, error), durable=False)

    async def release(self, ids: Sequence[ItemId]) -> None:
        await self._run(lambda c: schema.release(c, ids), durable=False)

    async def dead(self, letters: Sequence[DeadLetter]) -> None:
        now = self.clock()
        await self._run(lambda c: schema.dead(c, letters, now))

    async def sweep(self) -> int:
        now = self.clock()
        return await self._run(lambda c: schema.sweep(c, now), durable=False)

    async def replay(self, since: float | None = None) -> int:
        now = self.clock()
        return await self._run(lambda c: schema.replay(c, since, now))

    def replay_sync(self, since: float | None = None) -> int:
        now = self.clock()
        return self._submit(lambda c: schema.replay(c, since, now)).result()

    async def prune(self, before: float) -> int:
        dedup_before = round((before - self.dedup_window) * 1000)
        return await self._run(
            lambda c: schema.prune(c, before) + sqlite_dedup.prune(c, dedup_before)
        )

    async def record_dry_run(self, path: str, body: str, keep: int) -> None:
        now = self.clock()
        await self._run(lambda c: schema.record_dry_run(c, now, path, body, keep))

    async def dry_run_bodies(self, limit: int) -> list[DryRunBody]:
        return await self._run(lambda c: schema.dry_run_bodies(c, limit))

    async def record_upstream_error(self, status: int | None, message: str) -> None:
        now = self.clock()
        await self._run(
            lambda c: schema.record_upstream_error(c, now, status, message, UPSTREAM_ERRORS_KEPT)
        )

    async def identity(self, keys: Sequence[str], since: float) -> Identity | None:
        """Read on the caller's thread, beside the writer: WAL lets readers see the last
        commit without waiting for the writer's queue, and a primary-key lookup takes
        microseconds, less than a hop to another thread would."""
        if not keys:
            return None
        try:
            return sqlite_identity.lookup(self._reader(), keys, since)
        except sqlite3.Error as error:
            raise StoreUnavailable(f"{self.path}: {error}") from None

    def _reader(self) -> sqlite3.Connection:
        if self._read_connection is None:
            if self._closed:
                raise StoreUnavailable(f"{self.path}: the store is closed")
            connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            connection.execute("PRAGMA query_only = ON")
            self._read_connection = connection
        return self._read_connection

    async def prune_identities(self, before: float) -> int:
        return await self._run(lambda c: sqlite_identity.prune(c, before))

    async def secret(self, name: str) -> str:
        return await self._run(lambda c: sqlite_identity.secret(c, name))

    async def check_writable(self) -> None:
        now = self.clock()
        await self._run(lambda c: sqlite_identity.touch(c, now))

    async def set_paused(self, paused: Paused | None) -> None:
        await self._run(lambda c: schema.set_paused(c, paused))

    async def stats(self) -> Stats:
        return await self._run(_stats)

    def stats_sync(self) -> Stats:
        return self._submit(_stats).result()


def _stats(connection: sqlite3.Connection) -> Stats:
    arrivals, oldest_arrival = sqlite_arrivals.count(connection)
    return replace(schema.stats(connection), arrivals=arrivals, oldest_arrival=oldest_arrival)


def _text(body: dict[str, Any]) -> str:
    return encode(body).decode("utf-8")


def _connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: transactions are begun and committed explicitly by the writer.
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if mode != "wal":
        connection.close()
        raise sqlite3.OperationalError(f"cannot switch to WAL mode (journal_mode is {mode})")
    connection.execute("PRAGMA synchronous = FULL")
    schema.create(connection)
    return connection
