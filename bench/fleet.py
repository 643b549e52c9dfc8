"""A fleet's beacon ingest: one edge on SQLite, one edge on PostgreSQL, two edges on one
PostgreSQL database, each beside the bare durable endpoint on the same store.

    sqlite      `rokt-edge serve` (one worker) on a SQLite file; its durable endpoint: a bare
                Starlette endpoint storing each body with SQLiteStore.put_arrival before its 204
                (bench/ingest.py's)
    postgresql  the same on the local PostgreSQL (a schema of its own), with PostgresStore
    2 edges     two `rokt-edge serve` processes on different ports and one schema, the load
                split evenly across both (as many connections, and requests, to each)

Phases as bench/ingest.py's, from a load generator in a child process: saturation (C
connections, ingest.py's mix of page views and conversions), then, once the burst is processed
and delivered, a fixed rate (1,000/s, open loop) of conversions only ("Order Completed" with an
order id, revenue, currency and a click id), each of which is sent.

The edges are not in dry run: they send to a local stand-in for Rokt, a process that notes when
each event reached it (time.monotonic(), by source_message_id); the load generator notes when
each beacon was answered 2xx (the same clock: CLOCK_MONOTONIC is system-wide on Linux), which
gives the time from a beacon's 2xx to the upstream request carrying it. Rate limits off.

Printed for each: beacons/s at saturation and its ratio to the durable endpoint's; the rate
sustained with processing included (the burst's requests over the time until the last was
processed); p50/p99 at the fixed rate; 2xx to Rokt p50/p99, beside the most beacons seen waiting
to be processed and events waiting to be sent; CPU per beacon in each phase (everything done for
its requests until they were delivered) of the edges (every edge process and its children:
SQLite's writer) and, on PostgreSQL, of the database backends serving the edges' connections
(/proc, the pids from pg_stat_activity), beside the durable endpoint's backends' per arrival.
The load generator, the edges and PostgreSQL share this machine's cores. Without a reachable
PostgreSQL, SQLite only.

    python bench/fleet.py [--seconds 6] [--connections 32] [--rate 1000]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import secrets
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg

from bench.ingest import (
    DURABLE_APP,
    ROOT,
    cpu_seconds,
    drain,
    free_port,
    in_child,
    request_bytes,
    run_server,
    uvicorn,
)

POSTGRES = os.environ.get(
    "ROKT_EDGE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
DATABASE = "rokt_edge_test"  # the tests' database: each run a schema of its own
DURABLE_PG_APP = DURABLE_APP.replace(
    "from edge.store.sqlite import SQLiteStore", "from edge.store.postgres import PostgresStore"
).replace("SQLiteStore(", "PostgresStore(")
assert DURABLE_PG_APP.count("PostgresStore") == 2, "bench/ingest.py's DURABLE_APP has changed"
FIXED_RATE_FIRST = 10**7  # the fixed rate's message ids, apart from the burst's
MESSAGE_ID = re.compile(rb'"m": "([^"]+)"')

# Rokt's stand-in: answers 202 at once, keep-alive, and notes when each source_message_id first
# reached it; writes `id time` lines to the file named in argv when terminated.
UPSTREAM = r"""
import asyncio, re, signal, sys, time
SEEN = {}
ID = re.compile(rb'"source_message_id":"([^"]+)"')
LENGTH = re.compile(rb"content-length:\s*(\d+)")
OK = b"HTTP/1.1 202 Accepted\r\ncontent-length: 2\r\ncontent-type: application/json\r\n\r\n{}"

class Upstream(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport, self.buffer = transport, bytearray()

    def data_received(self, data):
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            found = LENGTH.search(bytes(self.buffer[:end]).lower())
            length = int(found.group(1)) if found else 0
            if len(self.buffer) < end + 4 + length:
                return
            now = time.monotonic()
            for mid in ID.findall(bytes(self.buffer[end + 4 : end + 4 + length])):
                SEEN.setdefault(mid.decode(), now)
            del self.buffer[: end + 4 + length]
            self.transport.write(OK)

async def main():
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Upstream, "127.0.0.1", int(sys.argv[1]), backlog=512)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    server.close()
    with open(sys.argv[2], "w") as out:
        out.writelines(f"{mid} {at}\n" for mid, at in SEEN.items())

