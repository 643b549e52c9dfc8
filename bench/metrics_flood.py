"""Beacons a second with and without a /metrics flood, in the same run: does scraping starve
intake?

`rokt-edge serve` (dry run, one process, on loopback) takes beacons from C keep-alive
connections as fast as it answers them (bench/ingest.py's saturation phase), alone and beside a
flood of GET /metrics at R requests a second (open loop over a few connections, like a
misconfigured scraper or an attacker on an open /metrics). Phases alternate, alone then flooded,
each pair twice, with the edge's backlog processed before each; the figure is the ratio of
beacons a second flooded to alone. The load comes from child processes, so it never shares the
server's core with this script.

Before /metrics was served from a rendering made every few seconds, each scrape read the store
in a thread: the issue measured 224 scrapes/s cutting beacons from 10,092/s to 363/s. `--root`
runs another checkout's edge (e.g. `git archive <commit> | tar -x -C /tmp/old`) for that figure.

    python bench/metrics_flood.py [--seconds 8] [--connections 32] [--rate 200] [--root DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.ingest import drain, exchange, free_port, saturate, wait_up

ROOT = Path(__file__).resolve().parent.parent
SCRAPE = b"GET /metrics HTTP/1.1\r\nHost: bench\r\n\r\n"
FLOOD_CONNECTIONS = 8


async def flood(port: int, rate: float, seconds: float) -> dict[str, Any]:
    """GET /metrics at `rate` a second (request i due at start + i/rate) for `seconds`."""
    due: asyncio.Queue[float] = asyncio.Queue()
    latencies: list[float] = []

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while (when := await due.get()) >= 0:
            await exchange(reader, writer, SCRAPE)
            latencies.append(time.perf_counter() - when)
        writer.close()

    workers = [asyncio.create_task(connection()) for _ in range(FLOOD_CONNECTIONS)]
    start = time.perf_counter()
    for n in range(int(rate * seconds)):
        delay = start + n / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        due.put_nowait(start + n / rate)
    for _ in workers:
        due.put_nowait(-1.0)
    await asyncio.gather(*workers)
    elapsed = time.perf_counter() - start
    return {"per_second": len(latencies) / elapsed, "p50_ms": 1000 * statistics.median(latencies)}


def child(job: str, port: int, args: argparse.Namespace, out: Any) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    if job == "beacons":
        out.send(asyncio.run(saturate(port, args.connections, args.seconds)))
    else:  # the flood starts before the beacons and ends after them
        out.send(asyncio.run(flood(port, args.rate, args.seconds + 1.0)))


def start(job: str, port: int, args: argparse.Namespace) -> tuple[Any, Any]:
    receiver, sender = multiprocessing.Pipe(duplex=False)
    process = multiprocessing.Process(target=child, args=(job, port, args, sender))
    process.start()
    return process, receiver


def phase(port: int, args: argparse.Namespace, flooded: bool) -> dict[str, Any]:
    drain(port)  # the backlog of the phase before, processed: each phase starts alike
    scraping = start("flood", port, args) if flooded else None
    if scraping:
        time.sleep(0.5)
    beacons, results = start("beacons", port, args)
    result: dict[str, Any] = results.recv()
    beacons.join()
    if scraping:
        result["flood"] = scraping[1].recv()
        scraping[0].join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rate", type=float, default=200.0, help="scrapes a second")
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout whose edge runs")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROKT_EDGE_")}
    alone: list[dict[str, Any]] = []
    flooded: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as scratch:
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "edge", "serve", "--port", str(port)],
            env={**env, "PYTHONPATH": str(args.root.resolve()),
                 "ROKT_EDGE_DATABASE_URL": f"sqlite:///{scratch}/edge.db",
                 "ROKT_EDGE_CLIENT_RATE_LIMIT": "0"},  # one client sends everything here
            cwd=scratch, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            wait_up(port, server)
            for _ in range(2):
                alone.append(phase(port, args, flooded=False))
                flooded.append(phase(port, args, flooded=True))
        finally:
            server.terminate()
            server.wait(timeout=30)
    quiet = sum(r["per_second"] for r in alone) / len(alone)
    noisy = sum(r["per_second"] for r in flooded) / len(flooded)
    print(
        f"/metrics flood ({args.root}): beacons a second from {args.connections} connections, "
        f"{args.seconds:.0f} s a phase, alone and beside GET /metrics at {args.rate:.0f}/s"
    )
    print("  alone      " + "  ".join(f"{r['per_second']:7,.0f}" for r in alone)
          + f"  beacons/s (errors {sum(r['errors'] for r in alone)})")  # fmt: skip
    print("  flooded    " + "  ".join(f"{r['per_second']:7,.0f}" for r in flooded)
          + f"  beacons/s (errors {sum(r['errors'] for r in flooded)}); scrapes answered "
          + ", ".join(f"{r['flood']['per_second']:.0f}/s (p50 {r['flood']['p50_ms']:.1f} ms)"
                      for r in flooded))  # fmt: skip
    print(f"  ratio      {noisy / quiet:.2f} of the beacons a second alone, with the flood")


if __name__ == "__main__":
    main()
