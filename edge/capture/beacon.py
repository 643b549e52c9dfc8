"""`POST /e`: the first-party beacon the browser snippet sends events to.

    rate limit per client IP ─▶ origin ─▶ content type ─▶ body size ─▶ JSON ─▶ events (one, a
    batch or an array), each validated ─▶ the visitor cookie's next value ─▶ one durable write
    of the request's arrival ─▶ 200 and the refreshed visitor cookie

    later, in order (`edge.processing`): per event, privacy and bot checks, enrichment (click id
    from the event, the cookie or the identity store; IP; user agent), the pipeline ─▶ outbox
    items, skip records, identity links

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
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, NamedTuple
from urllib.parse import urlsplit

from starlette.requests import ClientDisconnect, Request, cookie_parser
from starlette.responses import JSONResponse, Response

from edge.capture.client_ip import client_ip, is_https, request_hosts
from edge.capture.cookies import Visitor
from edge.capture.enrich import Known, click_of, cookie_click, enrich, event_click_id
from edge.capture.privacy import privacy_skip
from edge.capture.short_form import expand
from edge.events import ArrivalDefaults, Event, EventError, lone_surrogate
from edge.intake import Collected
from edge.store.base import Arrival, IdentityUpdate, StoreError
from edge.useragent import parse_user_agent

if TYPE_CHECKING:
    from edge.app import Edge
    from edge.processing import IdentityView
    from edge.settings import Settings

log = logging.getLogger("rokt_edge.beacon")

BOT: Final = "bot"
JSON_TYPES: Final = ("text/plain", "application/json")
ORIGIN_REFUSED: Final = "this origin may not send events here (see ROKT_EDGE_ALLOWED_ORIGINS)"
CONTENT_TYPE_REFUSED: Final = "send JSON as text/plain or application/json"
RATE_LIMITED: Final = "too many requests from this client; retry later"
STORE_UNAVAILABLE: Final = "the events could not be stored; send them again"
LONE_SURROGATE: Final = (
    "the body holds a string with an unpaired surrogate escape (such as \\ud800), which is not text"
)
MAX_COOKIE_ID: Final = 200  # characters of an anonymous id the cookie keeps


def error(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    headers = {key: str(value) for key, value in extra.pop("headers", {}).items()}
    return JSONResponse({"error": {"code": code, "message": message, **extra}}, status, headers)


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
    if "*" in allowed or origin.rstrip("/").lower() in allowed:
        return True
    try:
        netloc = urlsplit(origin).netloc
    except ValueError:  # "http://[": not an origin a browser sends
        return False
    return netloc.lower() in hosts


def identity_keys(event: Event) -> tuple[str, ...]:
    keys = []
    if "anonymousId" in event.body:
        keys.append(f"a:{event.body['anonymousId']}")
    if "userId" in event.body:
        keys.append(f"u:{event.body['userId']}")
    return tuple(keys)


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
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as problem:  # nested too deep
        raise Refusal(400, "invalid_json", f"the body is not JSON: {problem}") from None
    if lone_surrogate(raw, document):
        raise Refusal(400, "invalid_json", LONE_SURROGATE)
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


class BeaconIntake(Collected):
    """One beacon request's events, processed from its arrival (see `edge.processing`)."""

    def __init__(self, edge: Edge, arrival: Arrival, view: IdentityView) -> None:
        self.edge = edge
        self.view = view
        self.ip = arrival.ip
        self.user_agent = arrival.user_agent
        self.gpc = "1" if arrival.gpc else None
        self.is_bot = is_bot(edge.settings, self.user_agent)
        self.visitor = Visitor(
            arrival.cookie_anonymous_id, arrival.cookie_click_id, arrival.cookie_click_seen_at
        )
        self.now = arrival.received_at
        self.window = edge.settings.attribution_window_days * 86400.0
        super().__init__()

    async def add(self, event: Event) -> None:
        reason = private(self.edge.settings, event, self.gpc)
        if reason is None and self.is_bot:
            reason = BOT
        if reason is not None:
            self.skip(event, reason)
            return
        known = await self._known_click(event)
        enriched = enrich(
            event, ip=self.ip, user_agent=self.user_agent, visitor=self.visitor, known=known,
            now=self.now,
        )  # fmt: skip
        self.collect(self.edge.pipeline.process(enriched.event))
        keys = identity_keys(enriched.event)
        if keys:
            self.identities.append(
                IdentityUpdate(
                    keys, enriched.click_id, enriched.click_seen_at, self.ip, self.user_agent
                )
            )
        anonymous_id = enriched.event.body.get("anonymousId") or self.visitor.anonymous_id
        self.visitor = remembered(
            self.visitor, anonymous_id, enriched.click_id, enriched.click_seen_at
        )

    async def _known_click(self, event: Event) -> Known | None:
        """The event's own click id wins; else the cookie's; else the identity store's."""
        if event_click_id(event.body) is not None:
            return None
        known = cookie_click(self.visitor, now=self.now, window_seconds=self.window)
        keys = identity_keys(event)
        if known is None and keys:
            found = await self.view.identity(keys, since=self.now - self.window)
            if found is not None and found.click_id and found.click_seen_at is not None:
                known = Known(found.click_id, found.click_seen_at, "identity")
        return known


