"""`POST /e`: the first-party beacon the browser snippet sends events to.

    rate limit per client IP ─▶ content type ─▶ body size ─▶ JSON ─▶ events (one, a batch or an
    array) ─▶ per event: privacy and bot checks, enrichment, the pipeline ─▶ one durable write
    (outbox items, skip records, identity links) ─▶ 200 and a refreshed visitor cookie

A 2xx is sent only after the write is on disk; when the store cannot write, 503 tells the snippet
to keep the events and send them again. Every error is JSON: `{"error": {"code", "message"}}`,
and an event that cannot be read is named by its index and field.
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from edge.capture.client_ip import client_ip, is_https, request_hosts
from edge.capture.cookies import Visitor
from edge.capture.enrich import Enriched, Known, cookie_click, enrich, event_click_id
from edge.capture.privacy import privacy_skip
from edge.capture.short_form import expand
from edge.events import Event, EventError, parse_event
from edge.intake import Collected
from edge.store.base import IdentityUpdate, StoreError
from edge.useragent import parse_user_agent

if TYPE_CHECKING:
    from edge.app import Edge
    from edge.settings import Settings

log = logging.getLogger("rokt_edge.beacon")

BOT: Final = "bot"
JSON_TYPES: Final = ("text/plain", "application/json")
ORIGIN_REFUSED: Final = "this origin may not send events here (see ROKT_EDGE_ALLOWED_ORIGINS)"
CONTENT_TYPE_REFUSED: Final = "send JSON as text/plain or application/json"
RATE_LIMITED: Final = "too many requests from this client; retry later"
STORE_UNAVAILABLE: Final = "the events could not be stored; send them again"
MAX_COOKIE_ID: Final = 200  # characters of an anonymous id the cookie keeps


def error(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    headers = {key: str(value) for key, value in extra.pop("headers", {}).items()}
    return JSONResponse({"error": {"code": code, "message": message, **extra}}, status, headers)


class TooLarge(Exception):
    pass


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refusing to read past `limit` bytes whatever Content-Length claims."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge
        chunks.append(chunk)
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


async def read_events(request: Request, settings: Settings) -> tuple[list[Event], list[Any]]:
    """The request's valid events and the problems of the invalid ones; Refusal otherwise."""
    peer = request.client.host if request.client else None
    hosts = request_hosts(peer, request.headers, settings.trusted_proxies)
    if not origin_allowed(request.headers.get("origin"), hosts, settings.allowed_origins):
        raise Refusal(403, "origin_not_allowed", ORIGIN_REFUSED)
    content_type = request.headers.get("content-type", "text/plain").split(";")[0].strip().lower()
    if content_type not in JSON_TYPES:
        raise Refusal(415, "unsupported_media_type", f"{CONTENT_TYPE_REFUSED}, not {content_type}")
    try:
        raw = await read_body(request, settings.beacon_max_bytes)
    except TooLarge:
        limit_text = f"{settings.beacon_max_bytes:,}"
        raise Refusal(413, "too_large", f"the body is over {limit_text} bytes") from None
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as problem:  # nested too deep
        raise Refusal(400, "invalid_json", f"the body is not JSON: {problem}") from None
    raw_events = events_of(document)
    if raw_events is None:
        raise Refusal(400, "invalid_body", 'send one event, {"batch": [events]} or [events]')
    limit = settings.beacon_max_events
    if len(raw_events) > limit:
        raise Refusal(413, "too_many_events", f"{len(raw_events)} events; at most {limit}")
    events: list[Event] = []
    problems: list[dict[str, Any]] = []
    for index, raw_event in enumerate(raw_events):
        try:
            events.append(parse_event(expand(raw_event, index), index))
        except EventError as bad:
            problems.append({"event": index, "field": bad.field, "message": str(bad)})
    if not events:
        message = problems[0]["message"] if problems else "no events in the body"
        raise Refusal(400, "invalid_event", message, events=problems)
    return events, problems


class BeaconIntake(Collected):
    """One browser request's events on their way to a single durable write."""

    def __init__(self, edge: Edge, request: Request, ip: str | None) -> None:
        self.edge = edge
        self.ip = ip
        self.user_agent = request.headers.get("user-agent")
        self.gpc = request.headers.get("sec-gpc")
        settings = edge.settings
        self.is_bot = bool(
            settings.skip_bots and self.user_agent and parse_user_agent(self.user_agent).is_bot
        )
        self.visitor = edge.cookies.read(request.cookies.get(settings.cookie_name))
        self.now = edge.clock()
        self.window = settings.attribution_window_days * 86400.0
        self.private = False  # a privacy signal: no cookie is set or refreshed
        super().__init__()

    async def add(self, event: Event) -> None:
        settings = self.edge.settings
        reason = privacy_skip(
            event.body, self.gpc, honor_gpc=settings.honor_gpc, honor_consent=settings.honor_consent
        )
        self.private = self.private or reason is not None
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
        self._remember(enriched)

    async def _known_click(self, event: Event) -> Known | None:
        """The event's own click id wins; else the cookie's; else the identity store's."""
        if event_click_id(event.body) is not None:
            return None
        known = cookie_click(self.visitor, now=self.now, window_seconds=self.window)
        keys = identity_keys(event)
        if known is None and keys:
            found = await self.edge.store.identity(keys, since=self.now - self.window)
            if found is not None and found.click_id and found.click_seen_at is not None:
                known = Known(found.click_id, found.click_seen_at, "identity")
        return known

    def _remember(self, enriched: Enriched) -> None:
        """What the visitor cookie will hold after this event."""
        visitor = self.visitor
        anonymous_id = enriched.event.body.get("anonymousId") or visitor.anonymous_id
        if anonymous_id is not None and len(anonymous_id) > MAX_COOKIE_ID:
            anonymous_id = visitor.anonymous_id  # browsers drop cookies over ~4 KB
        if enriched.click_id and enriched.click_seen_at is not None:
            self.visitor = Visitor(anonymous_id, enriched.click_id, int(enriched.click_seen_at))
        else:
            self.visitor = Visitor(anonymous_id, visitor.click_id, visitor.click_seen_at)


async def beacon(request: Request) -> Response:
    edge: Edge = request.app.state.edge
    settings = edge.settings
    started = time.perf_counter()
    peer = request.client.host if request.client else None
    ip = client_ip(peer, request.headers, settings.trusted_proxies, settings.client_ip_header)
    if edge.limiter is not None and not edge.limiter.allow(ip or "unknown"):
        wait = edge.limiter.retry_after(ip or "unknown")
        return error(429, "rate_limited", RATE_LIMITED, headers={"Retry-After": wait})
    try:
        events, problems = await read_events(request, settings)
    except Refusal as refusal:
        return refusal.response
    except ClientDisconnect:
        return Response(status_code=400)
    intake = BeaconIntake(edge, request, ip)
    try:
        for event in events:
            await intake.add(event)  # may look the visitor up in the store
        await edge.commit("beacon", events, intake, started)
    except StoreError as failure:
        log.error("beacon: the store could not write: %s", failure)
        return error(503, "store_unavailable", STORE_UNAVAILABLE)
    payload: dict[str, Any] = {"success": True, "accepted": len(events)}
    if problems:
        payload["errors"] = problems
    response = JSONResponse(payload)
    if not intake.private:
        secure = is_https(request.url.scheme, peer, request.headers, settings.trusted_proxies)
        response.headers.append("set-cookie", edge.cookies.header(intake.visitor, secure=secure))
    return response
