"""The embedded store: one SQLite file in WAL mode, written by one process with group commit.

Every operation is a job for the writer, a process of its own (`edge.store.sqlite_writer` says
why not a thread), reached through `edge.store.sqlite_channel`: the event loop that first calls
the store drives it, and the jobs waiting go as one group, one transaction, one fsync, each in a
savepoint of its own. Synchronous callers and other event loops write on a connection of the
store's own instead (`_run_private`). Reads that must not wait for the writer (identities, the
commands' snapshots) use connections of their own beside it (WAL).

Durability: `synchronous=FULL` for everything intake writes, dead letters, replays and pauses;
lease transitions (the sender's, processing's) and settles alone are committed with NORMAL,
which can only lose a suffix of commits that are harmless to lose (see
docs/architecture.md#the-sqlite-store for why).

The file is its owner's alone (it holds the cookie-signing key and personal data): created 0600
(with `make_folders`, the default location's, in folders created 0700), and narrowed at open,
saying so in the log, when it was left readable by others (`sqlite_writer.own`).

Raises the store errors of `edge.store.errors` (StoreUnavailable for any failed write).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NamedTuple, TypeVar

from edge.store import (
    sqlite_arrivals,
    sqlite_budgets,
    sqlite_conversions,
    sqlite_dedup,
    sqlite_identity,
    sqlite_owners,
    sqlite_recent,
    sqlite_writer,
)
from edge.store import sqlite_schema as schema
from edge.store.arrivals import LEASE_SECONDS
from edge.store.coalesce import Coalescer
from edge.store.errors import StoreConfigError, StoreUnavailable
from edge.store.interface import Store
from edge.store.outbox import Claims
from edge.store.put_rows import PutArgs, put_args
from edge.store.sqlite_channel import Channel, Deferred, Job, WriterProcess, made
from edge.store.values import (
    DUPLICATE,
    UPSTREAM_ERRORS_KEPT,
    Arrival,
    Conversion,
    DeadLetter,
    DryRunBody,
    Identity,
    Intake,
    ItemId,
    Owner,
    Paused,
    PutResult,
    Recent,
    Stats,
    StoredArrival,
)

if TYPE_CHECKING:
    from edge.settings import Settings

log = logging.getLogger("rokt_edge.store")
T = TypeVar("T")
BUSY_TIMEOUT_MS: Final = sqlite_writer.BUSY_TIMEOUT_MS
MAX_GROUP: Final = 1024
DEDUP_WINDOW_SECONDS: Final = 86400.0
PREFIX: Final = "sqlite:///"
SETTING: Final = "ROKT_EDGE_DATABASE_URL"


def sqlite_path(url: str) -> Path:
    """`sqlite:///relative.db` → relative.db; `sqlite:////abs.db` → /abs.db (as SQLAlchemy)."""
    if not url.startswith(PREFIX) or url == PREFIX:
        raise StoreConfigError(f"{url!r} is not a sqlite:///path URL")
    return Path(url[len(PREFIX) :])


def open_url(url: str, settings: Settings, *, create: bool) -> SQLiteStore:
    """The store `url` names (`edge.store.open_store`). A missing folder is refused, but for
    the default location (`edge.settings.default_database_path`), whose folders are created
    0700; without `create`, so is a file that does not exist yet."""
    from edge.settings import default_database_path

    path = sqlite_path(url)
    default = path == default_database_path(os.environ)
    where = f"{SETTING}'s default" if default else f"{SETTING} = {url!r}"
    if not create and not path.is_file():
        raise StoreConfigError(
            f"no store at {path} ({where}): `rokt-edge serve` creates it; to use the store "
            f"a running service uses, give this command the same {SETTING}"
        )
    if not default and not path.parent.is_dir():
        raise StoreConfigError(
            f"{SETTING} = {url!r}: the folder {path.parent} does not exist (only the default "
            "location's is created): create it, or name a file in a folder that exists"
        )
    return SQLiteStore(
        path, dedup_window=settings.dedup_window_hours * 3600.0, make_folders=default
    )


class SQLiteStore(Store):
    def __init__(
        self,
        path: str | Path,
        *,
        group_commit: bool = True,
        clock: Callable[[], float] = time.time,
        dedup_window: float = DEDUP_WINDOW_SECONDS,
        make_folders: bool = False,
    ) -> None:
        self.path = Path(path)
        self.clock = clock
        self.dedup_window = dedup_window  # seconds between two copies of one conversion
        self.transactions = 0  # commits made, for tests and benchmarks
        # What the arrivals this store leases are held by: this process, this opening.
        self.owner = f"{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(4)}"
        self._max_group = MAX_GROUP if group_commit else 1
        self._closed = False
        self._read_connection: sqlite3.Connection | None = None
        self._arrivals: Coalescer[Arrival] = Coalescer(self._submit, sqlite_arrivals.insert)
        self._slice: tuple[int, float] | None = None  # the last `arrivals` call's limit and lease
        self._ahead: _Ahead | None = None  # the next slice, leased by the last settle
        self._own(self.path, make_folders)
        self._writer: WriterProcess | None = WriterProcess(self.path)  # raises if it cannot open
        self._channel: Channel | None = None  # the writer, driven by the first loop that calls
        self._restart_after = 0.0  # a writer that died is not started again before (monotonic)
        self._private: sqlite_writer.Writer | None = None  # for callers without that loop
        self._private_lock = threading.Lock()

    @staticmethod
    def _own(path: Path, make_folders: bool) -> None:
        """The file private to its owner before anything is written in it (see `own`)."""
        try:
            narrowed = sqlite_writer.own(path, make_folders=make_folders)
        except OSError as error:
            raise StoreUnavailable(f"cannot open {path}: {error}") from None
        for file, mode in narrowed:
            log.warning(
                "%s was readable by others (mode %03o); now %03o: it holds the cookie-signing "
                "key and personal data", file, mode, mode & sqlite_writer.FILE_MODE,
            )  # fmt: skip

    def _committed(self, transactions: int) -> None:
        self.transactions += transactions

    @property
    def writer_pid(self) -> int | None:
        """The writer process's id, while one runs (for `top`, and the benchmarks)."""
        return None if self._writer is None else self._writer.process.pid

    # -- handing jobs to the writer ---------------------------------------------------------

    def _submit(self, job: Job | Deferred, durable: bool = True) -> asyncio.Future[Any]:
        """Run `job` in the writer's next group; from a running event loop."""
        if self._closed:
            raise StoreUnavailable(f"{self.path}: the store is closed")
        loop = asyncio.get_running_loop()
        channel = self._channel_for(loop)
        if channel is None:  # another loop than the writer's: a transaction of its own
            return loop.run_in_executor(None, self._run_private, job, durable)
        return channel.submit(job, durable)

    def _channel_for(self, loop: asyncio.AbstractEventLoop) -> Channel | None:
        channel = self._channel
        if channel is not None and not channel.lost:
            return channel if channel.loop is loop else None
        if channel is not None and channel.loop is not loop:
            return None  # the writer's loop lost it: that loop starts the next one
        if self._writer is None or channel is not None:
            self._writer = self._restart()
        self._channel = Channel(
            self._writer, loop, max_group=self._max_group, committed=self._committed
        )
        return self._channel

    def _restart(self) -> WriterProcess:
        """A new writer after the last one died (killed, out of memory); at most one try a
        second, so a disk that refuses every start fails requests fast meanwhile. The event
        loop does not wait for it to open the database (most of a tenth of a second, a Python
        process's start): its channel holds the jobs until it says it is ready, and fails
        them with its reason if it cannot open."""
        if self._writer is not None:
            self._writer.stop()
            self._writer = None
        if time.monotonic() < self._restart_after:
            raise StoreUnavailable(f"{self.path}: the writer process is being restarted")
        self._restart_after = time.monotonic() + 1.0
        return WriterProcess(self.path, wait_until_open=False)

    def _run_private(self, job: Job | Deferred, durable: bool = True) -> Any:
        """`job` in a transaction of this caller's own, on a connection of the store's own:
        for the synchronous methods (the CLI, a scrape of /metrics) and for event loops other
        than the writer's (tests that serve the app in a thread). SQLite serialises it with
        the writer's transactions (WAL, busy timeout); it only misses the group commit."""
        function, args = made(job)
        with self._private_lock:
            if self._closed:
                raise StoreUnavailable(f"{self.path}: the store is closed")
            if self._private is None:
                try:
                    self._private = sqlite_writer.Writer(
                        sqlite_writer.connect(self.path), self.path
                    )
                except (sqlite3.Error, OSError) as error:
                    raise StoreUnavailable(f"cannot open {self.path}: {error}") from None
            before = self._private.transactions
            [(ok, value)] = self._private.commit([(function, args, durable)])
            self.transactions += self._private.transactions - before
        if not ok:
            raise value
        return value

    async def _run(self, function: Callable[..., T], *args: Any, durable: bool = True) -> T:
        """`function(connection, *args)` in the writer's next transaction."""
        result: T = await self._submit((function, args), durable)
        return result

    def _run_sync(self, function: Callable[..., T], *args: Any) -> T:
        result: T = self._run_private((function, args))
        return result

    def close(self) -> None:
        """Let the writer finish the group it has (callers still waiting are told the store
        closed), then release the database. From any thread, the loop running or not."""
        if self._closed:
            return
        self._closed = True
        if self._channel is not None:
            self._channel.detach(StoreUnavailable(f"{self.path}: the store is closed"))
        if self._writer is not None:
            self._writer.stop()
        with self._private_lock:
            if self._private is not None:
                self._private.connection.close()
        if self._read_connection is not None:
            self._read_connection.close()

    # -- the interface ----------------------------------------------------------------------

    async def put(self, intake: Intake) -> PutResult:
        return await self._run(_put, self._put_args(intake))

    def put_sync(self, intake: Intake) -> PutResult:
        return self._run_sync(_put, self._put_args(intake))

    def _put_args(self, intake: Intake) -> PutArgs:
        return put_args(intake, self.clock(), self.dedup_window)

    async def put_arrival(self, arrival: Arrival) -> None:
        await self._arrivals.put(arrival)

    async def hold_arrival(
        self, arrival: Arrival, lease_seconds: float = LEASE_SECONDS
    ) -> StoredArrival:
        until = self.clock() + lease_seconds
        id = await self._run(sqlite_arrivals.hold, arrival, self.owner, until)
        return StoredArrival(id, arrival)

    async def arrivals(
        self, limit: int, lease_seconds: float = LEASE_SECONDS
    ) -> list[StoredArrival]:
        # A lease transition as the sender's: not synced (lost to a power cut, it was never
        # taken, and the arrivals are simply taken again). The settle before leased the next
        # slice ahead, in its own transaction (`settle`): a full one, with most of its lease
        # left, is this one, and processing pays one round trip to the writer a slice, not two.
        ahead, self._ahead = self._ahead, None
        self._slice = (limit, lease_seconds)
        now = self.clock()
        if (
            ahead is not None
            and len(ahead.arrivals) >= limit
            and ahead.until - now >= lease_seconds / 2
        ):
            return ahead.arrivals[:limit]
        until = now + lease_seconds
        rows = await self._run(sqlite_arrivals.lease, limit, self.owner, until, durable=False)
        return sqlite_arrivals.stored(rows)

    async def settle(self, ids: Sequence[int], intake: Intake) -> PutResult:
        # Not synced to disk (synchronous=NORMAL, as the lease transitions): a settle lost to a
        # power cut is lost with everything after it (see the docstring), and its arrivals,
        # committed with FULL before, are simply processed again (the outbox keeps one item
        # per key, and the identity updates are the same again).
        lease = None
        if self._slice is not None:  # the next slice, as the last `arrivals` took one
            limit, lease_seconds = self._slice
            lease = (limit, self.owner, self.clock() + lease_seconds)
        self._ahead = None
        args = self._put_args(intake)
        result, rows = await self._run(_settle, args, list(ids), lease, durable=False)
        if lease is not None:
            self._ahead = _Ahead(sqlite_arrivals.stored(rows), lease[2])
        return result

    async def release_arrivals(self, ids: Sequence[int]) -> None:
        """`ids`, and what the last settle leased ahead."""
        ahead, self._ahead = self._ahead, None
        held = list(ids) + ([stored.id for stored in ahead.arrivals] if ahead else [])
        await self._run(sqlite_arrivals.release, held, self.owner, durable=False)

    async def sweep_arrivals(self) -> int:
        return await self._run(sqlite_arrivals.sweep, self.clock(), durable=False)

    async def claim(self, limit: int, lease_seconds: float) -> Claims:
        now = self.clock()
        until = now + lease_seconds
        return await self._run(schema.claim, limit, now, until, self.owner, durable=False)

    async def ack(self, ids: Sequence[ItemId], *, dry_run: bool = False) -> None:
        await self._run(schema.ack, ids, self.clock(), dry_run, durable=False)

    async def retry(self, ids: Sequence[ItemId], at: float, error: str) -> None:
        await self._run(schema.retry, ids, at, error, durable=False)

    async def release(self, ids: Sequence[ItemId]) -> None:
        await self._run(schema.release, ids, durable=False)

    async def due_now(self) -> int:
        # Not synced, as a retry: lost to a power cut, the items only wait for their time.
        return await self._run(schema.due_now, self.clock(), durable=False)

    async def dead(self, letters: Sequence[DeadLetter]) -> None:
        await self._run(schema.dead, letters, self.clock())

    async def sweep(self) -> int:
        return await self._run(schema.sweep, self.clock(), durable=False)

    async def replay(self, since: float | None = None) -> int:
        return await self._run(schema.replay, since, self.clock())

    def replay_sync(self, since: float | None = None) -> int:
        return self._run_sync(schema.replay, since, self.clock())

    async def replay_dry_runs(self, since: float | None = None) -> int:
        return await self._run(schema.replay_dry_runs, since, self.clock())

    def replay_dry_runs_sync(self, since: float | None = None) -> int:
        return self._run_sync(schema.replay_dry_runs, since, self.clock())

    async def prune(self, before: float) -> int:
        dedup_before = round((before - self.dedup_window) * 1000)
        return await self._run(_prune, before, dedup_before)

    async def record_dry_run(self, path: str, body: str, keep: int) -> None:
        await self._run(schema.record_dry_run, self.clock(), path, body, keep)

    async def dry_run_bodies(self, limit: int) -> list[DryRunBody]:
        return await self._run(schema.dry_run_bodies, limit)

    async def record_upstream_error(self, status: int | None, message: str) -> None:
        now = self.clock()
        await self._run(schema.record_upstream_error, now, status, message, UPSTREAM_ERRORS_KEPT)

    async def identities(self, keys: Sequence[str], since: float) -> dict[str, Identity]:
        """Read on the caller's thread, beside the writer: WAL lets readers see the last
        commit without waiting for the writer's queue, and primary-key lookups take
        microseconds, less than a hop to another thread would."""
        if not keys:
            return {}
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
        return await self._run(sqlite_identity.prune, before)

    async def secret(self, name: str) -> str:
        return await self._run(sqlite_identity.secret, name)

    async def check_writable(self) -> None:
        await self._run(sqlite_identity.touch, self.clock())

    async def set_paused(self, paused: Paused | None) -> None:
        await self._run(schema.set_paused, paused)

    async def take_budget(self, name: str, rate: float, count: float) -> float:
        return await self._run(sqlite_budgets.take, name, rate, count, self.clock(), durable=False)

    async def heartbeat(self) -> None:
        host, pid, _ = self.owner.split("/")
        await self._run(sqlite_owners.beat, self.owner, host, int(pid), self.clock(), durable=False)

    async def sweep_dead_owners(self, silent_seconds: float, gone: Sequence[str] = ()) -> int:
        silent_before = self.clock() - silent_seconds
        return await self._run(
            sqlite_owners.sweep_dead, silent_before, list(gone), self.owner, durable=False
        )

    async def owners(self) -> list[Owner]:
        return await self._run(sqlite_owners.listed, durable=False)

    async def stats(self) -> Stats:
        return await self._run(_stats, self.clock())

    def stats_sync(self) -> Stats:
        return self._snapshot(_stats, self.clock())

    def recent_sync(self, limit: int) -> Recent:
        return self._snapshot(sqlite_recent.read, limit)

    def recent_identities_sync(self, limit: int) -> list[tuple[str, Identity]]:
        return self._snapshot(sqlite_identity.latest, limit)

    def _snapshot(self, read: Callable[..., T], *args: Any) -> T:
        """`read(connection, *args)` on a connection of its own, in one read transaction (one
        snapshot for every count): never waits for the writer."""
        if self._closed:
            raise StoreUnavailable(f"{self.path}: the store is closed")
        try:
            with contextlib.closing(sqlite3.connect(self.path, isolation_level=None)) as reader:
                reader.execute("BEGIN")
                return read(reader, *args)
        except sqlite3.Error as error:
            raise StoreUnavailable(f"{self.path}: {error}") from None


