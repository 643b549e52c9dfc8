"""psycopg 3 beside asyncpg on the PostgreSQL store's two hot operations, in one run against the
same server (issue 21: which driver the PostgreSQL backend uses).

    arrivals   20,000 intake rows (a beacon's columns, a 300-byte body) inserted in groups of
               32, one transaction a group: what the web service's group commit writes
    claim      100 queued rows leased with UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP
               LOCKED LIMIT 100) RETURNING, then acknowledged (deleted): the sender's cycle,
               each one statement (its own transaction)

the arrivals written each way the driver allows: psycopg `executemany` (which pipelines),
psycopg with the transaction's BEGIN and COMMIT in the same pipeline (one round trip a group),
one INSERT over `unnest` of arrays (sent in binary), and a binary COPY (one statement: a
transaction by itself); asyncpg `executemany`, `unnest` and `copy_records_to_table`. Both
drivers async, on uvloop as the service runs; both with synchronous_commit on (the server's
default: what the store uses) and off (the driver's own cost shows). Prints µs a group and a
row, the CPU time this process spent (what the edge's event loop pays), and psycopg's best over
asyncpg's best.

    python bench/store_drivers.py [--rows N] [--group G] [--claims C] [--url ADMIN_URL]

asyncpg is a bench extra (`pip install asyncpg`); the admin URL defaults to
ROKT_EDGE_TEST_POSTGRES_URL or postgresql://postgres@127.0.0.1:5432/postgres, and the run
works in a database of its own, dropped at the end.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import psycopg
import uvloop

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DATABASE = "rokt_edge_bench_drivers"
ROUNDS = 3  # each figure is the best of this many runs (a shared machine's noise)

SCHEMA = """
CREATE TABLE arrivals (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, source text NOT NULL,
    received_at double precision NOT NULL, body bytea NOT NULL, kind text, ip text,
    user_agent text, gpc boolean NOT NULL, cookie_anonymous_id text, cookie_click_id text,
    cookie_click_seen_at bigint
);
CREATE TABLE queue (
    id bigint PRIMARY KEY, available_at double precision NOT NULL, lease_until double precision,
    owner text, body text NOT NULL
);
"""
COLUMNS = (
    "source, received_at, body, kind, ip, user_agent, gpc, cookie_anonymous_id,"
    " cookie_click_id, cookie_click_seen_at"
)
INSERT_PSYCOPG = f"INSERT INTO arrivals ({COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
INSERT_ASYNCPG = (
    f"INSERT INTO arrivals ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
)
UNNEST = (
    f"INSERT INTO arrivals ({COLUMNS}) SELECT * FROM unnest($1::text[], $2::float8[],"
    " $3::bytea[], $4::text[], $5::text[], $6::text[], $7::bool[], $8::text[], $9::text[],"
    " $10::bigint[])"
)
CLAIM = (  # the ids and the bodies back as one row each, as the store reads a claim
    "WITH claimed AS (UPDATE queue SET lease_until = $1, owner = 'bench' WHERE id IN ("
    " SELECT id FROM queue WHERE lease_until IS NULL AND available_at <= $2 ORDER BY id"
    " LIMIT $3 FOR UPDATE SKIP LOCKED) RETURNING id, body)"
    " SELECT string_agg(id::text, ',' ORDER BY id),"
    " convert_to(string_agg(body, ',' ORDER BY id), 'UTF8') FROM claimed"
)
COPY = f"COPY arrivals ({COLUMNS}) FROM STDIN (FORMAT BINARY)"
TYPES = ["text", "float8", "bytea", "text", "text", "text", "bool", "text", "text", "int8"]
ACK = "DELETE FROM queue WHERE id = ANY($1::bigint[])"


def rows(count: int) -> list[tuple[Any, ...]]:
    body = b'{"type":"track","event":"Order Completed","messageId":"%08d",' + b"x" * 240 + b"}"
    agent = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 Safari/605.1.15"
    return [
        ("beacon", 1.7e9 + n, body % n, None, "203.0.113.7", agent, False, f"anon-{n}",
         f"click-{n}", 1_699_999_000)
        for n in range(count)
    ]  # fmt: skip


def groups(items: list[tuple[Any, ...]], size: int) -> list[list[tuple[Any, ...]]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


def columns(group: list[tuple[Any, ...]]) -> list[list[Any]]:
    return [list(column) for column in zip(*group, strict=True)]


def pg(sql: str, mark: str = "%s") -> str:
    """asyncpg's $n placeholders as psycopg's (the statements above are written once); `mark`
    %b: parameters sent in binary, as the store sends its arrays."""
    for n in range(10, 0, -1):
        sql = sql.replace(f"${n}", mark)
    return sql


# -- the ways each driver writes a group of arrivals -------------------------------------------


async def psycopg_executemany(url: str, batches: list[list[tuple[Any, ...]]]) -> None:
    async with await psycopg.AsyncConnection.connect(url) as connection:
        for batch in batches:
            async with connection.transaction(), connection.cursor() as cursor:
                await cursor.executemany(INSERT_PSYCOPG, batch)


async def psycopg_pipeline(url: str, batches: list[list[tuple[Any, ...]]]) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as connection:
        for batch in batches:
            async with connection.pipeline() as pipeline, connection.cursor() as cursor:
                await cursor.execute("BEGIN")
                await cursor.executemany(INSERT_PSYCOPG, batch)
                await cursor.execute("COMMIT")
                await pipeline.sync()


async def psycopg_unnest(url: str, batches: list[list[tuple[Any, ...]]]) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as connection:
        for batch in batches:
            async with connection.pipeline() as pipeline:
                await connection.execute("BEGIN")
                await connection.execute(pg(UNNEST, "%b"), columns(batch))
                await connection.execute("COMMIT")
                await pipeline.sync()


async def psycopg_copy(url: str, batches: list[list[tuple[Any, ...]]]) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as connection:
        for batch in batches:
            async with connection.cursor() as cursor, cursor.copy(COPY) as copy:
                copy.set_types(TYPES)
                for row in batch:
                    await copy.write_row(row)


async def asyncpg_executemany(url: str, batches: list[list[tuple[Any, ...]]]) -> None:
    connection = await asyncpg.connect(url)
    try:
        for batch in batches:
            async with connection.transaction():
                await connection.executemany(INSERT_ASYNCPG, batch)
    finally:
        await connection.close()


async def asyncpg_unnest(url: str, batches: list[list[tuple[Any, ...]]]) -> None:
    connection = await asyncpg.connect(url)
    try:
        for batch in batches:
            async with connection.transaction():
                await connection.execute(UNNEST, *columns(batch))
    finally:
        await connection.close()


async def asyncpg_copy(url: str, batches: list[list[tuple[Any, ...]]]) -> None:
    connection = await asyncpg.connect(url)
    names = [name.strip() for name in COLUMNS.split(",")]
    try:
        for batch in batches:
            await connection.copy_records_to_table("arrivals", records=batch, columns=names)
    finally:
        await connection.close()


# -- a claim of 100 and its ack -----------------------------------------------------------------


async def psycopg_claims(url: str, claims: int, size: int) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as connection:
        for _ in range(claims):
            cursor = await connection.execute(pg(CLAIM), (2e9, 1.8e9, size))
            ids, _bodies = await cursor.fetchone() or ("", b"")
            await connection.execute(pg(ACK, "%b"), ([int(id) for id in ids.split(",")],))


async def asyncpg_claims(url: str, claims: int, size: int) -> None:
    connection = await asyncpg.connect(url)
    try:
        for _ in range(claims):
            ids, _bodies = await connection.fetchrow(CLAIM, 2e9, 1.8e9, size)
            await connection.execute(ACK, [int(id) for id in ids.split(",")])
    finally:
        await connection.close()


# -- the run ------------------------------------------------------------------------------------


async def fresh(admin: str) -> str:
    """The bench's database, empty; its URL."""
    async with await psycopg.AsyncConnection.connect(admin, autocommit=True) as connection:
        await connection.execute(f"DROP DATABASE IF EXISTS {DATABASE}")
        await connection.execute(f"CREATE DATABASE {DATABASE}")
    url = urlsplit(admin)._replace(path=f"/{DATABASE}").geturl()
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as connection:
        await connection.execute(SCHEMA)
    return url


