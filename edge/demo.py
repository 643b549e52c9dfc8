"""The /demo pages: a little shop that shows a newcomer the whole flow in a minute.

    GET /demo               landing page (arrive with ?rtid=…; without one, a link adds a sample)
    GET /demo/product       a product page
    GET /demo/checkout      a checkout whose button fires `Order Completed`
    GET /demo/inspect       the panel: what the edge received and what it would send to Rokt
    GET /demo/api/recent    the panel's data (JSON), read from the store
    GET /demo/demo.css      the pages' style sheet
    GET /favicon.ico        the demo's icon, served by edge.app for every page (`ICON`)

The shop pages include the snippet exactly as a merchant's pages do (the queue stub, then
`/rokt-edge.js`) and post to the real beacon, `/e`: nothing in the flow is demo-only but the
pages. Everything is plain HTML in static/demo/, with no external asset (no CDN).

Safety: the routes exist only when `ROKT_EDGE_DEMO` is true, or unset in dry run; the panel's
data only in dry run, only on loopback unless `ROKT_EDGE_DEMO=true`, and always masked (`mask`).
What the panel reads, and why an event may have no name there: docs/operations.md#the-demo.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import re
from collections import OrderedDict
from typing import Any, Final
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from edge.assets import read_static
from edge.capture.enrich import event_click_id
from edge.events import Event
from edge.settings import CLIENT_IP_HEADERS, Settings
from edge.store import Store
from edge.store.values import DEAD, DELIVERED, DRY_RUN, SKIPPED
from edge.useragent import parse_user_agent

log = logging.getLogger("rokt_edge.demo")

PAGES: Final = {
    "/demo": "landing.html",
    "/demo/product": "product.html",
    "/demo/checkout": "checkout.html",
    "/demo/inspect": "inspect.html",
}
STYLE: Final = "demo.css"
ICON: Final = "favicon.ico"  # 16x16, in static/demo/ (shipped with the pages)
RECENT: Final = 30  # rows of each kind the panel shows
REMEMBERED: Final = 256  # events `Recent` describes: more than the panel's rows need
NOT_DRY_RUN: Final = (
    "the demo panel shows what the edge received only in dry run (no credentials set)"
)
NOT_LOCAL: Final = (
    "the demo panel shows what the edge received only to a browser on the edge's own machine "
    "(http://127.0.0.1), or anywhere with ROKT_EDGE_DEMO=true"
)
ROKT_MODULE: Final = "1277"
FORWARDED: Final = (*CLIENT_IP_HEADERS, "x-real-ip", "x-forwarded-host")
SHOWN: Final = 6  # characters of an identifier the panel shows
# Keys (lower case, letters and digits only) whose values identify a person or a click.
PERSONAL: Final = frozenset(
    {
        "key", "userid", "anonymousid", "customerid", "other", "other2", "other3", "other4",
        "email", "emailsha256", "mobile", "mobilesha256", "phone", "phonenumber", "firstname",
        "lastname", "firstnamesha256", "lastnamesha256", "address", "address1", "address2",
        "street", "city", "zip", "zipcode", "postcode", "postalcode", "dob", "dateofbirth",
        "birthday", "clickid", "sentclickid", "rtid", "passbackconversiontrackingid",
    }
)  # fmt: skip
USER_AGENT_KEYS: Final = frozenset({"useragent", "httpheaderuseragent"})
_EMAIL = re.compile(r"^[^@\s]+@([^@\s]+)$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def enabled(settings: Settings) -> bool:
    """`ROKT_EDGE_DEMO` when set, else on exactly when nothing is sent to Rokt (dry run)."""
    return settings.demo if settings.demo is not None else settings.dry_run


def shows_traffic(settings: Settings) -> bool:
    """Whether the panel may show what the edge received: the demo is on, in dry run."""
    return enabled(settings) and settings.dry_run


class Recent:
    """What the latest events were, by message id: their source, type, name, page path and the
    click id they carried (what the store does not keep). Processing tells it each event it
    takes (`add`), in memory only; with `size` 0 (the panel shows no traffic) it keeps nothing."""

    def __init__(self, size: int = REMEMBERED) -> None:
        self.size = size
        # The event as processing took it; described only when the panel asks (`get`), so that
        # processing pays a dict entry per event, not the description.
        self._events: OrderedDict[str, tuple[str, Event]] = OrderedDict()

    def add(self, source: str, event: Event) -> None:
        if not self.size:
            return
        self._events.pop(event.message_id, None)  # a slice processed again: one entry
        self._events[event.message_id] = (source, event)
        if len(self._events) > self.size:
            self._events.popitem(last=False)

    def get(self, message_id: str) -> dict[str, Any] | None:
        found = self._events.get(message_id)
        if found is None:
            return None
        source, event = found
        body = event.body
        return {
            "source": source,
            "type": event.type,
            "name": body.get("event") if event.type == "track" else body.get("name"),
            "page": _path(body) if event.type == "page" else None,
            "click_id": event_click_id(body),
        }


def _path(body: dict[str, Any]) -> str | None:
    """A page view's path (never its query, which may hold the click id), to tell pages apart."""
    page = body.get("context", {}).get("page")
    if not isinstance(page, dict):
        return None
    path, url = page.get("path"), page.get("url")
    if not isinstance(path, str) and isinstance(url, str):
        with contextlib.suppress(ValueError):
            path = urlsplit(url).path
    return path if isinstance(path, str) and path else None


