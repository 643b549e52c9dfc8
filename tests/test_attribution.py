"""Attribution end to end: every way a conversion arrives carries the click id its visitor's
browser showed. Through the running edge to the fake Rokt on loopback, with the clients
merchants run (Segment's Python library, batching as it does by default)."""

from __future__ import annotations

import hashlib
import sqlite3
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from segment.analytics import Client

from edge.settings import Settings
from edge.store.sqlite import SQLiteStore
from tests.clients.harness import run_analytics_node
from tests.conftest import run_cli
from tests.fake_capi import FakeCapi
from tests.live import LiveEdge, wait_for
from tests.shop import (
    CHROME,
    SHOPPER_IP,
    WRITE_KEY,
    api,
    browser,
    database,
    delivered,
    order,
    shop_settings,
    shopper,
)

DAY = 86400.0
CLICKED = 1_790_000_000.0  # when the shopper clicked the ad (the tests' clock starts there)


def landing(anonymous_id: str, click_id: str) -> dict[str, Any]:
    """The page a click on a Rokt ad lands on, as a browser reports it."""
    page = {"url": f"https://shop.example/?rtid={click_id}", "search": f"?rtid={click_id}"}
    return {"type": "page", "anonymousId": anonymous_id, "context": {"page": page}}


def click_of(batch: dict[str, Any]) -> str | None:
    module = batch.get("integration_attributes", {}).get("1277", {})
    click: str | None = module.get("passbackconversiontrackingid")
    return click


