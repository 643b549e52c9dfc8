"""The edge service's shared parts, built by the app's lifespan and reached by every request as
`request.app.state.edge`: settings, the store, the pipeline, the cookie jar, the metrics, the
sender, processing and the intake limits; and `commit_arrival`, the one way a source's request
is stored.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Final

from edge.capture.cookies import CookieJar
from edge.capture.ratelimit import RateLimiter
from edge.capture.stitch import arrival_keys
from edge.delivery.sender import Sender
from edge.events import Event
from edge.metrics import Exposition, Metrics
from edge.pipeline.pipeline import Pipeline
from edge.processing import Processor, Readings, Watcher
from edge.settings import Settings
from edge.source import Sources
from edge.store import Store
from edge.store.values import Arrival

# Requests with a wrong write key an address may make (a burst, then this many a second).
KEY_FAILURE_BURST: Final = 20
KEY_FAILURE_RATE: Final = 1.0


class Edge:
    """What the endpoints share; `request.app.state.edge`."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        pipeline: Pipeline,
        cookies: CookieJar,
        metrics: Metrics,
        sender: Sender,
        sources: Sources,
        recent: Watcher,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.store = store
        self.pipeline = pipeline
        self.cookies = cookies
        self.metrics = metrics
        self.sender = sender
        self.sources = sources
        self.recent = recent  # told every event processing takes (the demo panel's)
        self.clock = clock
        self.exposition = Exposition(metrics, settings.metrics_interval)  # what /metrics serves
        self.delivery: asyncio.Task[None] | None = None
        self.processor: Processor | None = None
        self.processing: asyncio.Task[None] | None = None
        self.arriving = 0  # requests waiting for their arrival's write (edge.processing)
        self.readings = Readings(sources)  # intake's reading of each stored request
        rate = settings.client_rate_limit
        self.limiter = RateLimiter(rate, settings.client_rate_burst) if rate > 0 else None
        # Requests with a wrong write key, per address: refused before their body is read
        self.key_failures = RateLimiter(KEY_FAILURE_RATE, KEY_FAILURE_BURST)

    def wake(self) -> None:
        """Arrivals and items may be free to take (a dead process's were freed): processing and
        delivery look now rather than at their next poll."""
        if self.processor is not None:
            self.processor.wake()
        self.sender.notify()

    async def commit_arrival(
        self, arrival: Arrival, events: Sequence[Event], started: float
    ) -> None:
        """Store a request's arrival durably (raises StoreError), count its events and wake the
        processor. `started`: when the request arrived (time.perf_counter)."""
        self.arriving += 1
        arrival = arrival._replace(keys=arrival_keys(events, arrival.cookie_anonymous_id))
        # Kept before the write: processing may take the arrival as soon as it is committed.
        self.readings.keep(arrival, list(events))
        try:
            await self.store.put_arrival(arrival)
        except BaseException:
            self.readings.forget(arrival)
            raise
        finally:
            self.arriving -= 1
        for event in events:
            self.metrics.count_received(arrival.source, event.type)
        self.metrics.observe_ingest(arrival.source, time.perf_counter() - started)
        if self.processor is not None:
            self.processor.notify()
