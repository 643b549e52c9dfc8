"""`POST /e`: the first-party beacon the browser snippet sends events to.

    rate limit per client IP ─▶ origin ─▶ content type ─▶ body size ─▶ JSON ─▶ events (one, a
    batch or an array), each validated ─▶ the visitor cookie's next value ─▶ one durable write
    of the request's arrival ─▶ 200 and the refreshed visitor cookie

    later, in order (`edge.processing`, `edge.capture.attribution`): per event, privacy and bot
    checks, enrichment (click id from the event, the cookie or the identity store; IP; user
    agent), the pipeline ─▶ outbox items, skip records, identity links

A 2xx is sent only after the arrival is on disk; when the store cannot write, 503 tells the
snippet to keep the events and send them again. Every error is JSON: `{"error": {"code",
"message"}}`, and an event that cannot be read is named by its index and field. An arrival whose
events are all private (GPC, a consent denial) is stored without the IP address and user agent.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, NamedTuple
from urllib.parse import urlsplit

from starlette.requests import ClientDisconnect, Request, cookie_parser
from starlette.responses import JSONResponse, Response

from edge.capture.attribution import answer_cookie
from edge.capture.client_ip import client_ip, is_https, request_hosts
from edge.capture.short_form import expand
from edge.events import ArrivalDefaults, Event, EventError, parse_json
from edge.logs import Throttled
from edge.store.errors import StoreError
from edge.store.values import Arrival

if TYPE_CHECKING:
    from edge.app import Edge
    from edge.settings import Settings

log = logging.getLogger("rokt_edge.beacon")
refused = Throttled(log, logging.ERROR)  # one line per request while the store is down

JSON_TYPES: Final = ("text/plain", "application/json")
ORIGIN_REFUSED: Final = "this origin may not send events here (see ROKT_EDGE_ALLOWED_ORIGINS)"
CONTENT_TYPE_REFUSED: Final = "send JSON as text/plain or application/json"
RATE_LIMITED: Final = "too many requests from this client; retry later"
STORE_UNAVAILABLE: Final = "the events could not be stored; send them again"
OVERLOADED: Final = "too many events wait to be processed; send them again later"
OVERLOAD_RETRY_SECONDS: Final = 5


def error(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    headers = {key: str(value) for key, value in extra.pop("headers", {}).items()}
    return JSONResponse({"error": {"code": code, "message": message, **extra}}, status, headers)


def overloaded() -> JSONResponse:
    """The answer while processing is too far behind to take more (`edge.processing.shed`)."""
    return error(503, "overloaded", OVERLOADED, headers={"Retry-After": OVERLOAD_RETRY_SECONDS})


class TooLarge(Exception):
    pass


def header_map(request: Request) -> dict[str, str]:
    """The request's headers, the first of each name, decoded once: Starlette's `Headers.get`
    scans the raw list at every look-up, and a beacon makes a dozen (ASGI names are lowercase)."""
    found: dict[str, str] = {}
    for name, value in request.scope["headers"]:
        key = name.decode("latin-1")
        if key not in found:
            found[key] = value.decode("latin-1")
    return found


async def read_body(request: Request, limit: int, declared: str | None = None) -> bytes:
    """The body, refusing to read past `limit` bytes whatever Content-Length claims. Read from
    the server's messages as they come: Starlette's `body()` goes through an async generator,
    which costs a beacon more than its JSON does."""
    if declared is None:
        declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await request.receive()
        if message["type"] != "http.request":  # http.disconnect: the client went away
            raise ClientDisconnect
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise TooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def events_of(document: Any) -> list[Any] | None:
    """The events of a body: one event, `{"batch": [...]}`, or a plain array."""
    if isinstance(document, list):
        return document
    if isinstance(document, dict):
        batch = document.get("batch")
        if isinstance(batch, list) and "type" not in document:
            return batch
        return [document]
    return None


def origin_allowed(origin: str | None, hosts: list[str], allowed: tuple[str, ...]) -> bool:
    """A text/plain POST needs no CORS preflight, so the browser sends it from any site: the
    edge itself refuses origins that are neither its own nor in `ROKT_EDGE_ALLOWED_ORIGINS`."""
    if not origin:  # not a browser's cross-site fetch (curl, a server, an old same-origin beacon)
        return True
    if origin.rstrip("/").lower() in allowed:
        return True
    return same_origin(origin, hosts)


def sent_cookie(headers: Mapping[str, str], name: str) -> str | None:
    """A cookie's value, the Cookie header parsed only when one was sent (Starlette's
    `request.cookies` looks for the header afresh)."""
    return cookie_parser(headers["cookie"]).get(name) if "cookie" in headers else None


def same_origin(origin: str, hosts: list[str]) -> bool:
    """Whether a browser's `Origin` names the host the request was sent to (`request_hosts`)."""
    try:
        netloc = urlsplit(origin).netloc
    except ValueError:  # "http://[": not an origin a browser sends
        return False
    return netloc.lower() in hosts


