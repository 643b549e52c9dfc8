"""Prometheus metrics, in a registry of their own that the service exposes at `/metrics`.

Counters count what this process did (delivered, dead-lettered, skipped, upstream responses);
gauges describe the store as it is when rendered (queue depth, oldest pending age, dead letters
waiting for a replay), read by a collector so that every process sharing the store agrees.
Rendering reads the store synchronously, so `Exposition` renders in a thread every few seconds
and a scrape serves its latest text: however often `/metrics` is asked, the store is read once
per interval (bench/metrics_flood.py; docs/performance.md#metrics-under-a-scrape-flood).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator
from functools import lru_cache
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from edge.store import Store
from edge.store.errors import StoreError
from edge.store.liveness import SILENT_SECONDS
from edge.store.values import Conversion, ConversionShare

log = logging.getLogger("rokt_edge.metrics")

PREFIX: Final = "rokt_edge"
INGEST_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_NUMBERS = re.compile(r"\d[\d,.]*")


@lru_cache(maxsize=1024)
def reason_label(reason: str) -> str:
    """A bounded label for a free-text reason: its words before any ':' detail, numbers as N."""
    head = reason.split(":", 1)[0].strip()
    return _NUMBERS.sub("N", head)[:60] or "unknown"


class Metrics:
    def __init__(self, store: Store | None = None, clock: Callable[[], float] = time.time) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.delivered = Counter(
            f"{PREFIX}_delivered",
            "Items delivered upstream (dry_run=true: recorded instead of sent).",
            ["dry_run"],
            registry=self.registry,
        )
        self.dead = Counter(
            f"{PREFIX}_dead_lettered",
            "Items dead-lettered, by reason (rejected upstream, expired).",
            ["reason"],
            registry=self.registry,
        )
        self.skipped = Counter(
            f"{PREFIX}_skipped",
            "Events that produced nothing to send, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.upstream_responses = Counter(
            f"{PREFIX}_upstream_responses",
            "Upstream responses by HTTP status ('timeout' or 'connection' when none came, "
            "'auth' when the Event API's token endpoint gave no token).",
            ["status"],
            registry=self.registry,
        )
        self.received = Counter(
            f"{PREFIX}_received",
            "Events received, by source (beacon, api, analytics.js) and type (track, page, ...).",
            ["source", "type"],
            registry=self.registry,
        )
        self.conversions = Counter(
            f"{PREFIX}_conversions",
            "Conversions put in the outbox, by source (beacon, api, analytics.js, import), "
            "whether they carry a click id and whether they carry an email (yes/no).",
            ["source", "click_id", "email"],
            registry=self.registry,
        )
        self.queued = Counter(
            f"{PREFIX}_queued",
            "Upstream-ready items put in the outbox.",
            registry=self.registry,
        )
        self.ingest_seconds = Histogram(
            f"{PREFIX}_ingest_seconds",
            "Time from a request's arrival to its durable write, by source.",
            ["source"],
            buckets=INGEST_BUCKETS,
            registry=self.registry,
        )
        self.paused = Gauge(
            f"{PREFIX}_delivery_paused",
            "1 while delivery is paused because the upstream rejects the credentials.",
            registry=self.registry,
        )
        if store is not None:
            self.registry.register(StoreCollector(store, clock))

        # Label children looked up once: `labels()` costs more than the increment itself, and
        # intake counts on every request. Label values are bounded (sources, types, reasons).
        self._received_child = lru_cache(maxsize=256)(
            lambda source, kind: self.received.labels(source=source, type=kind)
        )
        self._skipped_child = lru_cache(maxsize=1024)(
            lambda reason: self.skipped.labels(reason=reason_label(reason))
        )
        self._conversions_child = lru_cache(maxsize=64)(
            lambda source, click, email: self.conversions.labels(
                source=source, click_id=_yes(click), email=_yes(email)
            )
        )
        self._ingest_child = lru_cache(maxsize=16)(
            lambda source: self.ingest_seconds.labels(source=source)
        )

    def count_received(self, source: str, kind: str) -> None:
        self._received_child(source, kind).inc()

    def observe_ingest(self, source: str, seconds: float) -> None:
        self._ingest_child(source).observe(seconds)

    def count_skipped(self, reasons: Iterable[str]) -> None:
        for reason in reasons:
            self._skipped_child(reason).inc()

    def count_conversions(self, conversions: Iterable[Conversion]) -> None:
        for each in conversions:
            self._conversions_child(each.source, each.click_id, each.email).inc()

    def render(self) -> bytes:
        """The Prometheus text format."""
        return generate_latest(self.registry)


class Exposition:
    """The text `/metrics` serves: rendered by `run()` every `interval` seconds, off the event
    loop; a scrape reads `text` and costs nothing else."""

    def __init__(self, metrics: Metrics, interval: float) -> None:
        self.metrics = metrics
        self.interval = interval
        self.text = b""

    async def refresh(self) -> None:
        self.text = await asyncio.to_thread(self.metrics.render)

    async def run(self) -> None:
        """Render again every `interval` seconds (the first rendering is `refresh()`'s)."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.refresh()
            except Exception:  # a collector's bug must not end the refreshes
                log.exception("rendering the metrics failed; the last rendering is served")


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


class StoreCollector(Collector):
    """Gauges read from the store at each scrape."""

    def __init__(self, store: Store, clock: Callable[[], float]) -> None:
        self.store = store
        self.clock = clock

    def _age(self, name: str, documentation: str, since: float | None) -> Metric:
        """A gauge of how long ago `since` was (0 when there is nothing to be old)."""
        age = GaugeMetricFamily(f"{PREFIX}_{name}", documentation)
        age.add_metric([], 0.0 if since is None else max(self.clock() - since, 0.0))
        return age

    def describe(self) -> Iterable[Metric]:
        return []  # described at collect time only: describing must not touch the store

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(f"{PREFIX}_store_up", "1 when the store answered this scrape.")
        try:
            stats = self.store.stats_sync()
        except StoreError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        arrivals = GaugeMetricFamily(
            f"{PREFIX}_arrivals_waiting",
            "Intake requests stored and answered but not processed into the outbox yet.",
        )
        arrivals.add_metric([], stats.arrivals)
        yield arrivals
        yield self._age(
            "arrivals_oldest_age_seconds",
            "Age of the oldest request not processed yet (0 when none waits).",
            stats.oldest_arrival,
        )
        items = GaugeMetricFamily(
            f"{PREFIX}_outbox_items", "Outbox items by state.", labels=["state"]
        )
        items.add_metric(["pending"], stats.pending - stats.retrying)
        items.add_metric(["retrying"], stats.retrying)
        items.add_metric(["in_flight"], stats.in_flight)
        yield items
        yield self._age(
            "outbox_oldest_pending_age_seconds",
            "Age of the oldest item not yet delivered (0 when the outbox is empty).",
            stats.oldest_pending,
        )
        dead = GaugeMetricFamily(
            f"{PREFIX}_dead_letters",
            "Dead letters waiting for a replay, by reason.",
            labels=["reason"],
        )
        for reason, count in sorted(stats.dead.items()):
            dead.add_metric([reason], count)
        yield dead
        processes = GaugeMetricFamily(
            f"{PREFIX}_store_processes",
            "Processes on the store (edges, deliver commands): alive (beat within "
            f"{SILENT_SECONDS:g} s) or silent (dead; their leases are freed).",
            labels=["state"],
        )
        alive = sum(self.clock() - owner.seen_at < SILENT_SECONDS for owner in stats.owners)
        processes.add_metric(["alive"], alive)
        processes.add_metric(["silent"], len(stats.owners) - alive)
        yield processes
        yield from _attribution(stats.conversions)


def _attribution(shares: Iterable[ConversionShare]) -> Iterator[Metric]:
    """The share of recent conversions sent with a click id and with an email, by source, from
    the store's counts (every process sharing the store agrees; a restart forgets nothing)."""
    labels = ["source", "window"]
    recent = GaugeMetricFamily(
        f"{PREFIX}_recent_conversions",
        "Conversions put in the outbox over the window (1h, 24h), by source.",
        labels=labels,
    )
    click = GaugeMetricFamily(
        f"{PREFIX}_conversions_click_id_share",
        "Share (0-1) of the window's conversions that carry a click id, by source.",
        labels=labels,
    )
    email = GaugeMetricFamily(
        f"{PREFIX}_conversions_email_share",
        "Share (0-1) of the window's conversions that carry an email, by source.",
        labels=labels,
    )
    for share in shares:
        key = [share.source, share.window]
        recent.add_metric(key, share.conversions)
        if share.conversions:
            click.add_metric(key, share.with_click_id / share.conversions)
            email.add_metric(key, share.with_email / share.conversions)
    yield from (recent, click, email)