class Requests:
    """The requests the edge received, by path (an ASGI wrapper around it)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.paths: Counter[str] = Counter()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.paths[scope["path"]] += 1
        await self.app(scope, receive, send)


@pytest.fixture
def settings(tmp_path: Path, fake: FakeCapi) -> Settings:
    return shop_settings(tmp_path, fake)


# -- identify and conversion in one request ---------------------------------------------------


def test_segments_python_library_batching_an_identify_and_an_order_carries_the_browsers_click(
    settings: Settings, fake: FakeCapi
) -> None:
    requests: list[Requests] = []

    def recorded(app: Any) -> Requests:
        requests.append(Requests(app))
        return requests[0]

    with LiveEdge(settings, wrap=recorded) as live:
        # Given a shopper who landed from a Rokt ad, anonymous to the shop's backend
        assert browser(live, landing("anon-1", "CLICK-B")).status_code == 200
        live.processed()

        # When the backend, with Segment's library as merchants run it (its queue batches calls),
        # learns at checkout who the shopper is and reports the order by user id alone
        errors: list[Exception] = []
        client = Client(WRITE_KEY, host=live.url, on_error=lambda e, _: errors.append(e))
        client.identify(user_id="user-1", anonymous_id="anon-1", traits={"plan": "gold"})
        bought = {"order_id": "o-batched", "revenue": 30, "currency": "USD"}
        client.track(user_id="user-1", event="Order Completed", properties=bought)
        client.shutdown()
        assert errors == []

        # Then both calls travelled in one request
        assert requests[0].paths["/v1/batch"] == 1
        # And Rokt receives the order with the browser's click, IP address and user agent
        wait_for(lambda: delivered(fake))
    [batch] = delivered(fake)
    assert click_of(batch) == "CLICK-B"
    assert batch["user_identities"] == {"customerid": "user-1", "other2": "CLICK-B"}
    assert batch["ip"] == SHOPPER_IP
    assert batch["device_info"]["http_header_user_agent"] == CHROME


def test_segments_node_library_batching_an_identify_and_an_order_carries_the_browsers_click(
    settings: Settings, fake: FakeCapi
) -> None:
    with LiveEdge(settings) as live:
        # Given a shopper who landed from a Rokt ad
        browser(live, landing("anon-n", "CLICK-N"))
        live.processed()

        # When the backend runs Segment's Node library with its default batching
        bought = {"order_id": "o-node", "revenue": 18, "currency": "USD"}
        run = run_analytics_node(live.url, WRITE_KEY, [
            ("identify", {"userId": "user-n", "anonymousId": "anon-n", "traits": {}}),
            ("track", {"userId": "user-n", "event": "Order Completed", "properties": bought}),
        ])  # fmt: skip
        wait_for(lambda: delivered(fake))

    # Then one request carried both, and Rokt has the order with the browser's click, IP and UA
    assert [request["url"] for request in run.requests] == [live.url + "/v1/batch"]
    [batch] = delivered(fake)
    assert click_of(batch) == "CLICK-N"
    assert (batch["ip"], batch["device_info"]["http_header_user_agent"]) == (SHOPPER_IP, CHROME)


def test_a_batchs_later_event_sees_the_link_an_earlier_one_made(
    settings: Settings, fake: FakeCapi
) -> None:
    with LiveEdge(settings) as live:
        browser(live, landing("anon-2", "CLICK-C"))
        live.processed()
        # An alias (anon-2 is now user-2) and an order by user-2, in one batch
        batch = {"batch": [
            {"type": "alias", "previousId": "anon-2", "userId": "user-2"},
            {"type": "track", "userId": "user-2", **order("o-aliased")},
        ]}  # fmt: skip
        assert api(live, "/v1/batch", batch).status_code == 200
        wait_for(lambda: delivered(fake))
    assert click_of(delivered(fake)[0]) == "CLICK-C"


# -- the attribution window runs from the first sighting -------------------------------------


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_click_seen_again_and_again_stays_dated_at_its_first_sighting(
    settings: Settings, fake: FakeCapi, tmp_path: Path
) -> None:
    clock = Clock(CLICKED)
    store = SQLiteStore(tmp_path / "edge.db", clock=clock)
    try:
        with LiveEdge(settings, store=store, clock=clock) as live, shopper() as tab:
            # Given a shopper who clicked an ad and keeps browsing the shop for 20 days, every
            # event carrying the click (the snippet attaches it to each)
            browser(live, landing("anon-3", "CLICK-W"), tab)
            for day in (5, 10, 20):
                live.processed()  # (days pass between the visits: none waits that long)
                clock.now = CLICKED + day * DAY
                seen = {**landing("anon-3", "CLICK-W"), "type": "track", "event": "Product Viewed"}
                assert browser(live, seen, tab).status_code == 200
            live.processed()

            # Then the click is still dated at its first sighting
            with database(settings) as db:
                assert db.execute(
                    "SELECT click_id, click_seen_at FROM identities WHERE key = 'a:anon-3'"
                ).fetchall() == [("CLICK-W", CLICKED)]
            # (the visitor cookie too: a conversion on day 29 still carries it, from the cookie)
            live.processed()
            clock.now = CLICKED + 29 * DAY
            browser(live, {"type": "track", "anonymousId": "anon-3", **order("o-day-29")}, tab)
            wait_for(lambda: len(delivered(fake)) == 1)
            assert click_of(delivered(fake)[0]) == "CLICK-W"

            # When the shopper, signed in, converts 31 days after the click, in the same browser
            # and again with the click attached, and through the backend by anonymous id
            live.processed()
            clock.now = CLICKED + 31 * DAY
            carried = {"integrations": {"Rokt Conversions API": {"rtid": "CLICK-W"}}}
            ids = {"anonymousId": "anon-3", "userId": "user-3"}
            browser(live, {"type": "track", **ids, **order("o-day-31", **carried)}, tab)
            api(live, "/v1/track", order("o-day-31-backend", **ids))
            wait_for(lambda: len(delivered(fake)) == 3)
            live.processed()

        # Then neither conversion carries the expired click
        late = [b for b in delivered(fake) if click_of(b) is None]
        assert len(late) == 2
        assert all("other2" not in batch["user_identities"] for batch in late)
    finally:
        store.close()


# -- remembered identifiers -------------------------------------------------------------------


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_an_identifys_email_and_phone_reach_a_later_conversion_hashed_and_are_kept_hashed(
    settings: Settings, fake: FakeCapi
) -> None:
    email, phone = "Private.Buyer-93@Example.com", "+1 (323) 867-5309"
    with LiveEdge(settings) as live:
        # Given a backend that identified a customer with an email and a phone at sign-up
        traits = {"email": email, "phone": phone}
        assert api(live, "/v1/identify", {"userId": "user-4", "traits": traits}).status_code == 200
        # When the customer's order comes without either
        assert api(live, "/v1/track", order("o-traits", userId="user-4")).status_code == 200
        wait_for(lambda: delivered(fake))
        live.processed()
        counted = 'rokt_edge_conversions_total{click_id="no",email="yes",source="api"} 1.0'
        wait_for(lambda: counted in httpx.get(live.url + "/metrics").text)

    # Then Rokt receives them hashed, by Rokt's normalization
    [batch] = delivered(fake)
    assert batch["user_identities"] == {"customerid": "user-4", "other": sha256(email.lower())}
    assert batch["user_attributes"]["mobilesha256"] == sha256("3238675309")
    # And the database holds the hashes only: no raw email or phone, not even in freed pages
    path = settings.database_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    content = Path(path).read_bytes()
    for raw in (email, email.lower(), "867-5309", "3238675309"):
        assert raw.encode() not in content


def test_remembering_identifiers_can_be_turned_off(tmp_path: Path, fake: FakeCapi) -> None:
    settings = shop_settings(tmp_path, fake, remember_identifiers=False)
    with LiveEdge(settings) as live:
        api(live, "/v1/identify", {"userId": "user-5", "traits": {"email": "a@example.com"}})
        api(live, "/v1/track", order("o-off", userId="user-5"))
        wait_for(lambda: delivered(fake))
    assert delivered(fake)[0]["user_identities"] == {"customerid": "user-5"}


# -- the share of conversions sent with a click id --------------------------------------------


@pytest.fixture
def live(settings: Settings) -> Iterator[LiveEdge]:
    with LiveEdge(settings) as live:
        yield live


def test_the_share_of_conversions_with_a_click_id_shows_in_metrics_and_status(
    live: LiveEdge, settings: Settings, fake: FakeCapi
) -> None:
    # Given three conversions from the backend, two of them of a shopper who clicked an ad,
    # and one from the browser
    browser(live, landing("anon-6", "CLICK-S"))
    live.processed()
    api(live, "/v1/track", order("o-1", anonymousId="anon-6"))
    api(live, "/v1/track", order("o-2", anonymousId="anon-6"))
    api(live, "/v1/track", order("o-3", userId="stranger"))
    browser(live, {"type": "track", "anonymousId": "anon-6", **order("o-4")})
    wait_for(lambda: len(delivered(fake)) == 4)

    # Then /metrics counts them by source and click id, and gives the share
    share = 'rokt_edge_conversions_click_id_share{source="api",window="1h"} 0.6666666666666666'
    wait_for(lambda: share in httpx.get(live.url + "/metrics").text)
    metrics = httpx.get(live.url + "/metrics").text
    assert 'rokt_edge_conversions_total{click_id="yes",email="no",source="api"} 2.0' in metrics
    assert 'rokt_edge_conversions_total{click_id="no",email="no",source="api"} 1.0' in metrics
    assert 'rokt_edge_conversions_total{click_id="yes",email="no",source="beacon"} 1.0' in metrics
    # And `rokt-edge status` says it, for the last hour and day, by source
    status = run_cli("status", env={"ROKT_EDGE_DATABASE_URL": settings.database_url})
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    assert "  1h  api                  3  click id       2 ( 67%)  email       0 (  0%)" in lines
    assert "  24h beacon               1  click id       1 (100%)  email       0 (  0%)" in lines
