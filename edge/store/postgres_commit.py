"""The PostgreSQL store's connections and its group commit.

`Connections` are one event loop's: opened when needed (at most `size` at once), kept while they
work, dropped when they broke (the server restarted, a failover, a killed backend), so the store
reconnects by itself: what was under way on a lost connection fails (StoreUnavailable), the next
call opens a new one. `SyncConnections` are the same for callers without an event loop (the
commands, the metrics thread). Neither runs a task or a thread of its own, so closing is
synchronous, whether or not the loop still runs.

`GroupCommit` runs the jobs submitted on its loop in groups, one transaction each: while a
group commits, the jobs submitted meanwhile wait and go together as the next, so the flush at
commit is paid once a group. The group is written optimistically, every job in one transaction;
if one job fails, the transaction is rolled back and each job runs again in a transaction of its
own, so that the one failing does not fail the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Final

import psycopg

from edge.store.errors import StoreUnavailable
from edge.store.postgres_plan import BEGIN, IDLE, Plan, Query, finish, rollback, transact

# A job: a function that makes a plan, and its arguments; or a callable that makes one when its
# group is handed over (`edge.store.coalesce.Coalescer`).
Job = tuple[Callable[..., Plan[Any]], tuple[Any, ...]]
Deferred = Callable[[], Job]
Outcome = tuple[bool, Any]  # (True, result) or (False, the exception)
CONNECT_TIMEOUT: Final = 5  # seconds: an unreachable server fails requests fast (503)
# Connections prepare no statements (`prepare_threshold=None`): each is planned with its own
# values. A plan psycopg prepared while a table was young (identities, arrivals, the queue: not
# analyzed yet) kept scanning it whole as it grew, per slice: PostgreSQL's CPU per beacon grew
# with the backlog (8 ms a beacon in a 30,000-beacon burst, bench/fleet.py). It also lets the
# edge run behind pgbouncer in transaction mode.


def made(job: Job | Deferred) -> Job:
    return job() if callable(job) else job


@contextlib.contextmanager
def unavailable(where: str) -> Iterator[None]:
    """The driver's errors as the store's: nothing of the operation was committed."""
    try:
        yield
    except psycopg.Error as error:
        raise StoreUnavailable(f"{where}: {_message(error)}") from None


def _message(error: psycopg.Error) -> str:
    text = str(error).strip() or type(error).__name__
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


class Connections:
    """One event loop's connections (see above)."""

    def __init__(self, conninfo: str, options: dict[str, Any], size: int) -> None:
        self.conninfo = conninfo
        self.options = options
        self._idle: list[psycopg.AsyncConnection[Any]] = []
        self._slots = asyncio.Semaphore(size)
        self.closed = False

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        async with self._slots:
            if self.closed:
                raise psycopg.OperationalError("the store is closed")
            connection = self._idle.pop() if self._idle else await self._open()
            try:
                yield connection
            finally:
                self._give(connection)

    async def _open(self) -> psycopg.AsyncConnection[Any]:
        return await psycopg.AsyncConnection.connect(
            self.conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT,
            prepare_threshold=None, **self.options,
        )  # fmt: skip

    def _give(self, connection: psycopg.AsyncConnection[Any]) -> None:
        if self.closed or connection.closed or connection.info.transaction_status != IDLE:
            connection.pgconn.finish()  # lost, or left in a transaction: not used again
        else:
            self._idle.append(connection)

    def close(self) -> None:
        """Close the idle connections now, and the others as they are given back; from the
        loop's thread, or once the loop has stopped."""
        self.closed = True
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.pgconn.finish()


