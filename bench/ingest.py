"""Beacon ingest: events/s and latency through `rokt-edge serve`, beside a bare endpoint.

Three servers run under the same uvicorn (one worker, one process each, on loopback):

    edge      `rokt-edge serve` in dry run: each beacon is validated and durably written
              (SQLite, synchronous=FULL, group commit) before its 200, then enriched, mapped
              and put in the outbox by the edge's processing loop
    ceiling   a bare Starlette endpoint that answers 204 to the same request
    durable   the same endpoint, storing the body with the edge's store before its 204: the
              durable write alone, the most that an endpoint which writes before answering can
              reach (the issue's goal, 0.5 of the ceiling, measured against what makes it unmet)

The load comes from another process (this script's child) over keep-alive HTTP/1.1 connections:

    saturation   C connections each sending the next request as soon as the last is answered:
                 the most requests per second, and their p50/p99 latency
    fixed rate   1,000 requests/s spread evenly (open loop: latency counts from when a request
                 was due, so a slow server cannot hide queueing), p50/p99; it starts once the
                 edge has processed the burst before (the time that took is printed)

Each request carries one event as the snippet sends it (its short form: message id, time, the
page, the click id): a conversion (`Order Completed`) half the time, a page view the other half.
Prints each server's figures and the ratios, and the rate the edge sustains (processing included).

    python bench/ingest.py [--seconds 8] [--connections 32]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120"
Request = Callable[[int, int], bytes]  # (port, n) -> the bytes of request n

BARE_APP = """
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

async def beacon(request):
    await request.body()
    return Response(status_code=204)

app = Starlette(routes=[Route("/e", beacon, methods=["POST"])])
"""

# The bare endpoint plus the durable write alone: the body stored as an arrival by the edge's own
# store (the same group commit, synchronous=FULL) before the 204. What any endpoint that writes
# before it answers can reach here, whatever else it does.
DURABLE_APP = """
import contextlib, os, time
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route
from edge.store.values import Arrival
from edge.store.sqlite import SQLiteStore

async def beacon(request):
    body = await request.body()
    await request.app.state.store.put_arrival(Arrival("beacon", time.time(), body))
    return Response(status_code=204)

@contextlib.asynccontextmanager
async def lifespan(app):
    app.state.store = SQLiteStore(os.environ["BENCH_DATABASE"])
    yield
    app.state.store.close()

app = Starlette(routes=[Route("/e", beacon, methods=["POST"])], lifespan=lifespan)
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def request_bytes(port: int, n: int) -> bytes:
    """An event as the snippet sends it (its short form, `edge.capture.short_form`): ids, time,
    the page, the click id it keeps."""
    event: dict[str, Any] = {
        "m": f"{n:08d}-0000-4000-8000-000000000000", "s": 1795435200000 + n, "a": f"anon-{n}",
        "l": f"https://shop.example/p/{n}", "r": "https://shop.example/", "h": "Product",
        "c": f"click-{n}",
    }  # fmt: skip
    if n % 2:
        event |= {
            "t": "track", "n": "Order Completed", "u": f"user-{n}",
            "p": {"order_id": f"o-{n}", "revenue": 19.5, "currency": "USD"},
        }  # fmt: skip
    else:
        event |= {"t": "page", "n": "Product"}
    body = json.dumps(event).encode()
    head = (
        f"POST /e HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: text/plain\r\n"
        f"User-Agent: {USER_AGENT}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes) -> int:
    writer.write(data)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    if length:
        await reader.readexactly(length)
    return status


async def saturate(
    ports: Sequence[int], connections: int, seconds: float, request: Request = request_bytes
) -> dict[str, Any]:
    """C connections, spread evenly over the ports, each sending the next request as soon as
    the last is answered."""
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    counter = iter(range(10**9))

    async def connection(port: int) -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while time.perf_counter() < deadline:
            data = request(port, next(counter))
            started = time.perf_counter()
            status = await exchange(reader, writer, data)
            latencies.append(time.perf_counter() - started)
            errors += status >= 300 and status != 204
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection(ports[i % len(ports)]) for i in range(connections)))
    elapsed = time.perf_counter() - started
    return summary(latencies, elapsed, errors)


