"""Shopify's order webhook (`POST /shopify/orders`), served by a real uvicorn server delivering to a
fake Rokt on loopback: each delivery signed as Shopify signs it (HMAC-SHA256 of the raw body with
the shop's webhook secret, base64), the order shaped as Shopify's `orders/create` sends it
(tests/data/shopify/order.json)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.events import Event
from edge.settings import Settings, SettingsError, load_settings
from edge.sources import SOURCES
from edge.sources.requests import Refusal
from edge.sources.shopify_orders import MAX_BODY_BYTES, arrival, read_order
from tests.conftest import DATA
from tests.fake_capi import FakeCapi
from tests.live import FailingStore, LiveEdge, wait_for
from tests.shop import browser, database, delivered, events_named, shop_settings

SECRET = "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"  # what Shopify's admin shows as the signing key
ORDER = json.loads((DATA / "shopify" / "order.json").read_text())
ORDER_ID = "5935127396512"
CUSTOMER_ID = "7410963258741"
EMAIL = "Jane.Shopper@example.com"
CART_CLICK = "rokt-click-from-cart"  # the order's note attribute `rtid`
LANDING_CLICK = "rokt-click-from-landing"  # the rtid of the order's landing_site
SHOPPER_IP = "198.51.100.23"
IPHONE = ORDER["client_details"]["user_agent"]


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def an_order(**changes: Any) -> dict[str, Any]:
    """The sample order, placed a minute ago (in the shop's time zone, as Shopify writes it)."""
    placed = datetime.now(timezone(timedelta(hours=-5))) - timedelta(minutes=1)
    return {**ORDER, "created_at": placed.isoformat(timespec="seconds"), **changes}


def sign(body: bytes, secret: str = SECRET) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def webhook(
    live: LiveEdge,
    order: Any,
    *,
    webhook_id: str | None = None,
    topic: str = "orders/create",
    signature: str | None = None,
    path: str = "/shopify/orders",
) -> httpx.Response:
    """A delivery as Shopify makes it: the order's JSON, signed (unless `signature` is given:
    "" sends none), with Shopify's headers."""
    body = order if isinstance(order, bytes) else json.dumps(order).encode()
    headers = {
        "content-type": "application/json",
        "user-agent": "Shopify-Captain-Hook",
        "x-shopify-topic": topic,
        "x-shopify-shop-domain": "linen-and-co.myshopify.com",
        "x-shopify-api-version": "2026-10",
        "x-shopify-webhook-id": webhook_id or str(uuid.uuid4()),
        "x-shopify-triggered-at": datetime.now(UTC).isoformat(),
    }
    signature = sign(body) if signature is None else signature
    if signature:
        headers["x-shopify-hmac-sha256"] = signature
    return httpx.post(live.url + path, content=body, headers=headers)


def click_of(batch: dict[str, Any]) -> Any:
    return batch["integration_attributes"]["1277"]["passbackconversiontrackingid"]


def nothing_stored(live: LiveEdge) -> bool:
    stats = live.edge.store.stats_sync()
    return (stats.arrivals, stats.pending, stats.in_flight, stats.delivered) == (0, 0, 0, 0)


def settled(live: LiveEdge) -> None:
    """Every request answered so far processed, and every item sent."""
    live.processed()
    wait_for(lambda: (s := live.edge.store.stats_sync()).pending + s.in_flight == 0)


@pytest.fixture
def settings(tmp_path: Path, fake: FakeCapi) -> Settings:
    """A shop's edge with the webhook's secret set, hashing email and phone before sending."""
    mappings = tmp_path / "mappings.toml"
    mappings.write_text(
        '[[mapping]]\nname = "Send"\npreset = "Send"\n'
        "[mapping.hashing]\nemail = true\nmobile = true\n"
    )
    return shop_settings(tmp_path, fake, shopify_webhook_secret=SECRET, mappings=mappings)


@pytest.fixture
def live(settings: Settings) -> Iterator[LiveEdge]:
    with LiveEdge(settings) as live:
        yield live


# -- an order, verified, to Rokt -------------------------------------------------------------


def test_a_signed_order_reaches_rokt_with_the_click_id_from_its_note_attributes(
    live: LiveEdge, fake: FakeCapi
) -> None:
    # Given a shopper who came from a Rokt ad, whose click the storefront put in the cart's
    # attributes, and whose order Shopify now posts
    response = webhook(live, an_order())

    # Then the edge answers 200 once it is stored
    assert response.status_code == 200
    assert response.json() == {"success": True}

    # And Rokt receives the conversion: the click, the order id, amount, currency, and the
    # shopper's identities (email and phone hashed), IP and browser
    wait_for(lambda: delivered(fake))
    [conversion] = events_named(fake, "conversion")
    batch = conversion.pop("batch")
    assert conversion["source_message_id"] == f"shopify-order-{ORDER_ID}"
    assert conversion["custom_attributes"] == {
        "conversiontype": "Order Completed",
        "confirmationref": ORDER_ID,
        "amount": 129.9,
        "currency": "USD",
    }
    assert click_of(batch) == CART_CLICK
    assert batch["user_identities"] == {
        "customerid": CUSTOMER_ID,
        "other": sha256(EMAIL.lower()),
        "other2": CART_CLICK,
    }
    assert batch["user_attributes"]["mobilesha256"] == sha256("3238675309")
    assert batch["ip"] == SHOPPER_IP
    assert batch["device_info"]["http_header_user_agent"] == IPHONE
    # And the attribution figures count it as Shopify's, with its click id
    counted = 'rokt_edge_conversions_total{click_id="yes",email="yes",source="shopify"} 1.0'
    wait_for(lambda: counted in httpx.get(live.url + "/metrics").text)


def test_without_a_note_attribute_the_landing_sites_click_id_is_sent(
    live: LiveEdge, fake: FakeCapi
) -> None:
    gift_only = [{"name": "gift_message", "value": "Happy birthday!"}]
    assert webhook(live, an_order(note_attributes=gift_only)).status_code == 200

    wait_for(lambda: delivered(fake))
    [batch] = delivered(fake)
    assert click_of(batch) == LANDING_CLICK


def test_an_order_with_no_click_id_anywhere_is_still_reported(
    live: LiveEdge, fake: FakeCapi
) -> None:
    order = an_order(note_attributes=[], landing_site="/collections/shirts?utm_source=newsletter")
    assert webhook(live, order).status_code == 200

    wait_for(lambda: delivered(fake))
    [batch] = delivered(fake)
    assert "1277" not in batch.get("integration_attributes", {})
    assert batch["user_identities"]["customerid"] == CUSTOMER_ID


# -- verification ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "forgery",
    ["another secret", "a changed body", "no signature", "not base64"],
)
def test_a_delivery_not_signed_with_the_secret_is_refused_and_nothing_is_stored(
    live: LiveEdge, fake: FakeCapi, forgery: str
) -> None:
    order = an_order()
    body = json.dumps(order).encode()
    signature = {
        "another secret": sign(body, "shpss_someone_elses_secret"),
        "a changed body": sign(body),  # signed, then the amount raised on the way
        "no signature": "",
        "not base64": "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest(),
    }[forgery]
    if forgery == "a changed body":
        body = body.replace(b'"total_price": "129.90"', b'"total_price": "999.90"')

    response = webhook(live, body, signature=signature)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    assert "X-Shopify-Hmac-Sha256" in response.json()["error"]["message"]
    live.processed()
    assert nothing_stored(live)
    assert fake.requests() == []