class SyncConnections:
    """Connections for callers without an event loop, from any thread."""

    def __init__(self, conninfo: str, options: dict[str, Any]) -> None:
        self.conninfo = conninfo
        self.options = options
        self._idle: list[psycopg.Connection[Any]] = []
        self._lock = threading.Lock()
        self.closed = False

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        with self._lock:
            if self.closed:
                raise psycopg.OperationalError("the store is closed")
            connection = self._idle.pop() if self._idle else None
        if connection is None:
            connection = psycopg.Connection.connect(
                self.conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT,
                prepare_threshold=None, **self.options,
            )  # fmt: skip
        try:
            yield connection
        finally:
            with self._lock:
                keep = not (
                    self.closed or connection.closed or connection.info.transaction_status != IDLE
                )
                if keep:
                    self._idle.append(connection)
            if not keep:
                connection.close()

    def close(self) -> None:
        with self._lock:
            self.closed = True
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()


class GroupCommit:
    """Jobs submitted on one event loop, run in groups of up to `max_group`, one transaction
    each (see above); `committed(n)` is told of every n commits made."""

    def __init__(
        self,
        connections: Connections,
        loop: asyncio.AbstractEventLoop,
        *,
        where: str,
        max_group: int,
        committed: Callable[[int], None],
    ) -> None:
        self.connections = connections
        self.loop = loop
        self.where = where
        self.max_group = max_group
        self.committed = committed
        self._pending: list[tuple[Job | Deferred, asyncio.Future[Any]]] = []
        self._task: asyncio.Task[None] | None = None

    def submit(self, job: Job | Deferred) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = self.loop.create_future()
        self._pending.append((job, future))
        if self._task is None:  # starts at the next turn of the loop: what else this one
            self._task = self.loop.create_task(self._drain())  # submits goes along
        return future

    def fail(self, failure: StoreUnavailable) -> None:
        """Fail every job not handed over yet (the store closed)."""
        waiting, self._pending = self._pending, []
        for _, future in waiting:
            if not future.done():
                future.set_exception(failure)

    async def _drain(self) -> None:
        try:
            while self._pending:
                group = self._pending[: self.max_group]
                del self._pending[: len(group)]
                jobs: list[Job] = []
                futures: list[asyncio.Future[Any]] = []
                for job, future in group:
                    if future.cancelled():  # its caller went away before it was written
                        continue
                    try:
                        jobs.append(made(job))
                    except Exception as error:  # a job that cannot be made: a bug, failed loudly
                        future.set_exception(error)
                        continue
                    futures.append(future)
                if jobs:
                    try:
                        outcomes = await self._commit(jobs)
                    except Exception as error:  # a bug: failed loudly, never left waiting
                        outcomes = [(False, error)] * len(jobs)
                    for future, (ok, value) in zip(futures, outcomes, strict=True):
                        if future.done():
                            continue
                        if ok:
                            future.set_result(value)
                        else:
                            future.set_exception(value)
        finally:
            self._task = None

    async def _commit(self, jobs: list[Job]) -> list[Outcome]:
        try:
            with unavailable(self.where):
                async with self.connections.connection() as connection:
                    return await self._group(connection, jobs)
        except StoreUnavailable as failure:  # the connection: every job failed with it
            return [(False, failure)] * len(jobs)

    async def _group(
        self, connection: psycopg.AsyncConnection[Any], jobs: list[Job]
    ) -> list[Outcome]:
        if len(jobs) > 1:
            try:
                values = []
                begin: Query | None = BEGIN  # sent with the first job's first statements
                for function, args in jobs:
                    plan = function(*args)
                    values.append(await finish(connection, plan, next(plan), begin))
                    begin = None
                await connection.execute(b"COMMIT")
            except Exception:
                if connection.closed:
                    raise  # lost: every job fails with it
                await rollback(connection)
            else:
                self.committed(1)
                return [(True, value) for value in values]
        # Alone, or one of the group failed: each in a transaction of its own.
        outcomes: list[Outcome] = []
        for function, args in jobs:
            try:
                with unavailable(self.where):
                    outcomes.append((True, await transact(connection, function(*args))))
                self.committed(1)
            except Exception as error:
                outcomes.append((False, error))
                if connection.closed:  # lost: the jobs after this one fail with it
                    return outcomes + [(False, error)] * (len(jobs) - len(outcomes))
        return outcomes