def routes(settings: Settings) -> list[BaseRoute]:
    """The demo's routes, or none when the demo is off."""
    if not enabled(settings):
        return []
    files = {name: read_static(f"demo/{name}") for name in (*PAGES.values(), STYLE)}
    if None in files.values():
        # as for the snippet (edge.app): the service still starts, without the demo
        log.warning("static/demo is incomplete: no /demo pages")
        return []
    pages = {path: files[name] or b"" for path, name in PAGES.items()}
    style = files[STYLE] or b""
    found: list[BaseRoute] = [
        Route(path, _static(body, "text/html")) for path, body in pages.items()
    ]
    found.append(Route(f"/demo/{STYLE}", _static(style, "text/css")))
    found.append(Route("/demo/api/recent", recent))
    return found


def _static(body: bytes, media_type: str) -> Any:
    async def serve(request: Request) -> Response:
        # no-store: a newcomer editing static/demo/ sees the change on the next reload
        return Response(body, media_type=media_type, headers={"Cache-Control": "no-store"})

    return serve


async def recent(request: Request) -> Response:
    """What the edge received lately, and what it would have sent to Rokt, masked (dry run
    only; on loopback only, unless ROKT_EDGE_DEMO is true)."""
    settings: Settings = request.app.state.edge.settings
    store: Store = request.app.state.edge.store
    if not settings.dry_run:
        return JSONResponse({"error": {"code": "not_dry_run", "message": NOT_DRY_RUN}}, 403)
    if settings.demo is not True and not on_loopback(request):
        return JSONResponse({"error": {"code": "not_local", "message": NOT_LOCAL}}, 403)
    bodies = await store.dry_run_bodies(RECENT)
    events, visitors = await asyncio.to_thread(_read, store, RECENT)
    requests = [{"at": b.at, "path": b.path, "body": json.loads(b.body)} for b in bodies]
    _link(events, requests)
    _describe(events, request.app.state.edge.recent)
    document = {"dry_run": True, "visitors": visitors, "events": events, "requests": requests}
    return JSONResponse(mask(document), headers={"Cache-Control": "no-store"})