def test_without_a_secret_configured_the_webhook_refuses_everything(
    tmp_path: Path, fake: FakeCapi
) -> None:
    settings = shop_settings(tmp_path, fake)  # no ROKT_EDGE_SHOPIFY_WEBHOOK_SECRET
    with LiveEdge(settings) as live:
        response = webhook(live, an_order())
        assert response.status_code == 401
        message = response.json()["error"]["message"]
        assert "off" in message
        assert "ROKT_EDGE_SHOPIFY_WEBHOOK_SECRET" in message
        assert nothing_stored(live)


# -- one order, once -------------------------------------------------------------------------


def test_shopifys_retry_of_a_webhook_is_one_conversion_at_rokt(
    live: LiveEdge, fake: FakeCapi
) -> None:
    # Given a webhook Shopify delivered, then delivered again (no answer reached it in 5 s)
    order = an_order()
    first = webhook(live, order, webhook_id="b54557e4-bdd9-4b37-8a5f-bf7d70bcd043")
    again = webhook(live, order, webhook_id="b54557e4-bdd9-4b37-8a5f-bf7d70bcd043")
    # And the same order under orders/paid, a webhook id of its own
    paid = webhook(live, order, topic="orders/paid")

    assert [first.status_code, again.status_code, paid.status_code] == [200, 200, 200]
    settled(live)
    # Then Rokt received the order once
    assert fake.accepted_message_ids() == [f"shopify-order-{ORDER_ID}"]