def arrived_events(arrival: Arrival) -> list[Event]:
    """The valid events of a stored beacon request, as intake read them."""
    raw_events = events_of(json.loads(arrival.body)) or []
    return beacon_events(raw_events, ArrivalDefaults(arrival.received_at, arrival.body))[0]


async def process_beacon(
    edge: Edge, arrival: Arrival, events: list[Event], view: IdentityView, collected: Collected
) -> None:
    """What a beacon request's events produce, added to `collected`."""
    intake = BeaconIntake(edge, arrival, view)
    for event in events:
        await intake.add(event)
    collected.absorb(intake)


def is_bot(settings: Settings, user_agent: str | None) -> bool:
    return bool(settings.skip_bots and user_agent and parse_user_agent(user_agent).is_bot)


def private(settings: Settings, event: Event, gpc: str | None) -> str | None:
    return privacy_skip(
        event.body, gpc, honor_gpc=settings.honor_gpc, honor_consent=settings.honor_consent
    )


def remembered(
    visitor: Visitor, anonymous_id: str | None, click_id: str | None, seen_at: float | None
) -> Visitor:
    """What the visitor cookie holds after an event with these ids."""
    if anonymous_id is not None and len(anonymous_id) > MAX_COOKIE_ID:
        anonymous_id = visitor.anonymous_id  # browsers drop cookies over ~4 KB
    if click_id and seen_at is not None:
        return Visitor(anonymous_id, click_id, int(seen_at))
    return Visitor(anonymous_id, visitor.click_id, visitor.click_seen_at)


def answer_cookie(
    edge: Edge,
    visitor: Visitor,
    events: Sequence[Event],
    gpc: str | None,
    user_agent: str | None,
    now: float,
) -> tuple[Visitor | None, bool]:
    """The visitor cookie to set (None: a privacy signal, set none), and whether every event is
    private. The cookie learns the events' own click ids and anonymous ids by the rules
    processing follows (`edge.capture.enrich.click_of`); a click only the identity store knows
    reaches it on a later beacon."""
    settings = edge.settings
    window = settings.attribution_window_days * 86400.0
    reasons = [private(settings, event, gpc) for event in events]
    if any(reasons):
        return None, all(reasons)
    if is_bot(settings, user_agent):
        return visitor, False
    for event in events:
        body = event.body
        own = event_click_id(body)
        # As `BeaconIntake._known_click`: the cookie's click counts only for an event without one.
        known = None if own else cookie_click(visitor, now=now, window_seconds=window)
        click_id, seen_at, _ = click_of(own, known, now)
        anonymous_id = body.get("anonymousId") or visitor.anonymous_id
        visitor = remembered(visitor, anonymous_id, click_id, seen_at)
    return visitor, False


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
    try:
        events, problems, body = await read_events(request, headers, settings, now)
    except Refusal as refusal:
        return refusal.response
    except ClientDisconnect:
        return Response(status_code=400)
    user_agent, gpc = headers.get("user-agent"), headers.get("sec-gpc")
    # Parsed only when sent (Starlette's `request.cookies` looks for the header afresh).
    sent = (
        cookie_parser(headers["cookie"]).get(settings.cookie_name) if "cookie" in headers else None
    )
    cookie = edge.cookies.read(sent)
    visitor, all_private = answer_cookie(edge, cookie, events, gpc, user_agent, now)
    arrival = Arrival(
        "beacon", now, body,
        ip=None if all_private else ip, user_agent=None if all_private else user_agent,
        gpc=gpc is not None and gpc.strip() == "1", cookie_anonymous_id=cookie.anonymous_id,
        cookie_click_id=cookie.click_id, cookie_click_seen_at=cookie.click_seen_at,
    )  # fmt: skip
    try:
        await edge.commit_arrival(arrival, events, started)
    except StoreError as failure:
        log.error("beacon: the store could not write: %s", failure)
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
