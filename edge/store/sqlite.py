"""The embedded store: one SQLite file in WAL mode, written by one process with group commit.

Every operation is a job for the writer, a process of its own (`edge.store.sqlite_writer` says
why not a thread). The event loop that first calls the store drives it (`_Channel`, no thread):
it hands over the jobs waiting (up to `max_group`) as one group; the writer runs each inside a
savepoint of one transaction, commits once, and only then answers, and the loop resolves their
futures. While one commit waits for the disk, the next jobs queue up and share the next commit:
durability costs one fsync per group, not one per put, and a job that fails rolls back its
savepoint without failing the others. Synchronous callers and other event loops write on a
connection of the store's own instead (`_run_private`).

Durability: `synchronous=FULL` for everything intake writes, dead letters, replays and pauses;
the sender's lease transitions alone are committed with NORMAL, which can only lose a suffix of
commits that are harmless to lose (see docs/architecture.md#the-sqlite-store for why).

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
import pickle
import socket
import sqlite3
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NamedTuple, TypeVar

from edge.jsontext import encode
from edge.store import (
    Store,
    sqlite_arrivals,
    sqlite_conversions,
    sqlite_dedup,
    sqlite_identity,
    sqlite_recent,
    sqlite_writer,
)
from edge.store import sqlite_schema as schema
from edge.store.coalesce import Coalescer
from edge.store.errors import StoreConfigError, StoreUnavailable
from edge.store.outbox import Claims
from edge.store.values import (
    DUPLICATE,
    UPSTREAM_ERRORS_KEPT,
    Arrival,
    Conversion,
    DeadLetter,
    DryRunBody,
    Identity,
    IdentityUpdate,
    Intake,
    ItemId,
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
# A job: a module-level function run as `function(connection, *args)` in the writer (pickled by
# name), or a callable that makes one when its group is handed over (`Coalescer`).
Job = tuple[Callable[..., Any], tuple[Any, ...]]
Deferred = Callable[[], Job]
BUSY_TIMEOUT_MS: Final = sqlite_writer.BUSY_TIMEOUT_MS
MAX_GROUP: Final = 1024
SOCKET_BUFFER_BYTES: Final = 8 << 20
STOP_SECONDS: Final = 30.0  # for the writer to finish its group at close
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
        self._max_group = MAX_GROUP if group_commit else 1
        self._closed = False
        self._read_connection: sqlite3.Connection | None = None
        self._arrivals: Coalescer[Arrival] = Coalescer(self._submit, sqlite_arrivals.insert)
        self._own(self.path, make_folders)
        self._writer: _WriterProcess | None = _WriterProcess(self.path)  # raises if it cannot open
        self._channel: _Channel | None = None  # the writer, driven by the first loop that calls
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

    def _channel_for(self, loop: asyncio.AbstractEventLoop) -> _Channel | None:
        channel = self._channel
        if channel is not None and not channel.lost:
            return channel if channel.loop is loop else None
        if channel is not None and channel.loop is not loop:
            return None  # the writer's loop lost it: that loop starts the next one
        if self._writer is None or channel is not None:
            self._writer = self._restart()
        self._channel = _Channel(self, self._writer, loop)
        return self._channel

    def _restart(self) -> _WriterProcess:
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
        return _WriterProcess(self.path, wait_until_open=False)

    def _run_private(self, job: Job | Deferred, durable: bool = True) -> Any:
        """`job` in a transaction of this caller's own, on a connection of the store's own:
        for the synchronous methods (the CLI, a scrape of /metrics) and for event loops other
        than the writer's (tests that serve the app in a thread). SQLite serialises it with
        the writer's transactions (WAL, busy timeout); it only misses the group commit."""
        function, args = _made(job)
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
        # Encoding happens in the caller's thread, so the writer only writes.
        now = self.clock()
        rows = [
            (item.key, item.mapping, item.message_id, item.timestamp_ms, _text(item.body), now)
            for item in intake.outbound
        ]
        skipped = [
            (f"{item.mapping or ''}\n{item.message_id}", item.message_id, item.mapping, item.reason)
            for item in intake.skipped
        ]
        checks = [(item.key, item.dedup_key, item.timestamp_ms) for item in intake.outbound]
        window_ms = round(self.dedup_window * 1000)
        return PutArgs(
            rows, skipped, list(intake.identities), checks, window_ms, now,
            list(intake.conversions),
        )  # fmt: skip

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
        return await self._run(_settle, self._put_args(intake), list(ids), durable=False)

    async def claim(self, limit: int, lease_seconds: float) -> Claims:
        now = self.clock()
        return await self._run(schema.claim, limit, now, now + lease_seconds, durable=False)

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

    async def stats(self) -> Stats:
        return await self._run(_stats, self.clock())

    def stats_sync(self) -> Stats:
        """On a connection of its own, in a read transaction: never waits for the writer."""
        if self._closed:
            raise StoreUnavailable(f"{self.path}: the store is closed")
        try:
            with contextlib.closing(sqlite3.connect(self.path, isolation_level=None)) as reader:
                reader.execute("BEGIN")  # one snapshot for every count
                return _stats(reader, self.clock())
        except sqlite3.Error as error:
            raise StoreUnavailable(f"{self.path}: {error}") from None

    def recent_sync(self, limit: int) -> Recent:
        """On a connection of its own, in a read transaction, as `stats_sync`."""
        if self._closed:
            raise StoreUnavailable(f"{self.path}: the store is closed")
        try:
            with contextlib.closing(sqlite3.connect(self.path, isolation_level=None)) as reader:
                reader.execute("BEGIN")  # one snapshot for the outcomes and the requests
                return sqlite_recent.read(reader, limit)
        except sqlite3.Error as error:
            raise StoreUnavailable(f"{self.path}: {error}") from None