class _Ahead(NamedTuple):
    arrivals: list[StoredArrival]
    until: float  # their lease


# -- the jobs that are more than one schema function (run in the writer) --------------------


def _put(connection: sqlite3.Connection, args: PutArgs) -> PutResult:
    rows, skipped, identities, checks, window_ms, now, conversions = args
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
    counted: tuple[Conversion, ...] = ()
    if conversions and result.stored:
        counted = sqlite_conversions.tally(
            connection, conversions, schema.new_keys(connection, result.stored), now
        )
    return PutResult(result.stored, result.duplicates, len(rows) - len(kept), counted)


def _settle(
    connection: sqlite3.Connection,
    args: PutArgs,
    ids: list[int],
    lease: tuple[int, str, float] | None,
) -> tuple[PutResult, list[tuple[Any, ...]]]:
    """What processing made of the arrivals `ids`, stored, and the arrivals forgotten; then the
    next slice leased (`lease`: its size, owner and end), if asked."""
    result = _put(connection, args)
    sqlite_arrivals.delete(connection, ids)
    return result, ([] if lease is None else sqlite_arrivals.lease(connection, *lease))


def _prune(connection: sqlite3.Connection, before: float, dedup_before: int) -> int:
    return (
        schema.prune(connection, before)
        + sqlite_dedup.prune(connection, dedup_before)
        + sqlite_conversions.prune(connection, before)
    )


def _stats(connection: sqlite3.Connection, now: float) -> Stats:
    arrivals, oldest_arrival = sqlite_arrivals.count(connection)
    return replace(
        schema.stats(connection),
        arrivals=arrivals,
        oldest_arrival=oldest_arrival,
        conversions=sqlite_conversions.shares(connection, now),
        owners=sqlite_owners.listed(connection),
    )
