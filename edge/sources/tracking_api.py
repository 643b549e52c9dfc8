"""The tracking API, compatible with Segment's HTTP Tracking API and with analytics.js.

    POST /v1/track /v1/identify /v1/page /v1/screen /v1/group /v1/alias     one event
    POST /v1/batch   {"batch": [events], "context": {...}, "integrations": {...}, "sentAt": ...}
    POST /v1/t /v1/i /v1/p /v1/s /v1/g /v1/a, /v1/b (a batch)     the same, as analytics.js
                     posts them under its `apiHost` (`edge.sources.analytics_js`)

Per request:

    write key ─▶ content type ─▶ body (gzip or not) within the size limits ─▶ JSON ─▶ events
    (a single-event route sets `type`; a batch's top-level context and integrations are merged
    into each event, the event's own keys winning) ─▶ one durable write of the request's
    arrival ─▶ 200 {"success": true}

A browser's call (it says its `Origin`, or its events name analytics.js as their library) is
believed about the shopper, as the beacon is; a server's call never is: its events get what a
browser showed for the same ids (`edge.capture.attribution`): a server's call is stored as this
source's arrival, a browser's as analytics.js's. Cross-origin calls must come from
`ROKT_EDGE_ALLOWED_ORIGINS` (CORS, in `edge.app`). Without any write key configured the API
refuses everything. Authentication, limits and answers: docs/http-api.md#the-tracking-api-post-v1.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import time
import zlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from edge.capture.attribution import answer_cookie
from edge.capture.client_ip import client_ip, is_https, request_hosts
from edge.capture.cookies import Visitor
from edge.events import ArrivalDefaults, Event, EventError, parse_json
from edge.service import Edge
from edge.settings import Settings
from edge.source import Source
from edge.sources.requests import (
    JSON_TYPES,
    ORIGIN_REFUSED,
    Refusal,
    TooLarge,
    error,
    header_map,
    origin_allowed,
    overloaded,
    rate_limited,
    read_body,
    same_origin,
    sent_cookie,
    store,
)
from edge.store.values import Arrival

NAME: Final = "api"  # a server's call
SINGLE_TYPES: Final = ("track", "identify", "page", "screen", "group", "alias")
BROWSER_LIBRARY: Final = "analytics.js"  # context.library.name of analytics.js's events
BROWSER_SOURCE: Final = "analytics.js"  # a browser's call (`edge.sources.analytics_js`)
MAX_EVENT_BYTES: Final = 32 * 1024
MAX_BATCH_BYTES: Final = 500 * 1024
# Keys of a request body that describe the request, not the event.
REQUEST_KEYS: Final = ("writeKey", "sentAt")
NO_WRITE_KEYS: Final = (
    "the tracking API is off: no write keys are configured (set ROKT_EDGE_WRITE_KEYS)"
)
BAD_WRITE_KEY: Final = "a valid write key is required: HTTP Basic user name, or writeKey"
KEY_FAILURES: Final = "too many requests with a wrong write key from this address; retry later"


def routes(settings: Settings) -> list[BaseRoute]:
    """Segment's routes: one per event type, and the batch."""
    single = [Route(f"/v1/{kind}", single_endpoint(kind), methods=["POST"])
              for kind in SINGLE_TYPES]  # fmt: skip
    return [*single, Route("/v1/batch", batch, methods=["POST"])]


def single_endpoint(kind: str) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        return await handle(request, kind)

    endpoint.__name__ = kind
    return endpoint


async def batch(request: Request) -> Response:
    return await handle(request, None)


# -- reading a request -------------------------------------------------------------------------


def basic_user(authorization: str | None) -> str | None:
    """The user name of an HTTP Basic `Authorization` header; None when there is none."""
    if not authorization:
        return None
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):  # ValueError: not ASCII (UnicodeDecodeError is one)
        return ""
    return decoded.partition(":")[0]


def valid_key(candidate: Any, keys: Sequence[str]) -> bool:
    """Compared in constant time against every configured key."""
    if not isinstance(candidate, str) or not candidate:
        return False
    given = candidate.encode("utf-8")
    return any(hmac.compare_digest(given, key.encode("utf-8")) for key in keys)


