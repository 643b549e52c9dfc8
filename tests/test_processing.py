"""Processing: arrivals become outbox items in the order they came, after any restart."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge.capture.attribution import PROCESSING_FAILED, IdentityView
from edge.events import iso_ms
from edge.pipeline import fields
from edge.processing import (
    BUSY_REQUESTS,
    BUSY_SHARE,
    MAX_LAG,
    Readings,
    pause_for_intake,
)
from edge.settings import Settings
from edge.source import Sources
from edge.sources import SOURCES
from edge.store.sqlite import SQLiteStore
from edge.store.values import Arrival, Identity, IdentityUpdate
from tests.fake_capi import FakeCapi
from tests.live import LiveEdge, wait_for

NOW = 1_700_000_000.0
# A minute ago, as an event's time: within the upstream's 30-day data-age limit whenever run.
RECENTLY = iso_ms(round((time.time() - 60) * 1000))
CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120.0.0.0"


def body_of(*events: dict[str, Any]) -> bytes:
    """A request body as the beacon and /v1/batch take it."""
    return json.dumps({"batch": list(events)}).encode()


def delivered(fake: FakeCapi) -> list[dict[str, Any]]:
    return [batch for request in fake.requests() for batch in request.accepted]


def left_behind(path: Path, *arrivals: Arrival) -> None:
    """A store holding acknowledged requests that no process has handled yet: the edge that
    answered them was killed before processing them."""
    store = SQLiteStore(path)

    async def put() -> None:
        for arrival in arrivals:
            await store.put_arrival(arrival)

    try:
        asyncio.run(put())
    finally:
        store.close()


def edge_on(path: Path, fake: FakeCapi) -> LiveEdge:
    settings = Settings(
        api_key=fake.api_key, api_secret=fake.api_secret, rokt_url=fake.url,
        database_url=f"sqlite:///{path}",
    )  # fmt: skip
    return LiveEdge(settings)


# -- the order of arrivals ---------------------------------------------------------------------


def test_arrivals_left_by_an_earlier_run_are_processed_in_order_at_start(
    tmp_path: Path, fake: FakeCapi
) -> None:
    # given a store holding two acknowledged requests that no process has handled yet (the
    # edge was killed after answering them): the browser's identify, which links the landing's
    # click to the user, and right behind it the backend's order for that user
    path = tmp_path / "edge.db"
    identify = {"type": "identify", "anonymousId": "A", "userId": "U", "messageId": "m-1",
                "timestamp": RECENTLY,
                "integrations": {"Rokt Conversions API": {"rtid": "CLICK-1"}}}  # fmt: skip
    order = {"type": "track", "event": "Order Completed", "userId": "U", "messageId": "m-2",
             "timestamp": RECENTLY,
             "properties": {"order_id": "o-1", "revenue": 42, "currency": "USD"}}  # fmt: skip
    received = time.time()
    left_behind(
        path,
        Arrival("beacon", received, body_of(identify), ip="198.51.100.7", user_agent=CHROME),
        Arrival("api", received, body_of(order)),
    )
    # when the edge starts again
    with edge_on(path, fake) as live:
        wait_for(lambda: len(delivered(fake)) == 1)
        live.processed()
    # then the order went to Rokt with the click the identify had just linked to the user (both
    # were processed in one slice, the identify first), and the browser's IP and user agent
    [batch] = delivered(fake)
    assert batch["integration_attributes"]["1277"]["passbackconversiontrackingid"] == "CLICK-1"
    assert batch["ip"] == "198.51.100.7"
    assert batch["device_info"]["http_header_user_agent"] == CHROME


def test_an_arrival_that_cannot_be_read_is_skipped_and_the_rest_go_on(
    tmp_path: Path, fake: FakeCapi
) -> None:
    # given, among waiting arrivals, one whose body cannot be read at all (a corrupt row)
    path = tmp_path / "edge.db"
    good = {"type": "track", "event": "Order Completed", "userId": "u-1", "messageId": "m-good",
            "timestamp": RECENTLY, "integrations": {"Rokt Conversions API": {"rtid": "CLICK-1"}},
            "properties": {"order_id": "o-1", "revenue": 1, "currency": "USD"}}  # fmt: skip
    received = time.time()
    left_behind(
        path, Arrival("api", received, b"{not json"), Arrival("api", received, body_of(good))
    )
    with edge_on(path, fake) as live:
        # then the good order is delivered, the broken request is skipped with its reason, and
        # processing is still running
        wait_for(lambda: len(delivered(fake)) == 1)
        live.processed()
        stats = live.edge.store.stats_sync()
        assert stats.skipped == {PROCESSING_FAILED: 1}
        assert not live.edge.processing.done()
    assert fake.accepted_message_ids() == ["m-good"]


def test_an_event_that_cannot_be_processed_is_skipped_alone_and_its_neighbours_go_on(
    tmp_path: Path, fake: FakeCapi, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a flaw that an event's `traits.quirk` trips (a bug no check foresaw), and a request
    # whose middle order has one
    real = fields._audience

    def flawed(mapped: Any, mapping: Any, body: Any) -> None:
        if "quirk" in (body.get("traits") or {}):
            raise TypeError("unhashable type: 'dict'")
        real(mapped, mapping, body)

    monkeypatch.setattr(fields, "_audience", flawed)
    orders = [
        {"type": "track", "event": "Order Completed", "userId": f"u-{n}", "messageId": f"m-{n}",
         "properties": {"order_id": f"o-{n}", "revenue": 1, "currency": "USD"},
         **({"traits": {"quirk": {"a": 1}}} if n == 2 else {})}
        for n in (1, 2, 3)
    ]  # fmt: skip
    path = tmp_path / "edge.db"
    with edge_on(path, fake) as live:
        # when the request arrives and is processed
        answer = httpx.post(live.url + "/e", content=json.dumps({"batch": orders}))
        assert answer.status_code == 200
        wait_for(lambda: len(delivered(fake)) == 2)
        live.processed()
        stats = live.edge.store.stats_sync()
    # then its neighbours reach Rokt, and it alone is skipped, saying which field failed it
    assert sorted(fake.accepted_message_ids()) == ["m-1", "m-3"]
    assert stats.skipped == {
        f"{PROCESSING_FAILED} at traits.quirk: TypeError in test_processing.flawed": 1
    }


# -- intake's reading, taken rather than read again --------------------------------------------


def test_processing_takes_the_events_intake_read_instead_of_reading_the_body_again(
    tmp_path: Path, fake: FakeCapi, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given an edge whose processing counts the stored bodies it has to read again
    read_again: list[Arrival] = []

    read = Sources.read

    def counted(sources: Sources, arrival: Arrival) -> list[Any]:
        read_again.append(arrival)
        return read(sources, arrival)

    monkeypatch.setattr(Sources, "read", counted)
    order = {"type": "track", "event": "Order Completed", "anonymousId": "A", "messageId": "m-1",
             "integrations": {"Rokt Conversions API": {"rtid": "CLICK-1"}},
             "properties": {"order_id": "o-1", "revenue": 42, "currency": "USD"}}  # fmt: skip
    with edge_on(tmp_path / "edge.db", fake) as live:
        # when a beacon is answered and processed
        headers = {"Content-Type": "text/plain", "User-Agent": CHROME}
        answer = httpx.post(f"{live.url}/e", content=json.dumps(order), headers=headers)
        assert answer.status_code == 200
        wait_for(lambda: len(delivered(fake)) == 1)
        live.processed()
        # then its conversion reached Rokt from intake's reading: no body was read twice
        assert read_again == []
        assert len(live.edge.readings) == 0
    [batch] = delivered(fake)
    assert batch["integration_attributes"]["1277"]["passbackconversiontrackingid"] == "CLICK-1"


def test_a_reading_is_taken_once_and_a_full_store_of_them_keeps_the_oldest() -> None:
    readings = Readings(SOURCES, limit=2)
    arrivals = [Arrival("beacon", NOW + n, body_of({"type": "page", "messageId": f"m-{n}"}))
                for n in range(3)]  # fmt: skip
    kept = [SOURCES.read(arrival) for arrival in arrivals]
    for arrival, events in zip(arrivals, kept, strict=True):
        readings.keep(arrival, events)
    # full, it kept the oldest two (processing takes them first), and each is taken once: the
    # very reading intake made
    assert readings.take(arrivals[0]) is kept[0]
    assert readings.take(arrivals[1]) is kept[1]
    # one taken already, or not kept, is read again from the body: the same events
    for arrival, events in ((arrivals[1], kept[1]), (arrivals[2], kept[2])):
        again = readings.take(arrival)
        assert again is not events
        assert [event.body for event in again] == [event.body for event in events]
    # a reading older than processing would still take (its arrival went elsewhere) makes room
    for arrival, events in zip(arrivals[:2], kept[:2], strict=True):
        readings.keep(arrival, events)
    late = Arrival("beacon", NOW + 2 * MAX_LAG + 1, body_of({"type": "page", "messageId": "m-9"}))
    late_events = SOURCES.read(late)
    readings.keep(late, late_events)
    assert readings.take(late) is late_events
    assert readings.take(arrivals[1]) is kept[1]
    assert readings.take(arrivals[0]) is not kept[0]
    # a reading is kept under what reading depends on: the same body at another time is not it
    readings.keep(arrivals[0], kept[0])
    later = Arrival("beacon", NOW + 60, arrivals[0].body)
    assert [event.body["timestamp"] for event in readings.take(later)] != [
        event.body["timestamp"] for event in kept[0]
    ]


# -- what a slice sees of the identity store ---------------------------------------------------


@pytest.mark.anyio
async def test_a_slice_sees_the_links_its_earlier_arrivals_made(store_path: Path) -> None:
    store = SQLiteStore(store_path)
    try:
        view = IdentityView(store.identities)
        # given nothing stored, and an earlier arrival that linked A and U to a click
        assert await view.identity(("u:U",), since=NOW - 60) is None
        view.record([IdentityUpdate(("a:A", "u:U"), "CLICK-1", NOW - 10, "ip-1", "ua-1")], NOW)
        # then a later arrival asking by either id finds it
        found = await view.identity(("u:U",), since=NOW - 60)
        assert found == Identity("CLICK-1", NOW - 10, "ip-1", "ua-1", NOW)
        # and an older click never replaces a newer one, while a new IP does replace
        view.record([IdentityUpdate(("u:U",), "CLICK-0", NOW - 20, "ip-2", None)], NOW + 1)
        found = await view.identity(("a:A", "u:U"), since=NOW - 60)
        assert found is not None
        assert (found.click_id, found.ip, found.user_agent) == ("CLICK-1", "ip-2", "ua-1")
        # and the same click again keeps its first sighting, a newer one replaces it
        view.record([IdentityUpdate(("u:U",), "CLICK-1", NOW, None, None)], NOW + 2)
        found = await view.identity(("u:U",), since=NOW - 60)
        assert found is not None
        assert (found.click_id, found.click_seen_at) == ("CLICK-1", NOW - 10)
        view.record([IdentityUpdate(("u:U",), "CLICK-2", NOW, None, None)], NOW + 3)
        found = await view.identity(("u:U",), since=NOW - 60)
        assert found is not None
        assert (found.click_id, found.click_seen_at) == ("CLICK-2", NOW)
    finally:
        store.close()


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "edge.db"


# -- priority --------------------------------------------------------------------------------


def test_processing_yields_to_a_busy_intake_until_it_lags_too_far() -> None:
    # no request came during the slice: the next slice follows at once
    assert pause_for_intake(spent=0.004, arriving=0, active=False, lag=0.1) == 0.0
    # a steady trickle of requests: they get as much of the loop as processing
    assert pause_for_intake(spent=0.004, arriving=2, active=True, lag=0.1) == 0.004
    # clients queueing up: processing keeps about BUSY_SHARE of the loop
    pause = pause_for_intake(spent=0.004, arriving=BUSY_REQUESTS, active=True, lag=2.0)
    assert 0.004 / (0.004 + pause) == pytest.approx(BUSY_SHARE)
    # but not once its oldest arrival waited MAX_LAG: then it takes what it needs
    assert pause_for_intake(spent=0.004, arriving=32, active=True, lag=MAX_LAG) == 0.0
