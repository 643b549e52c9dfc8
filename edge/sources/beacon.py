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
import time
from collections.abc import Mapping
from typing import Any, Final, NamedTuple

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from edge.capture.attribution import answer_cookie
from edge.capture.client_ip import client_ip, is_https, request_hosts
from edge.capture.short_form import expand
from edge.events import ArrivalDefaults, Event, EventError, parse_json
from edge.service import Edge
from edge.settings import Settings
from edge.source import Source
from edge.sources.requests import (
    JSON_TYPES,
    ORIGIN_REFUSED,
    Refusal,
    TooLarge,
    header_map,
    origin_allowed,
    overloaded,
    rate_limited,
    read_body,
    sent_cookie,
    store,
)
from edge.store.values import Arrival

NAME: Final = "beacon"
PATH: Final = "/e"
CONTENT_TYPE_REFUSED: Final = "send JSON as text/plain or application/json"


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
        return rate_limited(edge.limiter, ip or "unknown")
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
        NAME, now, body,
        ip=None if all_private else ip, user_agent=None if all_private else user_agent,
        gpc=gpc_on, cookie_anonymous_id=cookie.anonymous_id,
        cookie_click_id=cookie.click_id, cookie_click_seen_at=cookie.click_seen_at,
    )  # fmt: skip
    unstored = await store(edge, arrival, events, started)
    if unstored is not None:
        return unstored
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


def routes(settings: Settings) -> list[BaseRoute]:
    return [Route(PATH, beacon, methods=["POST"])]


SOURCE: Final = Source(NAME, browser=True, read=arrived_events, routes=routes)