def gunzip(data: bytes, limit: int) -> bytes:
    """A gzip body, refusing to inflate past `limit` bytes (a small body can inflate to GBs)."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        inflated = inflater.decompress(data, limit + 1)
    except zlib.error as problem:
        raise Refusal(400, "invalid_encoding", f"the body is not valid gzip: {problem}") from None
    if len(inflated) > limit or inflater.unconsumed_tail:
        raise TooLarge
    if not inflater.eof:
        raise Refusal(400, "invalid_encoding", "the gzip body is truncated")
    if inflater.unused_data:
        raise Refusal(400, "invalid_encoding", "the body holds bytes after its gzip stream")
    return inflated


async def read_document(request: Request, limit: int) -> tuple[dict[str, Any], bytes]:
    """The request's JSON object and its text, decompressed, within `limit` bytes; Refusal
    otherwise."""
    content_type = request.headers.get("content-type", "application/json")
    media = content_type.split(";")[0].strip().lower()
    if media not in JSON_TYPES:
        raise Refusal(415, "unsupported_media_type", f"send application/json, not {media}")
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("identity", "gzip"):
        raise Refusal(415, "unsupported_encoding", f"send gzip or no encoding, not {encoding}")
    try:
        raw = await read_body(request, limit)
        if encoding == "gzip":
            raw = gunzip(raw, limit)
    except TooLarge:
        raise Refusal(413, "too_large", f"the body is over {limit:,} bytes") from None
    try:
        document = parse_json(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as problem:  # nested too deep
        raise Refusal(400, "invalid_json", f"the body is not JSON: {problem}") from None
    if not isinstance(document, dict):
        raise Refusal(400, "invalid_body", "the body must be a JSON object")
    return document, raw


def authorize(header: str | None, document: dict[str, Any] | None, keys: Sequence[str]) -> bool:
    """Basic auth's user name (from the Authorization `header`), or else the body's writeKey,
    must be a configured key.

    Called first without the body (a bad or missing header with no body yet is undecided) and
    again with it."""
    user = basic_user(header)
    if user is not None and valid_key(user, keys):
        return True
    return document is not None and valid_key(document.get("writeKey"), keys)


def raw_events(document: dict[str, Any], kind: str | None) -> list[Any]:
    """The events of a body: the body itself with its `type` set by the route, or the batch's,
    each with the batch's context and integrations merged in (the event's own keys win)."""
    if kind is not None:
        event = {key: value for key, value in document.items() if key not in REQUEST_KEYS}
        event["type"] = kind
        return [event]
    events = document.get("batch")
    if not isinstance(events, list):
        raise Refusal(400, "invalid_body", 'a batch is {"batch": [events]}')
    shared = {}
    for name in ("context", "integrations"):
        value = document.get(name)
        if value is None:
            continue
        if not isinstance(value, dict):
            raise Refusal(400, "invalid_body", f"{name}: must be an object")
        shared[name] = value
    if not events:
        raise Refusal(400, "invalid_event", "the batch holds no events")
    if not shared:
        return events
    merged: list[Any] = []
    for event in events:
        if isinstance(event, dict):
            event = dict(event)
            for name, values in shared.items():
                own = event.get(name)
                event[name] = {**values, **own} if isinstance(own, dict) else (own or values)
        merged.append(event)
    return merged


def parse_events(
    items: list[Any], defaults: ArrivalDefaults
) -> tuple[list[Event], list[dict[str, Any]], int]:
    """Valid events, the problems of the others (by index), and how many were over 32 KB."""
    events: list[Event] = []
    problems: list[dict[str, Any]] = []
    oversized = 0
    for index, item in enumerate(items):
        text = json.dumps(item, separators=(",", ":"), ensure_ascii=False)
        size = len(text.encode("utf-8", "surrogatepass"))  # a lone surrogate: refused by parse
        if size > MAX_EVENT_BYTES:
            message = f"event {index}: {size:,} bytes, over the {MAX_EVENT_BYTES:,}-byte limit"
            problems.append({"event": index, "field": "", "message": message})
            oversized += 1
            continue
        try:
            events.append(defaults.parse(item, index))
        except EventError as bad:
            problems.append({"event": index, "field": bad.field, "message": str(bad)})
    return events, problems, oversized


# -- handling ----------------------------------------------------------------------------------


def arrived_events(arrival: Arrival) -> list[Event]:
    """The valid events of a stored tracking API request, as intake read them."""
    document = json.loads(arrival.body)
    items = raw_events(document, arrival.kind)
    defaults = ArrivalDefaults(arrival.received_at, arrival.body, document.get("sentAt"))
    return parse_events(items, defaults)[0]


async def handle(request: Request, kind: str | None) -> Response:
    edge: Edge = request.app.state.edge
    settings = edge.settings
    keys = settings.write_keys
    started = time.perf_counter()
    if not keys:
        return error(401, "unauthorized", NO_WRITE_KEYS)
    headers = header_map(request)
    peer = request.client.host if request.client else None
    ip = client_ip(peer, headers, settings.trusted_proxies, settings.client_ip_header)
    failures = edge.key_failures
    if failures.exhausted(ip or "unknown"):  # before the body: a flood of bad keys is cheap
        return rate_limited(failures, ip or "unknown", KEY_FAILURES)
    header = headers.get("authorization")
    if basic_user(header) is not None and not authorize(header, None, keys):
        failures.allow(ip or "unknown")
        return error(401, "unauthorized", BAD_WRITE_KEY)
    if edge.processor is not None and edge.processor.overloaded(edge.clock()):
        return overloaded()
    origin = headers.get("origin")
    hosts = request_hosts(peer, headers, settings.trusted_proxies) if origin else []
    if not origin_allowed(origin, hosts, settings.allowed_origins):
        return error(403, "origin_not_allowed", ORIGIN_REFUSED)
    limit = MAX_BATCH_BYTES if kind is None else MAX_EVENT_BYTES
    try:
        document, body = await read_document(request, limit)
        if not authorize(header, document, keys):
            failures.allow(ip or "unknown")
            return error(401, "unauthorized", BAD_WRITE_KEY)
        if "writeKey" in document:  # a secret: the stored arrival does without it
            document = {name: value for name, value in document.items() if name != "writeKey"}
            body = json.dumps(document, separators=(",", ":")).encode()
        received_at = edge.clock()
        defaults = ArrivalDefaults(received_at, body, document.get("sentAt"))
        events, problems, oversized = parse_events(raw_events(document, kind), defaults)
    except Refusal as refusal:
        return refusal.response
    except ClientDisconnect:
        return Response(status_code=400)
    if not events:
        status, code = (413, "too_large") if oversized == len(problems) else (400, "invalid_event")
        return error(status, code, problems[0]["message"], events=problems)
    visitor: Visitor | None = None
    if from_browser(origin, events):
        if edge.limiter is not None and not edge.limiter.allow(ip or "unknown"):
            return rate_limited(edge.limiter, ip or "unknown")
        user_agent, gpc = headers.get("user-agent"), headers.get("sec-gpc", "").strip() == "1"
        cookie = edge.cookies.read(sent_cookie(headers, settings.cookie_name))
        visitor, all_private = answer_cookie(settings, cookie, events, gpc, user_agent, received_at)
        arrival = Arrival(
            BROWSER_SOURCE, received_at, body, kind=kind,
            ip=None if all_private else ip, user_agent=None if all_private else user_agent,
            gpc=gpc, cookie_anonymous_id=cookie.anonymous_id, cookie_click_id=cookie.click_id,
            cookie_click_seen_at=cookie.click_seen_at,
        )  # fmt: skip
        if origin and not same_origin(origin, hosts):
            visitor = None  # a cookie set in answer to another site's call would be third-party
    else:
        arrival = Arrival(NAME, received_at, body, kind=kind)
    unstored = await store(edge, arrival, events, started)
    if unstored is not None:
        return unstored
    payload: dict[str, Any] = {"success": True}
    if problems:
        payload.update(accepted=len(events), errors=problems)
    response = JSONResponse(payload)
    if visitor is not None:
        secure = is_https(
            request.scope.get("scheme", "http"), peer, headers, settings.trusted_proxies
        )
        response.headers.append("set-cookie", edge.cookies.header(visitor, secure=secure))
    return response


def from_browser(origin: str | None, events: Sequence[Event]) -> bool:
    """Whether a call was made by a browser (analytics.js): it says where it came from
    (`Origin`), or every event names analytics.js as its library. A browser's call is believed
    about the shopper (IP address, user agent, cookie), a server's never is."""
    return origin is not None or all(_library(event) == BROWSER_LIBRARY for event in events)


def _library(event: Event) -> Any:
    context = event.body.get("context")
    library = context.get("library") if isinstance(context, dict) else None
    return library.get("name") if isinstance(library, dict) else None


SOURCE: Final = Source(NAME, browser=False, read=arrived_events, routes=routes)
