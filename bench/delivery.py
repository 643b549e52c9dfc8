"""Drain rate of the sender: 50,000 queued conversions to a local upstream answering 202 at once,
beside the ceiling, a minimal httpx loop posting the same pre-built request bodies with as many
requests in flight (`client.post`), measured in the same run. A third figure posts the same
bodies the way the sender posts them (a request built from a URL and headers worked out once,
`client.send`, the upstream's cookies ignored: about a tenth less of the event loop's time per
request than `client.post`), so that the sender's own work is told apart from the HTTP client's.

Each conversion is one batch, so the rate limit (batches/s, Rokt's default 270) is turned off
here (ROKT_EDGE_RATE_LIMIT=0); everything else is the default settings. Goal: at least 0.8 of
the ceiling, and at least 27,000 events/s (Rokt's 270 batches/s x 100 events per batch).

Beside the rates, CPU per event: the event loop's thread, the whole process, and (the sender) the
store's writer process. On a small, shared machine the rates swing from run to run; the CPU
figures say where the time went.

    python bench/delivery.py [--events N] [--rounds R]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from edge.delivery.sender import IgnoredCookies, Sender
from edge.pipeline.pipeline import Outbound
from edge.settings import Settings, load_settings
from edge.store.sqlite import SQLiteStore
from edge.store.values import Intake, ItemId
from edge.upstreams import upstream_for
from edge.upstreams.base import Mapped
from edge.upstreams.capi import contract as capi

HERE = Path(__file__).resolve().parent


def conversions(count: int) -> list[Outbound]:
    now_ms = int(time.time() * 1000)
    items = []
    for n in range(count):
        mapped = Mapped(
            mapping="Send",
            message_id=f"bench-{n:07d}",
            timestamp_ms=now_ms - n,
            conversion_type="Order Completed",
            confirmation_ref=f"order-{n}",
            amount=25.0 + n % 100,
            currency="USD",
            email_sha256=f"{n:064x}",
            click_id=f"rtid-{n:012d}",
            ip="203.0.113.7",
            user_agent="Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)",
        )
        body = capi.build_batch(mapped)
        items.append(
            Outbound(
                f"Send\n{mapped.message_id}", "Send", mapped.message_id, mapped.timestamp_ms, body
            )
        )
    return items


def settings_for(port: int, database: Path) -> Settings:
    return load_settings(
        {
            "ROKT_EDGE_API_KEY": "bench-key",
            "ROKT_EDGE_API_SECRET": "bench-secret",
            "ROKT_EDGE_ROKT_URL": f"http://127.0.0.1:{port}/s2s/v2",
            "ROKT_EDGE_DATABASE_URL": f"sqlite:///{database}",
            "ROKT_EDGE_RATE_LIMIT": "0",
        }
    )


class Run(NamedTuple):
    rate: float  # events/s
    loop_cpu: float  # µs per event, the event loop's thread
    process_cpu: float  # µs per event, every thread of this process
    writer_cpu: float = 0.0  # µs per event, the store's writer process (the sender's)


class Timer:
    """Wall time and CPU time (this thread, and the whole process) over a stretch of work."""

    def __enter__(self) -> Timer:
        self.wall, self.thread, self.process = (
            time.perf_counter(), time.thread_time(), time.process_time()
        )  # fmt: skip
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.thread = time.thread_time() - self.thread
        self.process = time.process_time() - self.process

    def run(self, events: int, writer_seconds: float = 0.0) -> Run:
        per_event = 1e6 / events
        return Run(
            events / self.wall,
            self.thread * per_event,
            self.process * per_event,
            writer_seconds * per_event,
        )


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of another process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def ceiling(settings: Settings, items: list[Outbound], *, as_sender: bool = False) -> Run:
    """The same request bodies, pre-built, posted by `max_in_flight` bare httpx loops: with
    `client.post` (the ceiling), or `as_sender` posts them (`CapiWire.send`: a request built
    from a URL and headers worked out once, `client.send`, the upstream's cookies ignored)."""
    requests = [(r.path, capi.encode(r.body)) for r in capi.pack([i.body for i in items])]
    pending = iter(requests)
    limits = httpx.Limits(max_connections=settings.max_in_flight)
    async with httpx.AsyncClient(
        base_url=settings.upstream_url,
        auth=("bench-key", "bench-secret"),
        limits=limits,
        headers={"Content-Type": "application/json"},
        timeout=30,
        cookies=IgnoredCookies() if as_sender else None,
    ) as client:
        urls = {path: httpx.URL(f"{client.base_url}{path.lstrip('/')}") for path, _ in requests}
        extensions = {"timeout": client.timeout.as_dict()}

        async def post(path: str, content: bytes) -> httpx.Response:
            if not as_sender:
                return await client.post(path, content=content)
            request = httpx.Request(
                "POST", urls[path], headers=client.headers, content=content, extensions=extensions
            )
            return await client.send(request)

        async def loop() -> None:
            for path, content in pending:
                response = await post(path, content)
                assert response.status_code == 202

        with Timer() as timer:
            await asyncio.gather(*(loop() for _ in range(settings.max_in_flight)))
        return timer.run(len(items))


class AckedStore(SQLiteStore):
    """The SQLite store, telling the moment the last of `expected` items is acknowledged: the
    drain is timed to it, as the ceiling is to its last answer (a poll would add up to its
    interval, and wake the sender's loop meanwhile)."""

    def __init__(self, path: Path, expected: int) -> None:
        super().__init__(path)
        self.acked = 0
        self.expected = expected
        self.all_acked = asyncio.Event()

    async def ack(self, ids: Sequence[ItemId], *, dry_run: bool = False) -> None:
        await super().ack(ids, dry_run=dry_run)
        self.acked += len(ids)
        if self.acked >= self.expected:
            self.all_acked.set()


async def drain(settings: Settings, items: list[Outbound], database: Path) -> Run:
    """Queued items, delivered by the sender from the SQLite outbox: claim, pack, post, ack."""
    store = AckedStore(database, len(items))
    for start in range(0, len(items), 1000):
        await store.put(Intake(outbound=items[start : start + 1000]))
    sender = Sender(settings, store, upstream_for(settings).wire)
    task = asyncio.create_task(sender.run())
    # Timed from when the sender is running (its client built), as the ceiling's loop is.
    while not sender.running:
        await asyncio.sleep(0)
    writer = store.writer_pid
    assert writer is not None
    writer_before = cpu_seconds(writer)
    with Timer() as timer:
        await store.all_acked.wait()
    writer_seconds = cpu_seconds(writer) - writer_before
    sender.stop()
    await task
    stats = await store.stats()
    store.close()
    assert stats.delivered == len(items), stats
    assert stats.pending + stats.in_flight == 0, stats
    return timer.run(len(items), writer_seconds)


async def main(count: int, rounds: int) -> None:
    upstream = subprocess.Popen(
        [sys.executable, str(HERE / "fast_upstream.py")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert upstream.stdout is not None
        port = int(upstream.stdout.readline())
        items = conversions(count)
        # The harness holds every prepared item (a million objects) for the whole run; frozen,
        # the garbage collector stops walking them, which otherwise landed a full collection of
        # a few hundred ms in one round or another (the second, in practice) of either side.
        gc.freeze()
        ceilings: list[Run] = []
        leaner: list[Run] = []
        senders: list[Run] = []
        with tempfile.TemporaryDirectory() as directory:
            for n in range(rounds):
                database = Path(directory) / f"bench-{n}.db"
                settings = settings_for(port, database)
                # Each goes first in every other round, so that neither side is the one that
                # always runs on a machine warmed (or slowed) by the other.
                if n % 2:
                    senders.append(await drain(settings, items, database))
                    leaner.append(await ceiling(settings, items, as_sender=True))
                    ceilings.append(await ceiling(settings, items))
                else:
                    ceilings.append(await ceiling(settings, items))
                    leaner.append(await ceiling(settings, items, as_sender=True))
                    senders.append(await drain(settings, items, database))
                bare, lean, sent = ceilings[-1].rate, leaner[-1].rate, senders[-1].rate
                print(
                    f"round {n + 1}: ceiling {bare:,.0f}, as the sender posts {lean:,.0f}, "
                    f"sender {sent:,.0f} ({sent / bare:.2f}; {sent / lean:.2f})"
                )
        best_ceiling = max(ceilings)  # by rate, the first field
        best_sender = max(senders)
        met = "met" if best_sender.rate >= 27_000 else "NOT met"
        print(f"events: {count:,} (one conversion per batch), best of {rounds} rounds")
        print(f"requests in flight: {settings.max_in_flight} (both), rate limit off")
        print(
            f"ceiling (bare httpx, pre-built bodies): {best_ceiling.rate:>10,.0f} events/s"
            f"   CPU/event: loop {best_ceiling.loop_cpu:.1f} µs,"
            f" process {best_ceiling.process_cpu:.1f} µs"
        )
        best_leaner = max(leaner)
        print(
            f"the same, posted as the sender posts:   {best_leaner.rate:>10,.0f} events/s"
            f"   CPU/event: loop {best_leaner.loop_cpu:.1f} µs,"
            f" process {best_leaner.process_cpu:.1f} µs"
        )
        print(
            f"sender (outbox -> upstream, acked):     {best_sender.rate:>10,.0f} events/s"
            f"   CPU/event: loop {best_sender.loop_cpu:.1f} µs,"
            f" process {best_sender.process_cpu:.1f} µs,"
            f" store writer {best_sender.writer_cpu:.1f} µs"
        )
        print(f"ratio: {best_sender.rate / best_ceiling.rate:.3f} (goal >= 0.800)")
        print(
            f"ratio to the bodies posted as the sender posts them: "
            f"{best_sender.rate / best_leaner.rate:.3f} (the sender's own work, HTTP aside)"
        )
        print(f"goal >= 27,000 events/s: {met}")
    finally:
        upstream.kill()
        upstream.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    asyncio.run(main(args.events, args.rounds))
