"""The fleet's store: PostgreSQL, shared by every edge that names the same database
(`ROKT_EDGE_DATABASE_URL=postgresql://user:password@host:5432/database`), through psycopg 3.

Every operation is a plan (`edge.store.postgres_plan`: written once, run on an asynchronous
connection for the event loop, on a synchronous one for the commands and the metrics thread).
Intake's writes (puts, arrivals) go through the group commit (`edge.store.postgres_commit`):
concurrent calls share one transaction, and intake's arrivals are coalesced into one COPY
(`edge.store.coalesce`). Everything else is a short transaction of its own on one of the loop's
connections, most of them one statement: no transaction is held across anything slow, and edges
claim and lease with `FOR UPDATE SKIP LOCKED`. Time comes from the store's clock, never the
server's. The schema is migrated at open (`edge.store.postgres_schema`). `synchronous_commit`
is the server's.

Raises the store errors of `edge.store.errors`: StoreUnavailable for anything the server did
not commit (unreachable, restarted, a constraint refused), the store reconnecting by itself on
the next call; StoreConfigError for a database from a newer rokt-edge, or none where one must be.
"""

from __future__ import annotations

import asyncio
import functools
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final, TypeVar

import psycopg

from edge.settings import without_password
from edge.store import postgres_admin as admin
from edge.store import postgres_arrivals as arrivals
from edge.store import postgres_budgets, postgres_owners
from edge.store import postgres_outbox as outbox
from edge.store.arrivals import LEASE_SECONDS
from edge.store.coalesce import Coalescer
from edge.store.errors import StoreConfigError, StoreUnavailable
from edge.store.interface import Store
from edge.store.outbox import Claims
from edge.store.postgres_commit import (
    Connections,
    Deferred,
    GroupCommit,
    Job,
    SyncConnections,
    made,
    unavailable,
)
from edge.store.postgres_plan import Plan, transact, transact_sync
from edge.store.postgres_put import put
from edge.store.postgres_schema import migrate
from edge.store.put_rows import PutArgs, put_args
from edge.store.values import (
    UPSTREAM_ERRORS_KEPT,
    Arrival,
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

T = TypeVar("T")
MAX_GROUP: Final = 1024
CONNECTIONS: Final = 4  # per event loop: intake's group commit, processing, delivery, reads
DEDUP_WINDOW_SECONDS: Final = 86400.0
STOP_SECONDS: Final = 30.0


def open_url(url: str, settings: Settings, *, create: bool) -> PostgresStore:
    """The store `url` names (`edge.store.open_store`); without `create`, a database without a
    store is refused rather than given one."""
    return PostgresStore(url, dedup_window=settings.dedup_window_hours * 3600.0, create=create)


class PostgresStore(Store):
    def __init__(
        self,
        url: str,
        *,
        clock: Callable[[], float] = time.time,
        dedup_window: float = DEDUP_WINDOW_SECONDS,
        group_commit: bool = True,
        create: bool = True,
    ) -> None:
        self.url = url
        self.where = without_password(url)
        self.clock = clock
        self.dedup_window = dedup_window  # seconds between two copies of one conversion
        self.transactions = 0  # commits made, for tests and benchmarks (group commit)
        # What this store's leases and claims name: this process, this opening.
        self.owner = f"{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(4)}"
        # How the server lists its connections (pg_stat_activity): the owner's last two parts.
        self.application_name = "rokt-edge " + self.owner.split("/", 1)[1]
        self._options = {"application_name": self.application_name}
        try:  # a URL libpq cannot read is the setting's fault, not the server's
            psycopg.conninfo.conninfo_to_dict(url)
        except psycopg.ProgrammingError as error:
            raise StoreConfigError(f"{self.where}: {error}".strip()) from None
        self._max_group = MAX_GROUP if group_commit else 1
        self._closed = False
        self._sync = SyncConnections(url, self._options)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop the connections below are
        self._connections: Connections | None = None  # for; other loops run on threads
        self._commits: GroupCommit | None = None
        self._arrivals: Coalescer[Arrival] = Coalescer(self._submit, arrivals.insert)
        try:
            with unavailable(self.where), self._sync.connection() as connection:
                migrate(connection, create=create)
        except StoreConfigError as error:
            self._sync.close()
            raise StoreConfigError(f"{self.where}: {error}") from None
        except StoreUnavailable:
            self._sync.close()
            raise

    def _committed(self, transactions: int) -> None:
        self.transactions += transactions

    # -- running plans ---------------------------------------------------------------------------

    def _bound(self) -> tuple[Connections, GroupCommit] | None:
        """The running loop's connections and group commit; None when another loop, still
        open, has them (a store used from two loops: this one's calls run on threads)."""
        if self._closed:
            raise StoreUnavailable(f"{self.where}: the store is closed")
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._loop is not loop:
                if self._loop is not None and not self._loop.is_closed():
                    return None
                if self._connections is not None:  # its loop has ended
                    self._connections.close()
                self._loop = loop
                self._connections = Connections(self.url, self._options, CONNECTIONS)
                self._commits = GroupCommit(
                    self._connections, loop, where=self.where, max_group=self._max_group,
                    committed=self._committed,
                )  # fmt: skip
            assert self._connections is not None
            assert self._commits is not None
            return self._connections, self._commits

    def _submit(self, job: Job | Deferred) -> asyncio.Future[Any]:
        """`job` in the group commit's next transaction; from a running event loop."""
        bound = self._bound()
        if bound is None:
            return asyncio.get_running_loop().run_in_executor(None, self._run_job, job)
        return bound[1].submit(job)

    async def _group(self, function: Callable[..., Plan[T]], *args: Any) -> T:
        result: T = await self._submit((function, args))
        return result

    async def _transact(
        self, function: Callable[..., Plan[T]], *args: Any, read: bool = False
    ) -> T:
        """`function(*args)`'s plan in a transaction of its own (`read`: a read-only
        snapshot), on one of the loop's connections."""
        bound = self._bound()
        if bound is None:
            call = functools.partial(self._run_sync, function, *args, read=read)
            return await asyncio.get_running_loop().run_in_executor(None, call)
        with unavailable(self.where):
            async with bound[0].connection() as connection:
                value = await transact(connection, function(*args), read=read)
        if not read:
            self.transactions += 1
        return value

    def _run_sync(self, function: Callable[..., Plan[T]], *args: Any, read: bool = False) -> T:
        """The same on a synchronous connection: the commands, the metrics thread, other loops."""
        if self._closed:
            raise StoreUnavailable(f"{self.where}: the store is closed")
        with unavailable(self.where), self._sync.connection() as connection:
            value = transact_sync(connection, function(*args), read=read)
        if not read:
            self.transactions += 1
        return value

    def _run_job(self, job: Job | Deferred) -> Any:
        function, args = made(job)
        return self._run_sync(function, *args)

    def close(self) -> None:
        """Fail what waits for the group commit (an intake answers 503), let a group under way
        finish, and close the connections. From any thread, the loop running or not."""
        if self._closed:
            return
        self._closed = True
        failure = StoreUnavailable(f"{self.where}: the store is closed")
        loop, connections, commits = self._loop, self._connections, self._commits
        if loop is not None and connections is not None and commits is not None:

            def shut() -> None:
                commits.fail(failure)
                connections.close()

            _on_loop(loop, shut)
        self._sync.close()

    # -- the outbox --------------------------------------------------------------------------

    async def put(self, intake: Intake) -> PutResult:
        return await self._group(put, self._put_args(intake))

    def put_sync(self, intake: Intake) -> PutResult:
        return self._run_sync(put, self._put_args(intake))

    def _put_args(self, intake: Intake) -> PutArgs:
        return put_args(intake, self.clock(), self.dedup_window)

    async def claim(self, limit: int, lease_seconds: float) -> Claims:
        now = self.clock()
        return await self._transact(outbox.claim, limit, now, now + lease_seconds, self.owner)

    async def ack(self, ids: Sequence[ItemId], *, dry_run: bool = False) -> None:
        await self._transact(outbox.ack, ids, dry_run)

    async def retry(self, ids: Sequence[ItemId], at: float, error: str) -> None:
        await self._transact(outbox.retry, ids, at, error)

    async def release(self, ids: Sequence[ItemId]) -> None:
        await self._transact(outbox.release, ids)

    async def due_now(self) -> int:
        return await self._transact(outbox.due_now, self.clock())

    async def dead(self, letters: Sequence[DeadLetter]) -> None:
        await self._transact(outbox.dead, letters, self.clock())

    async def sweep(self) -> int:
        return await self._transact(outbox.sweep, self.clock())

    async def replay(self, since: float | None = None) -> int:
        return await self._transact(outbox.replay, since, self.clock())

    def replay_sync(self, since: float | None = None) -> int:
        return self._run_sync(outbox.replay, since, self.clock())

    async def replay_dry_runs(self, since: float | None = None) -> int:
        return await self._transact(outbox.replay_dry_runs, since, self.clock())

    def replay_dry_runs_sync(self, since: float | None = None) -> int:
        return self._run_sync(outbox.replay_dry_runs, since, self.clock())

    async def prune(self, before: float) -> int:
        dedup_before_ms = round((before - self.dedup_window) * 1000)
        return await self._transact(outbox.prune, before, dedup_before_ms)

    async def record_dry_run(self, path: str, body: str, keep: int) -> None:
        await self._transact(outbox.record_dry_run, self.clock(), path, body, keep)

    async def dry_run_bodies(self, limit: int) -> list[DryRunBody]:
        return await self._transact(outbox.dry_run_bodies, limit, read=True)

    async def record_upstream_error(self, status: int | None, message: str) -> None:
        now = self.clock()
        await self._transact(
            outbox.record_upstream_error, now, status, message, UPSTREAM_ERRORS_KEPT
        )

    # -- arrivals ----------------------------------------------------------------------------

    async def put_arrival(self, arrival: Arrival) -> None:
        await self._arrivals.put(arrival)

    async def hold_arrival(
        self, arrival: Arrival, lease_seconds: float = LEASE_SECONDS
    ) -> StoredArrival:
        until = self.clock() + lease_seconds
        id = await self._group(arrivals.hold, arrival, self.owner, until)
        return StoredArrival(id, arrival)

    async def arrivals(
        self, limit: int, lease_seconds: float = LEASE_SECONDS
    ) -> list[StoredArrival]:
        until = self.clock() + lease_seconds
        return await self._transact(arrivals.lease, limit, self.owner, until)

    async def settle(self, ids: Sequence[int], intake: Intake) -> PutResult:
        return await self._transact(_settle, self._put_args(intake), list(ids))

    async def release_arrivals(self, ids: Sequence[int]) -> None:
        await self._transact(arrivals.release, list(ids), self.owner)

    async def sweep_arrivals(self) -> int:
        return await self._transact(arrivals.sweep, self.clock())

    # -- identities ----------------------------------------------------------------------------

    async def identities(self, keys: Sequence[str], since: float) -> dict[str, Identity]:
        if not keys:
            return {}
        return await self._transact(admin.identities, keys, since, read=True)

    async def prune_identities(self, before: float) -> int:
        return await self._transact(admin.prune_identities, before)

    def recent_identities_sync(self, limit: int) -> list[tuple[str, Identity]]:
        return self._run_sync(admin.latest_identities, limit, read=True)

    # -- owners ------------------------------------------------------------------------------

    async def heartbeat(self) -> None:
        host, pid, _ = self.owner.split("/")
        await self._transact(postgres_owners.beat, self.owner, host, int(pid), self.clock())

    async def sweep_dead_owners(self, silent_seconds: float, gone: Sequence[str] = ()) -> int:
        silent_before = self.clock() - silent_seconds
        return await self._transact(postgres_owners.sweep_dead, silent_before, gone, self.owner)

    async def owners(self) -> list[Owner]:
        return await self._transact(postgres_owners.listed, read=True)

    # -- budgets -----------------------------------------------------------------------------

    async def take_budget(self, name: str, rate: float, count: float) -> float:
        return await self._transact(postgres_budgets.take, name, rate, count, self.clock())

    # -- admin -------------------------------------------------------------------------------

    async def stats(self) -> Stats:
        return await self._transact(admin.stats, self.clock(), read=True)

    def stats_sync(self) -> Stats:
        return self._run_sync(admin.stats, self.clock(), read=True)

    def recent_sync(self, limit: int) -> Recent:
        return self._run_sync(admin.recent, limit, read=True)

    async def set_paused(self, paused: Paused | None) -> None:
        await self._transact(admin.set_paused, paused)

    async def secret(self, name: str) -> str:
        return await self._transact(admin.secret, name)

    async def check_writable(self) -> None:
        await self._group(admin.touch, self.clock())


def _settle(args: PutArgs, ids: list[int]) -> Plan[PutResult]:
    """What processing made of the arrivals `ids`, stored, and the arrivals forgotten."""
    return (yield from put(args, arrivals.delete(ids)))


def _on_loop(loop: asyncio.AbstractEventLoop, call: Callable[[], None]) -> None:
    """`call()` on `loop`'s thread if it runs on another one (waiting for it), else here."""
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop or not loop.is_running():
        call()
        return
    done = threading.Event()

    def run() -> None:
        try:
            call()
        finally:
            done.set()

    loop.call_soon_threadsafe(run)
    done.wait(STOP_SECONDS)
