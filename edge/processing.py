"""Processing: what intake stored (arrivals) becomes outbox items, skip records and identity links.

    beacon, tracking API ──put_arrival──▶ arrivals ──Processor──▶ enrichment / stitching, the
    (validate, answer)     (durable first)           (in order)    pipeline ─▶ settle: outbox,
                                                                   skipped, identities; the
                                                                   arrivals deleted (one
                                                                   transaction)

Arrivals are processed in the order they came, a slice at a time, and their events one by one
(`edge.capture.attribution`), each seeing what the events before it taught (`IdentityView`). A
slice is leased to this process (`edge.store.arrivals`): processes sharing a store take disjoint
arrivals, a visitor's in order, and a dead one's are freed once it is known dead
(`edge.store.owners`) or its lease expired.
Intake keeps priority (`pause_for_intake`) until the oldest arrival has waited `MAX_LAG`; the
backlog is bounded (`shed`); the events intake read are kept for processing (`Readings`). An
arrival, which holds personal data unhashed, is deleted only by the transaction that stores what
it produced (`Store.settle`), so a crash loses nothing.

Why intake does not map events itself, the priority rule, the privacy of arrivals, load shedding
and restarts: docs/architecture.md#processing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Sequence
from typing import Final, NamedTuple, Protocol

from edge.capture.attribution import (
    PROCESSING_FAILED,
    SERVER,
    Attribution,
    Carrier,
    IdentityView,
)
from edge.capture.cookies import Visitor
from edge.delivery.sender import Sender
from edge.events import Event
from edge.intake import Collected
from edge.metrics import Metrics
from edge.pipeline.pipeline import Outcome, Pipeline, Skipped
from edge.settings import Settings
from edge.source import Sources
from edge.store import Store
from edge.store.arrivals import LEASE_SECONDS
from edge.store.errors import StoreError
from edge.store.values import DUPLICATE, Arrival, StoredArrival

log = logging.getLogger("rokt_edge.processing")

# Arrivals per transaction at most. Each slice waits for its settle's round trip to the writer
# (the loop idles meanwhile), so a backlog drains faster in fewer, larger slices: 64 against 16
# drained a burst in 19-25% less time at 8-10% less CPU a beacon (bench/ingest.py, interleaved).
SLICE: Final = 64
SLICE_SECONDS: Final = 0.004  # and about this much work: a request waits no longer for it
BUSY_REQUESTS: Final = 8  # requests waiting for their arrival's write: intake is busy
BUSY_SHARE: Final = 0.1  # of the loop's time processing takes while intake saturates it
MAX_LAG: Final = 30.0  # seconds the oldest arrival may wait before processing stops yielding
POLL_SECONDS: Final = 1.0  # arrivals left by another process or an earlier run
SWEEP_SECONDS: Final = LEASE_SECONDS / 2  # arrivals a dead process held are freed this often
RETRY_SECONDS: Final = 1.0  # after the store failed
READINGS_KEPT: Final = 8192  # requests whose reading is kept (`Readings`): ~20 MB at most


class Watcher(Protocol):
    """Told each event processing takes, and where it came from (the demo panel's `Recent`)."""

    def add(self, source: str, event: Event) -> None: ...


class Host(Protocol):
    """What processing takes from the service (`edge.service.Edge`)."""

    settings: Settings
    store: Store
    pipeline: Pipeline
    metrics: Metrics
    sender: Sender
    sources: Sources
    readings: Readings
    recent: Watcher
    arriving: int  # requests waiting for their arrival's write

    def clock(self) -> float: ...


def pause_for_intake(spent: float, arriving: int, active: bool, lag: float) -> float:
    """Seconds to leave the loop to intake after a slice that took `spent` seconds, when
    `arriving` requests wait for their arrival's write, requests came during the slice
    (`active`), and the slice's oldest arrival had waited `lag` seconds."""
    if lag >= MAX_LAG:
        return 0.0
    if arriving >= BUSY_REQUESTS:
        return spent * (1 / BUSY_SHARE - 1)
    if active:  # a request takes several turns of the loop: leave it a slice's time for them
        return spent
    return 0.0


def shed(waiting: int, age: float | None, max_requests: int, max_seconds: float) -> bool:
    """Whether intake refuses requests (503, Retry-After) rather than grow the backlog: more
    than `max_requests` arrivals wait, or the oldest has waited `max_seconds` (processing has
    fallen behind for good: the requests would hold raw personal data ever longer)."""
    return waiting >= max_requests or (age is not None and age >= max_seconds)


def carrier(arrival: Arrival, sources: Sources) -> Carrier:
    """What an arrival's request said about the visitor: a browser's (the beacon, analytics.js)
    is believed, a server's is not (`edge.capture.attribution`)."""
    if not sources[arrival.source].browser:
        return SERVER
    visitor = Visitor(
        arrival.cookie_anonymous_id, arrival.cookie_click_id, arrival.cookie_click_seen_at
    )
    return Carrier(True, arrival.ip, arrival.user_agent, arrival.gpc, visitor)


class _ReadingKey(NamedTuple):
    """What reading an arrival depends on."""

    source: str
    kind: str | None
    received_at: float
    body: bytes


def _reading_key(arrival: Arrival) -> _ReadingKey:
    return _ReadingKey(arrival.source, arrival.kind, arrival.received_at, arrival.body)


class Readings:
    """The events intake read from the requests it stored, kept for processing to take rather
    than read each stored body again (the JSON, the short form, validation: a third of
    processing's work, measured). A reading is kept under everything reading depends on (the
    source, the route, the arrival time and the body), so what processing takes is exactly
    what reading the stored arrival again gives. At most `limit`: an arrival whose reading is
    not here (past the limit in a burst, left by an earlier run, stored by another process) is
    read again.

    Full, it keeps the oldest: processing takes arrivals oldest first, so those are the ones it
    needs next, and in a burst the newest wait their turn to be read again. Only a reading older
    than any processing would still take (`2 * MAX_LAG`: its arrival was processed by another
    process, or failed) makes room."""

    def __init__(self, sources: Sources, limit: int = READINGS_KEPT) -> None:
        self.sources = sources
        self.limit = limit
        self._kept: dict[_ReadingKey, list[Event]] = {}

    def keep(self, arrival: Arrival, events: list[Event]) -> None:
        if len(self._kept) >= self.limit:
            oldest = next(iter(self._kept))
            if arrival.received_at - oldest.received_at < 2 * MAX_LAG:
                return
            del self._kept[oldest]
        self._kept[_reading_key(arrival)] = events

    def forget(self, arrival: Arrival) -> None:
        self._kept.pop(_reading_key(arrival), None)

    def take(self, arrival: Arrival) -> list[Event]:
        """The arrival's events: intake's reading if kept, else read again."""
        kept = self._kept.pop(_reading_key(arrival), None)
        return kept if kept is not None else self.sources.read(arrival)

    def __len__(self) -> int:
        return len(self._kept)


class Processor:
    """The task that processes arrivals; the web app's lifespan owns it."""

    def __init__(self, edge: Host) -> None:
        self.edge = edge
        self.processed = 0  # arrivals settled by this process
        self.waiting = 0  # arrivals intake announced and not settled yet
        self.oldest: float | None = None  # when the oldest arrival waiting came (last look)
        self._arrived = 0  # arrivals intake announced (`notify`)
        self._wake = asyncio.Event()
        self._stopping = False

    def notify(self) -> None:
        """Intake stored an arrival."""
        self._arrived += 1
        self.waiting += 1
        self._wake.set()

    def wake(self) -> None:
        """Arrivals may be free to take (a dead process's leases were freed): look now."""
        self._wake.set()

    def overloaded(self, now: float) -> bool:
        """Whether intake must refuse requests for now (`shed`)."""
        settings = self.edge.settings
        age = None if self.oldest is None else now - self.oldest
        return shed(self.waiting, age, settings.backlog_max_requests, settings.backlog_max_seconds)

    def stop(self) -> None:
        """Finish the slice in hand, give back what of it is not settled, then return."""
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        held: list[int] = []  # the last slice taken, leased to this process until settled
        swept_at = float("-inf")
        while not self._stopping:
            if time.monotonic() - swept_at >= SWEEP_SECONDS:
                swept_at = time.monotonic()
                await self._sweep()
            self._wake.clear()  # before looking: an arrival stored after the look wakes the wait
            try:
                batch = await self.edge.store.arrivals(SLICE, LEASE_SECONDS)
            except StoreError as failure:
                log.error("processing: cannot read arrivals: %s", failure)
                await self._wait(RETRY_SECONDS)
                continue
            held = [stored.id for stored in batch]
            self.oldest = batch[0].arrival.received_at if batch else None
            if not batch:
                self.waiting = 0  # none waits, whatever was announced
                await self._wait(POLL_SECONDS)
                continue
            started, arrived_before = time.perf_counter(), self._arrived
            try:
                await self.process(batch)
            except StoreError as failure:
                log.error("processing: the store could not write (will retry): %s", failure)
                await self._wait(RETRY_SECONDS)
                continue
            spent = time.perf_counter() - started
            lag = self.edge.clock() - batch[0].arrival.received_at
            await self._yield_to_intake(spent, lag, arrived_before)
        # What of the last slice was not settled goes back for the next start, in its place.
        with contextlib.suppress(StoreError):
            await self.edge.store.release_arrivals(held)

    async def _sweep(self) -> None:
        """Free the arrivals whose lease expired: a process that held them died or hung."""
        try:
            swept = await self.edge.store.sweep_arrivals()
        except StoreError as failure:
            log.error("processing: cannot sweep expired leases: %s", failure)
            return
        if swept:
            log.warning("processing: %d arrival(s) whose lease expired are taken again", swept)

    async def process(self, batch: Sequence[StoredArrival]) -> None:
        """Process a slice of arrivals and settle them in one transaction. A store failure is
        raised (the slice is tried again later); any other failure is a bug or data no check
        foresaw: the slice is processed again one arrival at a time, and an arrival that still
        fails has its events recorded as skipped (`PROCESSING_FAILED`) so the rest go on."""
        try:
            await self._process(batch)
        except StoreError:
            raise
        except Exception:
            if len(batch) > 1:
                for stored in batch:
                    await self.process([stored])
                return
            log.exception("processing: arrival %s failed; its events are skipped", batch[0].id)
            await self._give_up(batch[0])

    async def _give_up(self, stored: StoredArrival) -> None:
        collected = Collected()
        try:
            events = self.edge.sources.read(stored.arrival)
        except Exception:
            log.exception("processing: arrival %s cannot even be read again", stored.id)
            events = []
        for event in events:
            collected.skip(event, PROCESSING_FAILED)
        if not events:  # not even its events could be read: the request is counted as one
            collected.skipped.append(Skipped(f"arrival-{stored.id}", PROCESSING_FAILED))
        await self.edge.store.settle([stored.id], collected.intake())
        self.processed += 1
        self.waiting = max(0, self.waiting - 1)
        self.edge.metrics.count_skipped(item.reason for item in collected.skipped)

    async def _process(self, batch: Sequence[StoredArrival]) -> None:
        edge = self.edge
        readings = [edge.readings.take(stored.arrival) for stored in batch]
        view = IdentityView(edge.store.identities)
        deadline = time.perf_counter() + SLICE_SECONDS
        done, collected, _ = await attribute(
            batch, readings, edge.pipeline, view, edge.sources, watch=edge.recent,
            deadline=deadline,
        )  # fmt: skip
        for stored, events in zip(batch[done:], readings[done:], strict=True):
            edge.readings.keep(stored.arrival, events)  # read already: kept for that slice
        result = await edge.store.settle([stored.id for stored in batch[:done]], collected.intake())
        self.processed += done
        self.waiting = max(0, self.waiting - done)
        # The oldest still waiting, as far as this slice knows (the next look tells for sure)
        self.oldest = batch[done].arrival.received_at if done < len(batch) else None
        metrics = edge.metrics
        metrics.count_skipped(item.reason for item in collected.skipped)
        metrics.count_skipped([DUPLICATE] * result.deduplicated)
        metrics.queued.inc(result.stored)  # new items only: not replays, not duplicates
        metrics.count_conversions(result.conversions)
        if collected.outbound:
            edge.sender.notify()

    async def _yield_to_intake(self, spent: float, lag: float, arrived_before: int) -> None:
        """Let requests waiting in the loop go first; see the module docstring."""
        active = self._arrived != arrived_before
        await asyncio.sleep(pause_for_intake(spent, self.edge.arriving, active, lag))

    async def _wait(self, seconds: float) -> None:
        if self._stopping:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)