@pytest.mark.parametrize("first", ["pixel", "webhook"])
def test_the_pixels_conversion_and_the_webhooks_for_one_order_are_one_at_rokt(
    live: LiveEdge, fake: FakeCapi, settings: Settings, first: str
) -> None:
    # The custom pixel's Order Completed on checkout_completed, by beacon, with the click it
    # kept, and Shopify's order webhook for the same order
    pixel = {
        "type": "track", "event": "Order Completed", "anonymousId": "shopify-client-7c2f9a",
        "messageId": f"shopify-checkout-{ORDER_ID}",
        "properties": {"order_id": ORDER_ID, "revenue": 129.9, "currency": "USD"},
        "integrations": {"Rokt Conversions API": {"rtid": CART_CLICK}},
    }  # fmt: skip

    def send(copy: str) -> int:
        sent = browser(live, pixel) if copy == "pixel" else webhook(live, an_order())
        return int(sent.status_code)

    later = "webhook" if first == "pixel" else "pixel"

    # When one arrives, then the other
    assert send(first) == 200
    live.processed()
    assert send(later) == 200
    settled(live)

    # Then Rokt receives the order once, the first copy, with the click id
    message_ids = {"pixel": f"shopify-checkout-{ORDER_ID}", "webhook": f"shopify-order-{ORDER_ID}"}
    assert fake.accepted_message_ids() == [message_ids[first]]
    [batch] = delivered(fake)
    assert click_of(batch) == CART_CLICK
    # And the later copy is recorded as a duplicate
    with database(settings) as db:
        skipped = db.execute("SELECT message_id, reason FROM skipped").fetchall()
    assert skipped == [(message_ids[later], "duplicate")]


# -- what is not an order --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "code", "named"),
    [
        (b"<order/>", 400, "invalid_json", "not JSON"),
        (json.dumps([ORDER]).encode(), 400, "invalid_order", "JSON object"),
        (json.dumps({**ORDER, "id": None}).encode(), 400, "invalid_order", "id"),
        (json.dumps({"customer": ORDER["customer"]}).encode(), 400, "invalid_order", "id"),
        (json.dumps({**ORDER, "total_price": "12,90"}).encode(), 400, "invalid_order",
         "total_price"),
        (json.dumps({**ORDER, "total_price": "1e999"}).encode(), 400, "invalid_order",
         "total_price"),
    ],
)  # fmt: skip
def test_a_signed_body_that_is_no_order_is_refused_naming_what_is_wrong(
    live: LiveEdge, body: bytes, status: int, code: str, named: str
) -> None:
    response = webhook(live, body)

    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code
    assert named in error["message"]
    if code == "invalid_order" and named != "JSON object":
        assert error["field"] == named
    live.processed()
    assert nothing_stored(live)


def test_another_topic_sent_here_is_refused(live: LiveEdge) -> None:
    response = webhook(live, ORDER["customer"], topic="customers/create")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "unsupported_topic"
    assert "orders/create" in response.json()["error"]["message"]
    assert nothing_stored(live)


def test_a_body_over_the_limit_is_refused(live: LiveEdge) -> None:
    huge = an_order(note=" " * MAX_BODY_BYTES)
    response = webhook(live, huge)

    assert response.status_code == 413
    assert nothing_stored(live)


# -- the path, the store ---------------------------------------------------------------------