async def fixed_rate(
    ports: Sequence[int],
    rate: float,
    seconds: float,
    connections: int,
    request: Request = request_bytes,
) -> dict[str, Any]:
    """Open loop: request n is due at start + n/rate, sent to ports[n % len(ports)] (the
    connections spread evenly over the ports); latency counts from when it was due. `answered`:
    when each request n was answered 2xx, by time.monotonic() (on Linux, one clock for every
    process)."""
    total = int(rate * seconds)
    queues: list[asyncio.Queue[tuple[int, float]]] = [asyncio.Queue() for _ in ports]
    latencies: list[float] = []
    answered: dict[int, float] = {}
    errors = 0

    async def connection(port: int, due_queue: asyncio.Queue[tuple[int, float]]) -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while True:
            n, due = await due_queue.get()
            if n < 0:
                break
            status = await exchange(reader, writer, request(port, n))
            latencies.append(time.perf_counter() - due)
            if 200 <= status < 300:
                answered[n] = time.monotonic()
            errors += status >= 300 and status != 204
        writer.close()

    workers = [
        asyncio.create_task(connection(ports[i % len(ports)], queues[i % len(ports)]))
        for i in range(connections)
    ]
    start = time.perf_counter() + 0.05
    for n in range(total):
        due = start + n / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        queues[n % len(ports)].put_nowait((n, due))
    for i in range(connections):
        queues[i % len(ports)].put_nowait((-1, 0.0))
    await asyncio.gather(*workers)
    result = summary(latencies, time.perf_counter() - start, errors)
    result["answered"] = answered
    return result


def summary(latencies: list[float], elapsed: float, errors: int) -> dict[str, Any]:
    ordered = sorted(latencies)
    return {
        "requests": len(ordered),
        "per_second": len(ordered) / elapsed,
        "elapsed": elapsed,
        "p50_ms": 1000 * statistics.median(ordered),
        "p99_ms": 1000 * ordered[int(len(ordered) * 0.99) - 1],
        "errors": errors,
    }


