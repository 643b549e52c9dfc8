"""Plans: the PostgreSQL store's operations written once, run on a synchronous or an asynchronous
connection (psycopg has both; the store needs both: the commands and the metrics thread call it
without an event loop).

A plan is a generator: it yields a `Query` and is sent its `Result`, or yields a list of queries
and is sent their results, the list sent in one round trip (psycopg's pipeline mode); it returns
the operation's value. It never commits: the runner puts it in a transaction (`transact`), or
several plans in one (`edge.store.postgres_commit`). A plan whose queries are `alone` runs each
as a transaction by itself, without BEGIN and COMMIT (two round trips fewer: a claim, an ack, a
COPY of arrivals); in a group, it runs inside the group's transaction like any other.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Any, NamedTuple, TypeVar

import psycopg

T = TypeVar("T")


class Query(NamedTuple):
    sql: str
    params: Any = None  # a sequence or mapping; with `many`, a list of them; with `copy`, the rows
    many: bool = False  # executemany
    copy: Sequence[str] | None = None  # COPY … FROM STDIN (FORMAT BINARY): the columns' types
    alone: bool = False  # a statement that is a transaction by itself (so are the plan's others)


class Result(NamedTuple):
    rows: list[tuple[Any, ...]]
    affected: int  # rows the statement changed (-1 when the driver cannot tell)


Step = Query | list[Query]
Plan = Generator[Step, Any, T]
BEGIN: Query = Query("BEGIN")
READ: Query = Query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")  # one snapshot throughout


class PlanError(RuntimeError):
    """A plan that breaks the rules above: a bug."""


# -- on an asynchronous connection ---------------------------------------------------------------


async def transact(
    connection: psycopg.AsyncConnection[Any], plan: Plan[T], *, read: bool = False
) -> T:
    """`plan` in a transaction of its own on `connection` (autocommit), committed; `read`: a
    read-only snapshot."""
    try:
        step = next(plan)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    while isinstance(step, Query) and step.alone:
        try:
            step = plan.send(await _one(connection, step))
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        _still_alone(plan, step)
    try:
        value = await finish(connection, plan, step, READ if read else BEGIN)
        await connection.execute(b"COMMIT")
    except BaseException:
        await rollback(connection)
        raise
    return value


async def finish(
    connection: psycopg.AsyncConnection[Any], plan: Plan[T], step: Step, begin: Query | None = None
) -> T:
    """The rest of `plan`, from its `step` already taken, inside the caller's transaction;
    `begin`: the statement that begins it, sent with the first step."""
    try:
        while True:
            reply = await _step(connection, step, begin)
            begin = None
            try:
                step = plan.send(reply)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
    finally:
        plan.close()


async def rollback(connection: psycopg.AsyncConnection[Any]) -> None:
    """Roll back what the connection began, if it still can (a lost one is dropped anyway)."""
    if not connection.closed and connection.info.transaction_status != IDLE:
        try:
            await connection.execute(b"ROLLBACK")
        except psycopg.Error:
            await connection.close()


async def _step(
    connection: psycopg.AsyncConnection[Any], step: Step, begin: Query | None = None
) -> Result | list[Result]:
    if begin is not None:
        if _copies(step):
            await _one(connection, begin)
        else:
            replies = await _step(connection, [begin, *_queries(step)])
            assert isinstance(replies, list)
            return replies[1] if isinstance(step, Query) else replies[1:]
    if isinstance(step, Query):
        return await _one(connection, step)
    if len(step) == 1:
        return [await _one(connection, step[0])]
    cursors = []
    async with connection.pipeline() as pipeline:
        for query in step:
            cursor = connection.cursor()
            cursors.append(cursor)
            if query.many:
                await cursor.executemany(query.sql, query.params)
            else:
                await cursor.execute(query.sql, query.params)
        await pipeline.sync()
    return [Result(await c.fetchall() if c.description else [], c.rowcount) for c in cursors]


async def _one(connection: psycopg.AsyncConnection[Any], query: Query) -> Result:
    async with connection.cursor() as cursor:
        if query.copy is not None:
            async with cursor.copy(query.sql) as copy:
                copy.set_types(query.copy)
                for row in query.params:
                    await copy.write_row(row)
        elif query.many:
            await cursor.executemany(query.sql, query.params)
        else:
            await cursor.execute(query.sql, query.params)
        return Result(await cursor.fetchall() if cursor.description else [], cursor.rowcount)


# -- on a synchronous connection (the same, without await) ---------------------------------------


def transact_sync(connection: psycopg.Connection[Any], plan: Plan[T], *, read: bool = False) -> T:
    try:
        step = next(plan)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    while isinstance(step, Query) and step.alone:
        try:
            step = plan.send(_one_sync(connection, step))
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        _still_alone(plan, step)
    try:
        value = _finish_sync(connection, plan, step, READ if read else BEGIN)
        connection.execute(b"COMMIT")
    except BaseException:
        if not connection.closed and connection.info.transaction_status != IDLE:
            try:
                connection.execute(b"ROLLBACK")
            except psycopg.Error:
                connection.close()
        raise
    return value


def _finish_sync(
    connection: psycopg.Connection[Any], plan: Plan[T], step: Step, begin: Query | None
) -> T:
    try:
        while True:
            reply = _step_sync(connection, step, begin)
            begin = None
            try:
                step = plan.send(reply)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
    finally:
        plan.close()


def _step_sync(
    connection: psycopg.Connection[Any], step: Step, begin: Query | None = None
) -> Result | list[Result]:
    if begin is not None:
        if _copies(step):
            _one_sync(connection, begin)
        else:
            replies = _step_sync(connection, [begin, *_queries(step)])
            assert isinstance(replies, list)
            return replies[1] if isinstance(step, Query) else replies[1:]
    if isinstance(step, Query):
        return _one_sync(connection, step)
    if len(step) == 1:
        return [_one_sync(connection, step[0])]
    cursors = []
    with connection.pipeline() as pipeline:
        for query in step:
            cursor = connection.cursor()
            cursors.append(cursor)
            if query.many:
                cursor.executemany(query.sql, query.params)
            else:
                cursor.execute(query.sql, query.params)
        pipeline.sync()
    return [Result(c.fetchall() if c.description else [], c.rowcount) for c in cursors]


def _one_sync(connection: psycopg.Connection[Any], query: Query) -> Result:
    with connection.cursor() as cursor:
        if query.copy is not None:
            with cursor.copy(query.sql) as copy:
                copy.set_types(query.copy)
                for row in query.params:
                    copy.write_row(row)
        elif query.many:
            cursor.executemany(query.sql, query.params)
        else:
            cursor.execute(query.sql, query.params)
        return Result(cursor.fetchall() if cursor.description else [], cursor.rowcount)


def _queries(step: Step) -> list[Query]:
    return [step] if isinstance(step, Query) else step


def _copies(step: Step) -> bool:
    """Whether `step` has a COPY, which cannot go in a pipeline."""
    return any(query.copy is not None for query in _queries(step))


def _still_alone(plan: Plan[Any], step: Step) -> None:
    """A plan that began with statements run alone yields no other kind."""
    if not (isinstance(step, Query) and step.alone):
        plan.close()
        raise PlanError("a plan went on after a statement run alone with one that is not")


IDLE = psycopg.pq.TransactionStatus.IDLE
