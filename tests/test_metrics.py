"""Metrics: counters of what this process did, gauges read from the store when rendered, and
/metrics serving the latest rendering."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from edge.metrics import Metrics, reason_label
from edge.settings import Settings
from edge.store.sqlite import SQLiteStore
from edge.store.values import Intake, Stats
from tests.live import LiveEdge
from tests.outbound import conversions


def test_the_registry_is_not_the_global_one() -> None:
    first, second = Metrics(), Metrics()
    first.delivered.labels(dry_run="false").inc(3)
    assert b'rokt_edge_delivered_total{dry_run="false"} 3.0' in first.render()
    assert b'rokt_edge_delivered_total{dry_run="false"}' not in second.render()


def test_queue_gauges_come_from_the_store(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "edge.db", clock=lambda: 1000.0)
    asyncio.run(store.put(Intake(outbound=conversions(3))))
    metrics = Metrics(store, clock=lambda: 1060.0)

    text = metrics.render().decode()
    store.close()

    assert 'rokt_edge_outbox_items{state="pending"} 3.0' in text
    assert "rokt_edge_outbox_oldest_pending_age_seconds 60.0" in text
    assert "rokt_edge_store_up 1.0" in text


def test_the_processes_on_the_store_are_counted_alive_or_silent(tmp_path: Path) -> None:
    # given two edges on one store: one beat a second ago, the other a minute ago
    alive = SQLiteStore(tmp_path / "edge.db", clock=lambda: 1059.0)
    silent = SQLiteStore(tmp_path / "edge.db", clock=lambda: 1000.0)
    asyncio.run(alive.heartbeat())
    asyncio.run(silent.heartbeat())
    text = Metrics(alive, clock=lambda: 1060.0).render().decode()
    alive.close()
    silent.close()

    assert 'rokt_edge_store_processes{state="alive"} 1.0' in text
    assert 'rokt_edge_store_processes{state="silent"} 1.0' in text


def test_a_store_that_cannot_answer_shows_as_down(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "edge.db")
    metrics = Metrics(store)
    store.close()

    assert b"rokt_edge_store_up 0.0" in metrics.render()


def test_skipped_reasons_become_bounded_labels() -> None:
    metrics = Metrics()
    metrics.count_skipped(
        [
            "not triggered: no mapping's trigger matches this event",
            "the batch is 140,001 bytes, over the 131,072-byte limit",
            "the batch is 150,000 bytes, over the 131,072-byte limit",
        ]
    )
    text = metrics.render().decode()
    assert 'rokt_edge_skipped_total{reason="not triggered"} 1.0' in text
    assert (
        'rokt_edge_skipped_total{reason="the batch is N bytes, over the N-byte limit"} 2.0' in text
    )
    assert reason_label("") == "unknown"


class CountingStore(SQLiteStore):
    """A real store that counts how often its statistics are read."""

    reads = 0

    def stats_sync(self) -> Stats:
        self.reads += 1
        return super().stats_sync()


def test_a_flood_of_scrapes_never_reads_the_store(tmp_path: Path) -> None:
    # Given an edge that renders its metrics once an hour (once, at start, in this test)
    store = CountingStore(tmp_path / "edge.db")
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'edge.db'}", metrics_interval=3600)
    with LiveEdge(settings, store=store) as live, httpx.Client() as client:
        # When /metrics is asked 200 times
        scrapes = [client.get(live.url + "/metrics") for _ in range(200)]
    store.close()
    # Then every scrape got the same rendering, and the store was read for that one only
    assert {scrape.status_code for scrape in scrapes} == {200}
    assert len({scrape.text for scrape in scrapes}) == 1
    assert "rokt_edge_store_up 1.0" in scrapes[0].text
    assert store.reads == 1