def load(
    ports: Sequence[int], args: argparse.Namespace, phase: str, request: Request, out: Any
) -> None:
    """Runs in its own process, so the load generator never shares the server's core."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    if phase == "saturation":
        phase_run = saturate(ports, args.connections, args.seconds, request)
    else:
        phase_run = fixed_rate(ports, args.rate, args.seconds, args.connections, request)
    out.send(asyncio.run(phase_run))


def in_child(
    ports: Sequence[int], args: argparse.Namespace, phase: str, request: Request = request_bytes
) -> dict[str, Any]:
    receiver, sender = multiprocessing.Pipe(duplex=False)
    worker = multiprocessing.Process(target=load, args=(ports, args, phase, request, sender))
    worker.start()
    result: dict[str, Any] = receiver.recv()
    worker.join()
    return result


def waiting_arrivals(database: Path | None) -> int:
    """Requests the edge has answered but not processed yet, read from its store's file (a
    read-only connection beside the writer, as `rokt-edge status` reads): asking the server
    would add work to what is measured. None: a server without arrivals (the bare ones)."""
    if database is None:
        return 0
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as store:
        return int(store.execute("SELECT count(*) FROM arrivals").fetchone()[0])


def drain(waiting: Callable[[], int]) -> float:
    """Seconds until every answered request has been processed (the burst's backlog): until
    `waiting()` (the requests answered, not processed yet) is 0."""
    started = time.perf_counter()
    while waiting() > 0 and time.perf_counter() - started < 300:
        time.sleep(0.05)
    return time.perf_counter() - started


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads, and of its child processes (the
    store's writer), live or ended (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(field) for field in fields[11:15])  # utime, stime, cutime, cstime
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            with contextlib.suppress(OSError):
                child_fields = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
                ticks += int(child_fields[11]) + int(child_fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def measure(
    port: int, pid: int, args: argparse.Namespace, database: Path | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    cpu_before = cpu_seconds(pid)
    saturation = in_child([port], args, "saturation")
    # The edge answers a burst at intake's pace and processes it just after: the fixed rate is
    # measured once that backlog is done (how long it took is printed), as steady traffic.
    saturation["drain_s"] = drain(lambda: waiting_arrivals(database))
    # The rate the server keeps up with, processing included: the burst's requests over the
    # time until the last of them was processed.
    saturation["sustained"] = saturation["requests"] / (
        saturation["elapsed"] + saturation["drain_s"]
    )
    steady = in_child([port], args, "fixed rate")
    saturation["drain_s"] += drain(lambda: waiting_arrivals(database))
    # CPU per request counts both phases' requests, and everything done for them (processing
    # included): the server's whole cost of one beacon, a figure that other work on a shared
    # machine disturbs far less than throughput.
    requests = saturation["requests"] + steady["requests"]
    saturation["cpu_us"] = 1e6 * (cpu_seconds(pid) - cpu_before) / requests
    return saturation, steady


def wait_up(port: int, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError("the server exited at start-up")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the server did not start")


def uvicorn(app: str) -> list[str]:
    return [sys.executable, "-m", "uvicorn", app, "--no-access-log", "--log-level", "warning"]


def run_server(command: list[str], port: int, env: dict[str, str], cwd: str) -> Any:
    server = subprocess.Popen(command, env=env, cwd=cwd, stderr=subprocess.DEVNULL)
    wait_up(port, server)
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rate", type=float, default=1000.0)
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROKT_EDGE_")}
    env["PYTHONPATH"] = str(ROOT)
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        Path(scratch, "bare.py").write_text(BARE_APP)
        Path(scratch, "durable.py").write_text(DURABLE_APP)
        edge_env = {
            **env,
            "ROKT_EDGE_DATABASE_URL": f"sqlite:///{scratch}/edge.db",
            "ROKT_EDGE_CLIENT_RATE_LIMIT": "0",  # one client sends everything here
            # the burst is the measure here: no load shedding however far processing falls behind
            "ROKT_EDGE_BACKLOG_MAX_SECONDS": "3600",
        }
        for name, command, server_env in (
            ("ceiling", uvicorn("bare:app"), {**env, "PYTHONPATH": scratch}),
            ("durable", uvicorn("durable:app"),
             {**env, "PYTHONPATH": f"{scratch}:{ROOT}", "BENCH_DATABASE": f"{scratch}/durable.db"}),
            ("edge", [sys.executable, "-m", "edge", "serve"], edge_env),
        ):  # fmt: skip
            port = free_port()
            server = run_server([*command, "--port", str(port)], port, server_env, scratch)
            try:
                database = Path(scratch, "edge.db") if name == "edge" else None
                results[name] = measure(port, server.pid, args, database)
            finally:
                server.terminate()
                server.wait(timeout=30)
    print(f"beacon ingest, one uvicorn worker each, {args.connections} connections, "
          f"{args.seconds:.0f} s per phase")  # fmt: skip
    for name in ("ceiling", "durable", "edge"):
        saturation, steady = results[name]
        print(
            f"  {name:8} saturation {saturation['per_second']:8,.0f} req/s "
            f"(p50 {saturation['p50_ms']:5.1f} ms, p99 {saturation['p99_ms']:6.1f} ms, "
            f"errors {saturation['errors']}); at {args.rate:,.0f}/s: "
            f"p50 {steady['p50_ms']:5.1f} ms, p99 {steady['p99_ms']:6.1f} ms; "
            f"server CPU {saturation['cpu_us']:5.0f} µs/request"
            + (f"; backlog processed in {saturation['drain_s']:.1f} s" if name == "edge" else "")
        )
    edge_burst = results["edge"][0]
    print(f"  edge     sustained {edge_burst['sustained']:8,.0f} req/s (the burst's requests over "
          "the time until the last was processed: intake and processing together)")  # fmt: skip
    rate = {name: results[name][0]["per_second"] for name in results}
    cpu_ratio = results["ceiling"][0]["cpu_us"] / results["edge"][0]["cpu_us"]
    print(f"  ratio    {rate['edge'] / rate['ceiling']:.2f} of the ceiling's requests/s (goal >= "
          f"0.5), {cpu_ratio:.2f} by CPU per request; edge p99 at {args.rate:,.0f}/s: "
          f"{results['edge'][1]['p99_ms']:.1f} ms (goal < 25 ms)")  # fmt: skip
    print(
        f"  durable  {rate['durable'] / rate['ceiling']:.2f} of the ceiling's requests/s: the "
        f"durable write alone; the edge makes {rate['edge'] / rate['durable']:.2f} of that"
    )


if __name__ == "__main__":
    main()