async def reset(url: str, queued: int = 0) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as connection:
        await connection.execute("TRUNCATE arrivals, queue")
        if queued:
            await connection.execute(
                "INSERT INTO queue (id, available_at, body) SELECT n, 1.7e9,"
                " '{\"events\":[' || repeat('x', 500) || ']}' FROM generate_series(1, %s) n",
                (queued,),
            )
        await connection.execute("VACUUM ANALYZE arrivals")
        await connection.execute("VACUUM ANALYZE queue")


async def best(
    run: Callable[[], Awaitable[None]], prepare: Callable[[], Awaitable[None]]
) -> tuple[float, float]:
    """The best wall time of ROUNDS runs, each after `prepare`, and the best CPU time this
    process spent in them (the driver's own cost, which the edge's event loop pays)."""
    walls, cpus = [], []
    for _ in range(ROUNDS):
        await prepare()
        started, cpu = time.perf_counter(), time.process_time()
        await run()
        walls.append(time.perf_counter() - started)
        cpus.append(time.process_time() - cpu)
    return min(walls), min(cpus)


def load() -> str:
    try:
        return " ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "?"


async def main(admin: str, count: int, size: int, claims: int) -> None:
    url = await fresh(admin)
    batches = groups(rows(count), size)
    inserts: dict[str, Callable[[str, list[list[tuple[Any, ...]]]], Awaitable[None]]] = {
        "psycopg executemany": psycopg_executemany,
        "psycopg pipeline (BEGIN…COMMIT)": psycopg_pipeline,
        "psycopg unnest (binary), pipelined": psycopg_unnest,
        "psycopg COPY (binary), no BEGIN": psycopg_copy,
        "asyncpg executemany": asyncpg_executemany,
        "asyncpg unnest": asyncpg_unnest,
        "asyncpg copy_records_to_table": asyncpg_copy,
    }
    print(f"PostgreSQL {await server_version(url)}, load average {load()}; best of {ROUNDS} runs")
    print("µs: wall time (the commit's flush included), then this process's CPU time")
    for synchronous in ("on", "off"):
        await set_synchronous_commit(url, synchronous)
        print(
            f"arrivals: {count:,} rows in groups of {size}, one transaction a group"
            f" (synchronous_commit = {synchronous})"
        )
        figures: dict[str, tuple[float, float]] = {}
        for name, insert in inserts.items():
            figures[name] = wall, cpu = await best(
                lambda insert=insert: insert(url, batches), lambda: reset(url)
            )
            print(
                f"  {name:<36} {wall / len(batches) * 1e6:6.0f} µs a group"
                f" ({wall / count * 1e6:5.1f} a row), CPU {cpu / count * 1e6:5.1f} µs a row"
            )
        print(f"  psycopg's best / asyncpg's best: {ratio(figures)}")
    await set_synchronous_commit(url, "on")

    queued = claims * 100
    print(f"claim: {claims:,} claims of 100 from {queued:,} queued rows, each acked")
    cycle: dict[str, tuple[float, float]] = {}
    for name, run in (("psycopg", psycopg_claims), ("asyncpg", asyncpg_claims)):
        cycle[name] = wall, cpu = await best(
            lambda run=run: run(url, claims, 100), lambda: reset(url, queued)
        )
        print(
            f"  {name:<36} {wall / claims * 1e6:6.0f} µs a claim + ack,"
            f" CPU {cpu / claims * 1e6:5.0f} µs"
        )
    print(f"  psycopg / asyncpg: {ratio(cycle)}")
    async with await psycopg.AsyncConnection.connect(admin, autocommit=True) as connection:
        await connection.execute(f"DROP DATABASE IF EXISTS {DATABASE}")