class Attributed(NamedTuple):
    done: int  # arrivals attributed: the slice's first `done`
    collected: Collected  # what they produced, for one `settle`
    outcomes: list[list[Outcome]]  # per event of those arrivals, in order


async def attribute(
    batch: Sequence[StoredArrival],
    readings: Sequence[list[Event]],
    pipeline: Pipeline,
    view: IdentityView | None,
    sources: Sources,
    *,
    watch: Watcher | None = None,
    deadline: float = math.inf,
) -> Attributed:
    """The policy around the pipeline, one function for every source: each arrival's events
    (`readings`), in order, through `Attribution.add` (privacy and bots, enrichment or
    stitching, the pipeline, identity links), what the source may be believed about taken from
    its registration (`carrier`); de-duplication follows when the result is settled. Arrivals
    are taken whole until `deadline` (time.perf_counter) has passed. `view`: None for a dry
    run, which reads no identity store."""
    attributions = [
        Attribution(pipeline, view, stored.arrival.source, carrier(stored.arrival, sources),
                    stored.arrival.received_at)
        for stored in batch
    ]  # fmt: skip
    if view is not None and batch:
        # The ids the slice's events will ask about, looked up in one call rather than one per
        # event (the window is judged per event: this asks for what the oldest could use).
        window = pipeline.settings.attribution_window_days * 86400.0
        since = batch[0].arrival.received_at - window
        wanted = zip(attributions, readings, strict=True)
        await view.prefetch((key for a, events in wanted for key in a.lookup_keys(events)), since)
    collected = Collected()
    outcomes: list[list[Outcome]] = []
    done = 0
    for stored, events, attribution in zip(batch, readings, attributions, strict=True):
        for event in events:
            if watch is not None:
                watch.add(stored.arrival.source, event)  # what it was, for the demo panel
            outcomes.append(await attribution.add(event))
        collected.absorb(attribution)
        done += 1
        if time.perf_counter() > deadline:  # the rest wait for the next slice, in order
            break
    return Attributed(done, collected, outcomes)