asyncio.run(main())
"""


def conversion(port: int, n: int) -> bytes:
    """The fixed rate's request n: always a conversion (ingest.py's odd requests are), with
    its order id, revenue, currency and click id."""
    return request_bytes(port, FIXED_RATE_FIRST + 2 * n + 1)


def message_id(n: int) -> str:
    found = MESSAGE_ID.search(conversion(0, n))
    assert found is not None
    return found.group(1).decode()


# -- stores --------------------------------------------------------------------------------


@dataclass
class Store:
    """Where a configuration's servers keep their data: the edges' store, the durable
    endpoint's, and what is still waiting in the edges'."""

    kind: str  # "sqlite" or "postgresql"
    edge_url: str
    durable_url: str
    schemas: tuple[str, ...] = ()

    @classmethod
    @contextlib.contextmanager
    def made(cls, kind: str, scratch: Path, name: str) -> Iterator[Store]:
        if kind == "sqlite":
            yield cls(kind, f"sqlite:///{scratch}/{name}-edge.db", f"{scratch}/{name}-durable.db")
            return
        schemas = tuple(f"bench_fleet_{secrets.token_hex(4)}" for _ in ("edge", "durable"))
        with admin() as connection:
            for schema in schemas:
                connection.execute(f"CREATE SCHEMA {schema}")
        try:
            yield cls(kind, in_schema(schemas[0]), in_schema(schemas[1]), schemas)
        finally:
            with admin() as connection:
                for schema in schemas:
                    connection.execute(f"DROP SCHEMA {schema} CASCADE")

    def count(self, table: str) -> int:
        """Rows in one of the edges' tables, read beside them (a read-only SQLite connection,
        as `rokt-edge status` reads): asking the edges would add to what is measured."""
        if self.kind == "sqlite":
            path = self.edge_url.removeprefix("sqlite:///")
            with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
                return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
        with admin() as connection:
            row = connection.execute(f"SELECT count(*) FROM {self.schemas[0]}.{table}").fetchone()
            return int(row[0]) if row else 0

    def arrivals(self) -> int:
        """Beacons answered and not processed yet."""
        return self.count("arrivals")

    def unsettled(self) -> int:
        """Beacons not processed yet, and events not delivered yet (queued, retrying, in
        flight)."""
        return self.count("arrivals") + self.count("queue")


def database_url() -> str:
    return urlsplit(POSTGRES)._replace(path=f"/{DATABASE}").geturl()


def in_schema(schema: str) -> str:
    return f"{database_url()}?options={quote(f'-csearch_path={schema}')}"


@contextlib.contextmanager
def admin() -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url(), autocommit=True) as connection:
        yield connection


def postgres_unavailable() -> str | None:
    """None when the local PostgreSQL can be used (the tests' database made if missing, as the
    tests make it), else why not."""
    try:
        with psycopg.connect(POSTGRES, autocommit=True, connect_timeout=3) as connection:
            found = connection.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)
            ).fetchone()
            if found is None:
                with contextlib.suppress(psycopg.errors.DuplicateDatabase):
                    connection.execute(f"CREATE DATABASE {DATABASE}")
    except psycopg.Error as error:
        return str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
    return None


def process_tree(pid: int) -> set[int]:
    """A process and its children (SQLite's writer), by pid (Linux /proc)."""
    pids = {pid}
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            pids.update(int(child) for child in (task / "children").read_text().split())
    return pids


def backends_cpu(servers: list[int]) -> dict[int, float]:
    """CPU seconds so far of each PostgreSQL backend serving the stores these server processes
    opened (a PostgresStore names its connections `rokt-edge <pid>/<token>`), by backend pid."""
    pids = set().union(*(process_tree(pid) for pid in servers))
    with admin() as connection:
        rows = connection.execute(
            "SELECT pid, application_name FROM pg_stat_activity WHERE datname = %s",
            (DATABASE,),
        ).fetchall()
    found: dict[int, float] = {}
    for backend, name in rows:
        owner = name.removeprefix("rokt-edge ").split("/", 1)[0]
        if name.startswith("rokt-edge ") and owner.isdigit() and int(owner) in pids:
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{backend}/stat").read_text().rsplit(")", 1)[1].split()
                found[backend] = (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
    return found


def spent(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds the backends spent between two readings (one that started between them
    counts from 0; one that ended between them is not counted: the stores' connections live as
    long as their server)."""
    return sum(cpu - before.get(backend, 0.0) for backend, cpu in after.items())


@dataclass
class Reading:
    """CPU seconds so far of the edge processes (and their children), and of the database
    backends serving them."""

    pids: list[int]
    postgres: bool
    edges: float = 0.0
    backends: dict[int, float] | None = None

    def __post_init__(self) -> None:
        self.edges = sum(cpu_seconds(pid) for pid in self.pids)
        self.backends = backends_cpu(self.pids) if self.postgres else None

    def per_beacon(self, phase: dict[str, Any]) -> Reading:
        """Notes in `phase` the CPU µs a request spent since this reading; the next reading."""
        now = Reading(self.pids, self.postgres)
        phase["cpu_us"] = 1e6 * (now.edges - self.edges) / phase["requests"]
        if self.backends is not None and now.backends is not None:
            phase["db_cpu_us"] = 1e6 * spent(self.backends, now.backends) / phase["requests"]
        return now


@contextlib.contextmanager
def peaks(store: Store) -> Iterator[dict[str, int]]:
    """The most arrivals waiting to be processed, and events queued for Rokt, seen while the
    block runs (looked at 4 times a second, from a thread)."""
    found = {"arrivals_peak": 0, "queued_peak": 0}
    done = threading.Event()

    def look() -> None:
        while not done.wait(0.25):
            arrivals, queued = store.count("arrivals"), store.count("queue")
            found["arrivals_peak"] = max(found["arrivals_peak"], arrivals)
            found["queued_peak"] = max(found["queued_peak"], queued)

    looker = threading.Thread(target=look)
    looker.start()
    try:
        yield found
    finally:
        done.set()
        looker.join()


# -- one configuration ---------------------------------------------------------------------


def measure_durable(
    store: Store, args: argparse.Namespace, env: dict[str, str], scratch: str
) -> dict[str, Any]:
    """The durable endpoint at saturation (and, on PostgreSQL, its backends' CPU an arrival)."""
    app = "durable_pg:app" if store.kind == "postgresql" else "durable:app"
    port = free_port()
    server_env = {**env, "PYTHONPATH": f"{scratch}:{ROOT}", "BENCH_DATABASE": store.durable_url}
    server = run_server([*uvicorn(app), "--port", str(port)], port, server_env, scratch)
    try:
        before = backends_cpu([server.pid]) if store.kind == "postgresql" else {}
        burst = in_child([port], args, "saturation")
        if store.kind == "postgresql":
            burst["db_cpu_us"] = 1e6 * spent(before, backends_cpu([server.pid])) / burst["requests"]
        return burst
    finally:
        server.terminate()
        server.wait(timeout=30)


def measure_edges(
    store: Store, count: int, args: argparse.Namespace, env: dict[str, str], scratch: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    upstream_port = free_port()
    seen_file = Path(scratch, f"seen-{upstream_port}.txt")
    upstream = run_server(
        [sys.executable, "-c", UPSTREAM, str(upstream_port), str(seen_file)],
        upstream_port,
        env,
        scratch,
    )
    edge_env = {
        **env,
        "ROKT_EDGE_DATABASE_URL": store.edge_url,
        "ROKT_EDGE_API_KEY": "bench-key",
        "ROKT_EDGE_API_SECRET": "bench-secret",
        "ROKT_EDGE_ROKT_URL": f"http://127.0.0.1:{upstream_port}",
        "ROKT_EDGE_RATE_LIMIT": "0",
        "ROKT_EDGE_CLIENT_RATE_LIMIT": "0",  # one client sends everything here
        "ROKT_EDGE_BACKLOG_MAX_SECONDS": "3600",  # the burst is the measure: no load shedding
    }
    ports = [free_port() for _ in range(count)]
    servers: list[subprocess.Popen[bytes]] = []
    try:
        for port in ports:
            command = [sys.executable, "-m", "edge", "serve", "--port", str(port)]
            servers.append(run_server(command, port, edge_env, scratch))
        pids = [server.pid for server in servers]
        reading = Reading(pids, store.kind == "postgresql")
        burst = in_child(ports, args, "saturation")
        # As bench/ingest.py: the rate sustained, processing included, is the burst's requests
        # over the time until the last of them was processed.
        burst["drain_s"] = drain(store.arrivals)
        burst["sustained"] = burst["requests"] / (burst["elapsed"] + burst["drain_s"])
        # The fixed rate starts once the burst is delivered too, so that its 2xx-to-Rokt
        # latency is steady traffic's, not the burst's queue.
        burst["settled_s"] = burst["drain_s"] + drain(store.unsettled)
        reading = reading.per_beacon(burst)
        with peaks(store) as steady_peaks:
            steady = in_child(ports, args, "fixed rate", conversion)
        steady |= steady_peaks
        steady["drain_s"] = drain(store.arrivals)  # what the edges had not kept up with
        drain(store.unsettled)
        reading.per_beacon(steady)
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            server.wait(timeout=30)
        upstream.send_signal(signal.SIGTERM)
        upstream.wait(timeout=30)
    seen = dict(line.split() for line in seen_file.read_text().splitlines())
    answered: dict[int, float] = steady.pop("answered")
    delays = sorted(
        float(seen[mid]) - at for n, at in answered.items() if (mid := message_id(n)) in seen
    )
    steady["e2e_missing"] = len(answered) - len(delays)
    steady["e2e_p50_ms"] = 1000 * statistics.median(delays) if delays else float("nan")
    steady["e2e_p99_ms"] = 1000 * delays[int(len(delays) * 0.99) - 1] if delays else float("nan")
    return burst, steady


def report(
    name: str, durable: dict[str, Any], burst: dict[str, Any], steady: dict[str, Any], rate: float
) -> None:
    ratio = burst["per_second"] / durable["per_second"]
    cpu = f"edges {burst['cpu_us']:.0f} / {steady['cpu_us']:.0f}"
    if "db_cpu_us" in burst:
        cpu += (
            f"; database backends {burst['db_cpu_us']:.0f} / {steady['db_cpu_us']:.0f} (the "
            f"durable endpoint's: {durable['db_cpu_us']:.0f} an arrival)"
        )
    missing = steady["e2e_missing"]
    errors = burst["errors"] + steady["errors"] + durable["errors"]
    lines = [
        f"saturation {burst['per_second']:,.0f} beacons/s (p50 {burst['p50_ms']:.1f} ms, p99 "
        f"{burst['p99_ms']:.1f} ms), {ratio:.2f} of its durable endpoint's "
        f"{durable['per_second']:,.0f}/s; sustained {burst['sustained']:,.0f}/s (processed "
        f"{burst['drain_s']:.1f} s after the burst, delivered {burst['settled_s']:.1f} s after)",
        f"at {rate:,.0f} conversions/s: p50 {steady['p50_ms']:.1f} ms, p99 "
        f"{steady['p99_ms']:.1f} ms; 2xx to Rokt p50 {steady['e2e_p50_ms']:,.0f} ms, p99 "
        f"{steady['e2e_p99_ms']:,.0f} ms"
        + (f" ({missing} never reached it)" if missing else "")
        + f" (at most {steady['arrivals_peak']:,} beacons waited to be processed, "
        f"{steady['queued_peak']:,} events to be sent; processed {steady['drain_s']:.1f} s "
        "after the last beacon)",
        f"CPU µs a beacon, burst / fixed rate: {cpu}" + (f"; {errors} errors" if errors else ""),
    ]
    print(f"  {name:11} " + f"\n  {'':11} ".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rate", type=float, default=1000.0)
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROKT_EDGE_")}
    env["PYTHONPATH"] = str(ROOT)
    load_before = os.getloadavg()[0]
    unavailable = postgres_unavailable()
    configurations = [("sqlite", "sqlite", 1)]
    if unavailable is None:
        configurations += [("postgresql", "postgresql", 1), ("2 edges", "postgresql", 2)]
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        Path(scratch, "durable.py").write_text(DURABLE_APP)
        Path(scratch, "durable_pg.py").write_text(DURABLE_PG_APP)
        durable: dict[str, dict[str, Any]] = {}
        for name, kind, count in configurations:
            with Store.made(kind, Path(scratch), name.replace(" ", "_")) as store:
                if kind not in durable:
                    durable[kind] = measure_durable(store, args, env, scratch)
                results[name] = (durable[kind], *measure_edges(store, count, args, env, scratch))
    print(
        f"a fleet's beacon ingest: {args.connections} connections, {args.seconds:.0f} s per "
        f"phase, the edges sending to a local Rokt; load average {load_before:.1f} before the "
        f"run, {os.getloadavg()[0]:.1f} after"
    )
    print(
        f"  the load generator shares this machine's {os.cpu_count()} cores with the edges and "
        "PostgreSQL: every figure here is that of servers that had less than the whole machine"
    )
    if unavailable is not None:
        print(f"  PostgreSQL unreachable ({unavailable}): SQLite only")
    for name, (bare, burst, steady) in results.items():
        report(name, bare, burst, steady, args.rate)


if __name__ == "__main__":
    main()