def ratio(figures: dict[str, tuple[float, float]]) -> str:
    """psycopg's best over asyncpg's best, in wall and in CPU time."""
    found = []
    for index, what in ((0, "wall"), (1, "CPU")):
        ours = min(value[index] for name, value in figures.items() if name.startswith("psycopg"))
        theirs = min(value[index] for name, value in figures.items() if name.startswith("asyncpg"))
        found.append(f"{ours / theirs:.2f} ({what})")
    return ", ".join(found)


async def set_synchronous_commit(url: str, value: str) -> None:
    """For the connections opened from now on (the bench's own database only)."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as connection:
        await connection.execute(f"ALTER DATABASE {DATABASE} SET synchronous_commit = {value}")


async def server_version(url: str) -> str:
    async with await psycopg.AsyncConnection.connect(url) as connection:
        cursor = await connection.execute("SHOW server_version")
        row = await cursor.fetchone()
    return str(row[0]) if row else "?"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--group", type=int, default=32)
    parser.add_argument("--claims", type=int, default=200)
    parser.add_argument("--url", default=os.environ.get("ROKT_EDGE_TEST_POSTGRES_URL", ADMIN_URL))
    arguments = parser.parse_args()
    uvloop.run(main(arguments.url, arguments.rows, arguments.group, arguments.claims))