def on_loopback(request: Request) -> bool:
    """Made on the edge's own machine: to a loopback address, from one, and not through a
    proxy (which would connect from loopback on behalf of anyone)."""
    addresses = [request.scope.get("server"), request.scope.get("client")]
    if not all(address and _is_loopback(address[0]) for address in addresses):
        return False
    return not any(name.decode("latin-1") in FORWARDED for name, _ in request.scope["headers"])


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def mask(value: Any, key: str = "") -> Any:
    """`value` with its personal data masked, wherever it is: by key (`PERSONAL`, user agents;
    contract B's `{"name": …, "value": …}` pairs by their name), and any IP address or email
    whatever its key."""
    if isinstance(value, dict):
        if set(value) == {"name", "value"} and isinstance(value["name"], str):
            return {"name": value["name"], "value": mask(value["value"], value["name"])}
        return {name: mask(item, name) for name, item in value.items()}
    if isinstance(value, list):
        return [mask(item, key) for item in value]
    if not isinstance(value, str):
        return value
    normalized = re.sub(r"[^a-z0-9]", "", key.lower())
    if normalized in USER_AGENT_KEYS:
        return _user_agent(value)
    network = _network(value)
    if network is not None:
        return network
    email = _EMAIL.match(value)
    if email:
        return f"{value[0]}…@{email.group(1)}"
    if normalized in PERSONAL or _SHA256.match(value):
        return _identifier(value)
    return value


def _identifier(text: str) -> str:
    """Its first characters (at most half of it), enough to tell two apart in the panel."""
    if re.match(r"^[au]:", text):  # a visitor's key: its kind, then the id
        return text[:2] + _identifier(text[2:])
    return text[: min(SHOWN, len(text) // 2)] + "…"


def _network(text: str) -> str | None:
    """An IP address as its network: /24 for IPv4, /48 for IPv6; None if it is no address."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def _user_agent(text: str) -> str:
    agent = parse_user_agent(text)
    browser = " ".join(
        part for part in (agent.browser, (agent.browser_version or "").split(".")[0]) if part
    )
    return f"{browser or 'unknown browser'} on {agent.os or 'unknown system'} ({agent.device_type})"


def _read(store: Store, limit: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Recent intake decisions and visitors, read beside the store's writer (`recent_sync`)."""
    events = [
        {
            "message_id": outcome.message_id,
            "mapping": outcome.mapping,
            "at": outcome.at,
            "outcome": _outcome(outcome.state, outcome.reason),
        }
        for outcome in store.recent_sync(limit).outcomes
    ]
    visitors = [
        {
            "key": key,
            "click_id": found.click_id,
            "click_seen_at": found.click_seen_at,
            "ip": found.ip,
            "user_agent": found.user_agent,
            "seen_at": found.seen_at,
        }
        for key, found in store.recent_identities_sync(limit)
    ]
    return events, visitors


def _outcome(state: str, reason: str | None) -> str:
    if state == SKIPPED:
        return f"skipped: {reason}"
    if state == DRY_RUN:
        return "recorded in dry run (not sent)"
    if state == DELIVERED:
        return "delivered"
    if state == DEAD:
        return f"dead: {reason}"
    return "waiting to be sent"  # pending, retrying or in flight


def _describe(events: list[dict[str, Any]], recent: Recent) -> None:
    """Say what each received event was, as far as `recent` remembers (else None: unknown)."""
    for event in events:
        described = recent.get(event["message_id"])
        event.update(described or dict.fromkeys(("source", "type", "name", "page", "click_id")))


def _link(events: list[dict[str, Any]], requests: list[dict[str, Any]]) -> None:
    """Give each received event the click id its batch would carry, found by message id."""
    click_ids: dict[str, str | None] = {}
    for request in requests:
        body = request["body"]
        for batch in body if isinstance(body, list) else [body]:
            module = batch.get("integration_attributes", {}).get(ROKT_MODULE, {})
            for event in batch.get("events", []):
                message_id = event.get("data", {}).get("source_message_id")
                if message_id is not None:
                    click_ids[message_id] = module.get("passbackconversiontrackingid")
    for event in events:
        if event["message_id"] in click_ids:
            event["sent_click_id"] = click_ids[event["message_id"]]