# -- the jobs that are more than one schema function (run in the writer) --------------------


class PutArgs(NamedTuple):
    rows: list[tuple[str, str, str, int, str, float]]  # key, mapping, message id, time, body, now
    skipped: list[tuple[str, str, str | None, str]]  # key, message id, mapping, reason
    identities: list[IdentityUpdate]
    checks: list[tuple[str, str | None, int]]  # key, dedup key, time (ms)
    window_ms: int  # the de-duplication window
    now: float
    conversions: list[Conversion]


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


def _settle(connection: sqlite3.Connection, args: PutArgs, ids: list[int]) -> PutResult:
    result = _put(connection, args)
    sqlite_arrivals.delete(connection, ids)
    return result


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
    )


class _WriterProcess:
    """The writer (`edge.store.sqlite_writer`): started, checked ready, and stopped."""

    def __init__(self, path: Path, *, wait_until_open: bool = True) -> None:
        ours, theirs = socket.socketpair()
        for end in (ours, theirs):  # a claim crosses in a read or two (up to the system limit)
            end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER_BYTES)
            end.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER_BYTES)
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "edge.store.sqlite_writer", str(theirs.fileno()), str(path)],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                env=_child_environment(),
            )
        except OSError as error:
            ours.close()
            raise StoreUnavailable(f"cannot start the writer for {path}: {error}") from None
        finally:
            theirs.close()
        self.socket = ours
        # Whether it has the database open: known here when waited for, else set by its
        # channel when the writer's first message on the socket says so (`_Channel._opened`).
        self.ready = wait_until_open
        if not wait_until_open:
            return
        try:  # read as the writer sent it, on a copy of our end that the reader then closes
            with Connection(os.dup(ours.fileno())) as channel:
                ready = channel.recv()
        except (EOFError, OSError):
            ready = StoreUnavailable(f"cannot open {path}: the writer process ended at start")
        if ready is not None:
            self.stop()
            raise ready

    def stop(self) -> None:
        """Close our end: the writer finishes the group it has, sees the end, and exits."""
        self.socket.close()
        try:
            self.process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class _Channel:
    """The writer's socket, driven by one event loop: jobs submitted while a group is out wait
    for its answer and go together as the next group. No thread, so no interpreter lock is
    shared with anything (`edge.store.sqlite_writer` says why that matters)."""

    def __init__(self, store: SQLiteStore, writer: _WriterProcess, loop: asyncio.AbstractEventLoop):
        self.store = store
        self.writer = writer
        self.loop = loop
        self.lost = False
        self._socket = writer.socket
        self._socket.setblocking(False)
        self._pending: list[tuple[Job | Deferred, asyncio.Future[Any], bool]] = []
        self._out: list[asyncio.Future[Any]] | None = None  # the group the writer has
        self._flush_soon = False
        self._unsent = b""
        self._header = bytearray(4)  # of the answer being read: its size
        self._header_view = memoryview(self._header)
        self._buffer = bytearray()  # where answers are read, grown to the largest so far
        self._message: memoryview | None = None  # the answer's part of it, once its size is known
        self._filled = 0  # bytes of the header, or of the message, read so far
        self._transactions = 0  # as the writer counts them
        loop.add_reader(self._socket.fileno(), self._readable)

    def submit(self, job: Job | Deferred, durable: bool) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = self.loop.create_future()
        self._pending.append((job, future, durable))
        if self._out is None and not self._flush_soon:
            # At the end of this turn of the loop: what else it submits goes along.
            self._flush_soon = True
            self.loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self._flush_soon = False
        if self._out is not None or self.lost or not self.writer.ready:
            return
        group = self._pending[: self.store._max_group]
        del self._pending[: len(group)]
        sent: list[asyncio.Future[Any]] = []
        jobs = []
        for job, future, durable in group:
            if future.cancelled():  # its caller went away before it was written: not written
                continue
            try:
                jobs.append((*_made(job), durable))
            except Exception as error:  # a job that cannot be made: a bug, failed loudly
                future.set_exception(error)
                continue
            sent.append(future)
        if not sent:
            return
        try:
            payload = pickle.dumps(jobs, pickle.HIGHEST_PROTOCOL)
        except Exception as error:  # a job that cannot be sent: a bug, failed loudly
            for future in sent:
                future.set_exception(error)
            self._flush_soon = True
            self.loop.call_soon(self._flush)
            return
        self._out = sent
        self._send(struct.pack("!i", len(payload)) + payload)

    def _send(self, data: bytes) -> None:
        try:
            written = self._socket.send(data)
        except BlockingIOError:
            written = 0
        except OSError as error:
            self._lose(error)
            return
        self._unsent = data[written:]
        if self._unsent:
            self.loop.add_writer(self._socket.fileno(), self._writable)

    def _writable(self) -> None:
        self.loop.remove_writer(self._socket.fileno())
        self._send(self._unsent)

    def _readable(self) -> None:
        # Straight into a buffer kept from answer to answer (a claim's is most of a megabyte:
        # fresh memory each time costs a page fault per 4 KB), and until the socket is empty:
        # one wake-up per answer where it can be.
        while not self.lost:
            target = self._header_view if self._message is None else self._message
            try:
                count = self._socket.recv_into(target[self._filled :])
            except BlockingIOError:
                return
            except OSError as error:
                self._lose(error)
                return
            if not count:
                self._lose(EOFError("end of file"))
                return
            self._filled += count
            if self._filled < len(target):
                continue
            self._filled = 0
            if self._message is None:
                (size,) = struct.unpack("!i", self._header)
                if len(self._buffer) < size:
                    self._buffer = bytearray(size)
                self._message = memoryview(self._buffer)[:size]
            else:
                message, self._message = self._message, None
                with message:  # released before the buffer may be replaced
                    reply = pickle.loads(message)
                if self.writer.ready:
                    self._answer(reply)
                else:
                    self._opened(reply)

    def _answer(self, reply: tuple[int, list[tuple[bool, Any]]]) -> None:
        transactions, outcomes = reply
        self.store.transactions += transactions - self._transactions
        self._transactions = transactions
        futures, self._out = self._out or [], None
        for future, (ok, value) in zip(futures, outcomes, strict=True):
            if future.cancelled():
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)
        if self._pending:
            self._flush()

    def _opened(self, hello: StoreUnavailable | None) -> None:
        """The writer's first message: None once it has the database open, else the reason
        it could not (it then ends); the jobs that waited for it go, or fail with that."""
        if hello is not None:
            self._fail(hello)
            return
        self.writer.ready = True
        if self._pending:
            self._flush()

    def _lose(self, error: BaseException) -> None:
        """The writer is gone: what it had, and what waited, fails (callers answer 503 or try
        again later); the next call starts a new writer."""
        code = self.writer.process.poll()
        ended = f"exit code {code}" if code is not None else f"{type(error).__name__}: {error}"
        self._fail(StoreUnavailable(f"{self.store.path}: the writer process failed ({ended})"))

    def _fail(self, failure: StoreUnavailable) -> None:
        if self.lost:
            return
        self.lost = True
        with contextlib.suppress(ValueError, OSError):  # a closed loop keeps no readers
            self.loop.remove_reader(self._socket.fileno())
            self.loop.remove_writer(self._socket.fileno())
        waiting = [future for _, future, _ in self._pending] + (self._out or [])
        self._pending, self._out = [], None
        for future in waiting:
            if not future.done():
                future.set_exception(failure)

    def detach(self, failure: StoreUnavailable) -> None:
        """Stop using the socket, from any thread: on the loop's thread at once, else through
        the loop (and a loop that has ended has nothing registered any more)."""
        if self.loop.is_closed():
            self.lost = True
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop or not self.loop.is_running():
            self._fail(failure)
            return
        done = threading.Event()

        def fail() -> None:
            self._fail(failure)
            done.set()

        self.loop.call_soon_threadsafe(fail)
        done.wait(STOP_SECONDS)


def _made(job: Job | Deferred) -> Job:
    """The job itself, or the one a deferred job makes now (as its group is handed over)."""
    return job() if callable(job) else job


def _child_environment() -> dict[str, str]:
    """This environment, with the directory `edge` was imported from first on the path: the
    writer imports the same code whether rokt-edge is installed or run from a checkout."""
    root = str(Path(sqlite_writer.__file__).resolve().parents[2])
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": root if not path else f"{root}{os.pathsep}{path}"}


def _text(body: dict[str, Any]) -> str:
    return encode(body).decode("utf-8")