class Refusal(Exception):
    """A request the beacon refuses as a whole; becomes a JSON error response."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.response = error(status, code, message, **extra)


class Read(NamedTuple):
    events: list[Event]
    problems: list[dict[str, Any]]  # the invalid events, by index and field
    body: bytes  # the body as it came: the arrival keeps it (see `beacon_events`)


async def read_events(
    request: Request, headers: Mapping[str, str], settings: Settings, received_at: float
) -> Read:
    """The request's valid events and the problems of the invalid ones; Refusal otherwise."""
    origin = headers.get("origin")
    if origin:  # the hosts it may name are worked out only for a browser's cross-site fetch
        peer = request.client.host if request.client else None
        hosts = request_hosts(peer, headers, settings.trusted_proxies)
        if not origin_allowed(origin, hosts, settings.allowed_origins):
            raise Refusal(403, "origin_not_allowed", ORIGIN_REFUSED)
    content_type = headers.get("content-type", "text/plain").split(";")[0].strip().lower()
    if content_type not in JSON_TYPES:
        raise Refusal(415, "unsupported_media_type", f"{CONTENT_TYPE_REFUSED}, not {content_type}")
    try:
        raw = await read_body(request, settings.beacon_max_bytes, headers.get("content-length"))
    except TooLarge:
        limit_text = f"{settings.beacon_max_bytes:,}"
        raise Refusal(413, "too_large", f"the body is over {limit_text} bytes") from None
    try:
        document = parse_json(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as problem:  # nested too deep
        raise Refusal(400, "invalid_json", f"the body is not JSON: {problem}") from None
    raw_events = events_of(document)
    if raw_events is None:
        raise Refusal(400, "invalid_body", 'send one event, {"batch": [events]} or [events]')
    limit = settings.beacon_max_events
    if len(raw_events) > limit:
        raise Refusal(413, "too_many_events", f"{len(raw_events)} events; at most {limit}")
    events, problems = beacon_events(raw_events, ArrivalDefaults(received_at, raw))
    if not events:
        message = problems[0]["message"] if problems else "no events in the body"
        raise Refusal(400, "invalid_event", message, events=problems)
    return Read(events, problems, raw)


def beacon_events(
    raw_events: list[Any], defaults: ArrivalDefaults
) -> tuple[list[Event], list[dict[str, Any]]]:
    """The valid events of a beacon body and the problems of the others. Run at intake and again
    at processing on the stored body, with the same defaults: the same events both times."""
    events: list[Event] = []
    problems: list[dict[str, Any]] = []
    for index, raw_event in enumerate(raw_events):
        try:
            events.append(defaults.parse(expand(raw_event, index), index))
        except EventError as bad:
            problems.append({"event": index, "field": bad.field, "message": str(bad)})
    return events, problems


def arrived_events(arrival: Arrival) -> list[Event]:
    """The valid events of a stored beacon request, as intake read them."""
    raw_events = events_of(json.loads(arrival.body)) or []
    return beacon_events(raw_events, ArrivalDefaults(arrival.received_at, arrival.body))[0]


async def beacon(request: Request) -> Response:
    edge: Edge = request.app.state.edge
    settings = edge.settings
    started = time.perf_counter()
    peer = request.client.host if request.client else None
    headers = header_map(request)
    ip = client_ip(peer, headers, settings.trusted_proxies, settings.client_ip_header)
    if edge.limiter is not None and not edge.limiter.allow(ip or "unknown"):
        wait = edge.limiter.retry_after(ip or "unknown")
        return error(429, "rate_limited", RATE_LIMITED, headers={"Retry-After": wait})
    now = edge.clock()
    if edge.processor is not None and edge.processor.overloaded(now):
        return overloaded()
    try:
        events, problems, body = await read_events(request, headers, settings, now)
    except Refusal as refusal:
        return refusal.response
    except ClientDisconnect:
        return Response(status_code=400)
    user_agent, gpc = headers.get("user-agent"), headers.get("sec-gpc")
    cookie = edge.cookies.read(sent_cookie(headers, settings.cookie_name))
    gpc_on = gpc is not None and gpc.strip() == "1"
    visitor, all_private = answer_cookie(settings, cookie, events, gpc_on, user_agent, now)
    arrival = Arrival(
        "beacon", now, body,
        ip=None if all_private else ip, user_agent=None if all_private else user_agent,
        gpc=gpc_on, cookie_anonymous_id=cookie.anonymous_id,
        cookie_click_id=cookie.click_id, cookie_click_seen_at=cookie.click_seen_at,
    )  # fmt: skip
    try:
        await edge.commit_arrival(arrival, events, started)
    except StoreError as failure:
        refused.log("beacon: the store could not write (answered 503): %s", failure)
        return error(503, "store_unavailable", STORE_UNAVAILABLE)
    if problems:
        payload = {"success": True, "accepted": len(events), "errors": problems}
        response: Response = JSONResponse(payload)
    else:
        response = Response(accepted(len(events)), media_type="application/json")
    if visitor is not None:
        scheme = request.scope.get("scheme", "http")
        secure = is_https(scheme, peer, headers, settings.trusted_proxies)
        response.headers.append("set-cookie", edge.cookies.header(visitor, secure=secure))
    return response


@functools.lru_cache(maxsize=128)
def accepted(count: int) -> bytes:
    """The answer to a request whose events were all stored (the same few, again and again)."""
    return json.dumps({"success": True, "accepted": count}, separators=(",", ":")).encode()
