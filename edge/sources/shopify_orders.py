"""`POST /shopify/orders`: Shopify's order webhook (`orders/create`), verified, as one conversion.

    secret configured ─▶ backlog ─▶ body within 2 MiB ─▶ X-Shopify-Hmac-Sha256 is base64(HMAC-
    SHA256(secret, raw body)), compared in constant time before anything is parsed ─▶ topic ─▶
    JSON order ─▶ one `Order Completed` event ─▶ one durable write of its arrival ─▶ 200

The event (`order_event`): properties.order_id is the order's numeric id as text, the order id
Shopify's custom pixel is to send too, so that pixel and webhook are one conversion (the
outbox's de-duplication by mapping, conversion type and confirmation ref); revenue and total are
total_price; currency; email and phone (the order's, else the customer's; the billing address's
phone last); userId the customer's id; context.ip and userAgent from client_details, the shopper's
browser at checkout (this source is a server's, believed about nothing, so they are written into
the event); timestamp created_at. The click id, written to integrations["Rokt Conversions API"].
rtid: a note attribute named `rtid` (or `rclid`), as a storefront writes it through Shopify's cart
API (`POST /cart/update.js` with `{"attributes": {"rtid": …}}`), else the `rtid` (or `rclid`)
query parameter of landing_site.

Shopify sends a webhook again (the same `X-Shopify-Webhook-Id`) until it is answered 2xx within
5 s. The event's messageId is derived from the order id (`shopify-order-<id>`), so a retry, or the
same order under another webhook id (orders/paid as well, a second subscription), is the same
message, and the outbox keeps one item per mapping and message id: one conversion.

The arrival holds the event, not the order: an order carries addresses and line items, up to
megabytes of them, of which the edge sends these few fields. Without
ROKT_EDGE_SHOPIFY_WEBHOOK_SECRET every request is refused (401).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import math
import time
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from edge.capture.enrich import INTEGRATION
from edge.events import ArrivalDefaults, Event, EventError, parse_json, parse_timestamp
from edge.jsontext import encode
from edge.logs import Throttled
from edge.pipeline.mapping import CLICK_ID_PARAMS
from edge.service import Edge
from edge.settings import Settings
from edge.source import Source
from edge.sources.requests import (
    Refusal,
    TooLarge,
    error,
    header_map,
    overloaded,
    read_body,
    store,
)
from edge.store.values import Arrival

NAME: Final = "shopify"
EVENT_NAME: Final = "Order Completed"
MESSAGE_ID_PREFIX: Final = "shopify-order-"
MAX_BODY_BYTES: Final = 2 * 1024 * 1024  # an order of hundreds of line items stays well below
# Topics whose payload is an order to report; another topic sent here is a misconfiguration.
ORDER_TOPICS: Final = ("orders/create", "orders/paid")
# Shopify's amounts (strings) and the event properties they become.
AMOUNTS: Final = (
    ("total_price", ("revenue", "total")),
    ("subtotal_price", ("subtotal",)),
    ("total_tax", ("tax",)),
    ("total_discounts", ("discount",)),
)
WEBHOOK_OFF: Final = (
    "the Shopify order webhook is off: no signing secret is configured "
    "(set ROKT_EDGE_SHOPIFY_WEBHOOK_SECRET)"
)
BAD_SIGNATURE: Final = (
    "X-Shopify-Hmac-Sha256 is missing or is not the HMAC-SHA256 of this body with the "
    "configured secret"
)

log = logging.getLogger("rokt_edge.intake")
forged = Throttled(log, logging.WARNING)  # one line per request while a secret is wrong


# -- reading an order --------------------------------------------------------------------------


def signed(body: bytes, signature: str | None, secret: str) -> bool:
    """Whether `signature` (X-Shopify-Hmac-Sha256) is base64(HMAC-SHA256(secret, body)),
    compared in constant time."""
    if not signature:
        return False
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest()
    return hmac.compare_digest(base64.b64encode(digest), signature.strip().encode("latin-1"))


def order_event(order: Any) -> dict[str, Any]:
    """The `Order Completed` event of a Shopify order (REST Admin shape); Refusal when the body
    is no order. Fields of the wrong kind are left out; only an amount that is no number (which
    would send Rokt a wrong one) is refused."""
    if not isinstance(order, dict):
        raise Refusal(400, "invalid_order", "the body must be a JSON object: a Shopify order")
    order_id = _order_id(order.get("id"))
    customer = _object(order, "customer")
    client = _object(order, "client_details")
    billing = _object(order, "billing_address")
    properties: dict[str, Any] = {"order_id": order_id}
    _put(properties, "order_name", _text(order.get("name")))
    number = order.get("order_number")
    if isinstance(number, int) and not isinstance(number, bool):
        properties["order_number"] = number
    _put(properties, "checkout_id", _text(order.get("checkout_token")))
    for field, names in AMOUNTS:
        amount = _amount(order, field)
        for name in names:
            _put(properties, name, amount)
    _put(properties, "currency", _text(order.get("currency")))
    _put(properties, "email", _first(order.get("email"), order.get("contact_email"),
                                     customer.get("email")))  # fmt: skip
    _put(properties, "phone", _first(order.get("phone"), customer.get("phone"),
                                     billing.get("phone")))  # fmt: skip
    event: dict[str, Any] = {
        "type": "track",
        "event": EVENT_NAME,
        "messageId": MESSAGE_ID_PREFIX + order_id,
        "properties": properties,
    }
    customer_id = customer.get("id")
    if isinstance(customer_id, int | str) and not isinstance(customer_id, bool):
        _put(event, "userId", _text(str(customer_id)))
    context: dict[str, Any] = {}
    _put(context, "ip", _text(client.get("browser_ip")))
    _put(context, "userAgent", _text(client.get("user_agent")))
    if context:
        event["context"] = context
    created_at = _text(order.get("created_at"))
    if created_at is not None and parse_timestamp(created_at) is not None:
        event["timestamp"] = created_at  # else the time of arrival
    click_id = order_click_id(order)
    if click_id is not None:
        event["integrations"] = {INTEGRATION: {"rtid": click_id}}
    return event


def order_click_id(order: Mapping[str, Any]) -> str | None:
    """The click id an order carries: a note attribute named `rtid` (or `rclid`), else that
    query parameter of the landing site (`/products/x?rtid=…`, or a full URL)."""
    attributes = order.get("note_attributes")
    noted: dict[str, str] = {}
    for attribute in attributes if isinstance(attributes, list) else ():
        if not isinstance(attribute, dict) or not isinstance(attribute.get("name"), str):
            continue
        value = _text(attribute.get("value"))
        if value is not None:
            noted.setdefault(attribute["name"].strip().lower(), value)
    landing = _text(order.get("landing_site"))
    try:
        query = parse_qs(urlsplit(landing).query) if landing else {}
    except ValueError:  # "http://[": no URL
        query = {}
    for name in CLICK_ID_PARAMS:
        if name in noted:
            return noted[name]
    for name in CLICK_ID_PARAMS:
        found = next((value.strip() for value in query.get(name, ()) if value.strip()), None)
        if found is not None:
            return found
    return None


def _order_id(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    found = "none" if value is None else f"{json.dumps(value)[:40]}"
    raise Refusal(
        400, "invalid_order", f"id: a Shopify order has an id; this body has {found}", field="id"
    )


def _amount(order: Mapping[str, Any], field: str) -> float | None:
    value = order.get(field)
    if value is None or value == "":
        return None
    try:
        number = float(value) if isinstance(value, str | int | float) else math.nan
    except (ValueError, OverflowError):  # "abc"; an integer past a float's range
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number):
        shown = json.dumps(value)[:40]
        raise Refusal(400, "invalid_order", f"{field}: {shown} is not an amount", field=field)
    return number


def _object(order: Mapping[str, Any], field: str) -> Mapping[str, Any]:
    value = order.get(field)
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str | None:
    return (value.strip() or None) if isinstance(value, str) else None


def _first(*values: Any) -> str | None:
    return next((text for text in map(_text, values) if text is not None), None)


def _put(target: dict[str, Any], name: str, value: Any) -> None:
    if value is not None:
        target[name] = value


# -- handling ----------------------------------------------------------------------------------


def read_order(raw: bytes, received_at: float) -> Event:
    """The event of a verified webhook's body; Refusal when it is no order."""
    try:
        document = parse_json(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as problem:  # nested too deep
        raise Refusal(400, "invalid_json", f"the body is not JSON: {problem}") from None
    try:
        return ArrivalDefaults(received_at, raw).parse(order_event(document), 0)
    except EventError as bad:  # text that is no text (a lone surrogate)
        raise Refusal(400, "invalid_order", str(bad), field=bad.field) from None


def arrival(event: Event, received_at: float) -> Arrival:
    """The arrival of an order: its event, as `arrived_events` reads it back."""
    return Arrival(NAME, received_at, encode({"batch": [event.body]}))


def arrived_events(arrival: Arrival) -> list[Event]:
    """The event of a stored order, exactly as intake read it."""
    return [Event(body) for body in json.loads(arrival.body)["batch"]]


async def receive(request: Request) -> Response:
    edge: Edge = request.app.state.edge
    started = time.perf_counter()
    secret = edge.settings.shopify_webhook_secret
    if secret is None:
        return error(401, "unauthorized", WEBHOOK_OFF)
    if edge.processor is not None and edge.processor.overloaded(edge.clock()):
        return overloaded()
    headers = header_map(request)
    try:
        raw = await read_body(request, MAX_BODY_BYTES, headers.get("content-length"))
    except TooLarge:
        return error(413, "too_large", f"the body is over {MAX_BODY_BYTES:,} bytes")
    except ClientDisconnect:
        return Response(status_code=400)
    if not signed(raw, headers.get("x-shopify-hmac-sha256"), secret):
        forged.log("shopify: a webhook not signed with ROKT_EDGE_SHOPIFY_WEBHOOK_SECRET (401)")
        return error(401, "unauthorized", BAD_SIGNATURE)
    topic = headers.get("x-shopify-topic", ORDER_TOPICS[0]).strip().lower()
    if topic not in ORDER_TOPICS:
        topics = " or ".join(ORDER_TOPICS)
        return error(400, "unsupported_topic", f"this webhook takes {topics}, not {topic}")
    received_at = edge.clock()
    try:
        event = read_order(raw, received_at)
    except Refusal as refusal:
        return refusal.response
    unstored = await store(edge, arrival(event, received_at), [event], started)
    if unstored is not None:
        return unstored
    return JSONResponse({"success": True})


def routes(settings: Settings) -> list[BaseRoute]:
    return [Route(settings.shopify_orders_path, receive, methods=["POST"])]


SOURCE: Final = Source(NAME, browser=False, read=arrived_events, routes=routes)