def test_the_webhooks_path_is_a_setting(tmp_path: Path, fake: FakeCapi) -> None:
    settings = shop_settings(
        tmp_path, fake, shopify_webhook_secret=SECRET, shopify_orders_path="/hooks/shopify"
    )
    with LiveEdge(settings) as live:
        assert webhook(live, an_order(), path="/hooks/shopify").status_code == 200
        assert webhook(live, an_order(), path="/shopify/orders").status_code == 404
        assert httpx.get(live.url + "/hooks/shopify").status_code == 405

    environ = {"ROKT_EDGE_SHOPIFY_ORDERS_PATH": "/hooks/shopify?x=1"}
    with pytest.raises(SettingsError, match="ROKT_EDGE_SHOPIFY_ORDERS_PATH"):
        load_settings(environ)


def test_a_failing_store_answers_503_so_shopify_retries(tmp_path: Path, settings: Settings) -> None:
    store = FailingStore(tmp_path / "failing.db")
    store.failing = True
    try:
        with LiveEdge(settings, store=store) as live:
            response = webhook(live, an_order())
    finally:
        store.close()
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "store_unavailable"


# -- the event -------------------------------------------------------------------------------


def test_an_order_becomes_one_canonical_order_completed_event() -> None:
    raw = json.dumps(ORDER).encode()
    event = read_order(raw, received_at=datetime(2026, 12, 8, tzinfo=UTC).timestamp())

    assert event.body == {
        "type": "track",
        "event": "Order Completed",
        "messageId": f"shopify-order-{ORDER_ID}",
        "userId": CUSTOMER_ID,
        "timestamp": "2026-12-07T14:21:09-05:00",
        "properties": {
            "order_id": ORDER_ID, "order_name": "#1042", "order_number": 1042,
            "checkout_id": "8f1c2b7d4e9a0f36b5c1d2e3f4a5b6c7",
            "revenue": 129.9, "total": 129.9, "subtotal": 118.0, "tax": 9.44, "discount": 10.0,
            "currency": "USD", "email": EMAIL, "phone": "+13238675309",
        },
        "context": {"ip": SHOPPER_IP, "userAgent": IPHONE},
        "integrations": {"Rokt Conversions API": {"rtid": CART_CLICK}},
    }  # fmt: skip


def test_a_stored_order_reads_back_as_the_same_event() -> None:
    # Processing reads an arrival again after a restart: the same event, message id included
    event = read_order(json.dumps(ORDER).encode(), received_at=1_800_000_000.0)
    stored = arrival(event, 1_800_000_000.0)

    assert stored.source == "shopify"
    assert SOURCES.read(stored) == [event]
    assert not SOURCES["shopify"].browser


def test_the_customers_details_fill_in_what_the_order_lacks() -> None:
    order = {
        "id": 1, "email": None, "phone": None, "total_price": "5.00", "currency": "EUR",
        "customer": {"id": 2, "email": "c@example.com", "phone": None},
        "billing_address": {"phone": "+49 30 901820"}, "created_at": "not a time",
    }  # fmt: skip
    body = read_order(json.dumps(order).encode(), received_at=1_800_000_000.0).body

    assert body["properties"]["email"] == "c@example.com"
    assert body["properties"]["phone"] == "+49 30 901820"
    assert body["userId"] == "2"
    assert body["timestamp"] == "2027-01-15T08:00:00.000Z"  # the time of arrival
    assert "integrations" not in body
    assert "context" not in body


SHOPIFY_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                ["id", "total_price", "currency", "email", "phone", "customer", "client_details",
                 "note_attributes", "name", "value", "landing_site", "created_at", "browser_ip",
                 "user_agent", "billing_address", "order_number", "subtotal_price"]
            ),
            children,
            max_size=8,
        )
    ),
    max_leaves=25,
)  # fmt: skip


@given(SHOPIFY_VALUES)
def test_whatever_a_signed_body_holds_it_is_an_event_or_a_refusal(value: Any) -> None:
    raw = json.dumps(value).encode()  # NaN too, which the edge refuses as no JSON
    result = outcome(raw)
    if isinstance(result, Refusal):
        assert result.response.status_code == 400
    else:
        assert SOURCES.read(arrival(result, 1_800_000_000.0)) == [result]


def outcome(raw: bytes) -> Event | Refusal:
    try:
        return read_order(raw, received_at=1_800_000_000.0)
    except Refusal as refusal:
        return refusal
