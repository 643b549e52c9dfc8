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

from edge.capture.client_ip import client_ip, is_https
from edge.capture.cookies import Visitor
from edge.capture.enrich import Known, cookie_click, enrich, event_click_id
from edge.capture.privacy import privacy_skip
from edge.events import Event, EventError, parse_event
from edge.rokt.pipeline import Outbound, Skipped
from edge.store.base import IdentityUpdate, Intake, StoreError
from edge.useragent import parse_user_agent

if TYPE_CHECKING:
    from edge.app import Edge

log = logging.getLogger("rokt_edge.beacon")

BOT: Final = "bot"
JSON_TYPES: Final = ("text/plain", "application/json")


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


def origin_allowed(origin: str | None, host: str | None, allowed: tuple[str, ...]) -> bool:
    """A text/plain POST needs no CORS preflight, so the browser sends it from any site: the
    edge itself refuses origins that are neither its own nor in `ROKT_EDGE_ALLOWED_ORIGINS`."""
    if not origin:  # not a browser's cross-site fetch (curl, a server, an old same-origin beacon)
        return True
    if "*" in allowed or origin.rstrip("/") in allowed:
        return True
    return host is not None and urlsplit(origin).netloc.lower() == host.lower()


def identity_keys(event: Event) -> tuple[str, ...]:
    keys = []
    if "anonymousId" in event.body:
        keys.append(f"a:{event.body['anonymousId']}")
    if "userId" in event.body:
        keys.append(f"u:{event.body['userId']}")
    return tuple(keys)


async def beacon(request: Request) -> Response:
    edge: Edge = request.app.state.edge
    settings = edge.settings
    started = time.perf_counter()
    peer = request.client.host if request.client else None
    ip = client_ip(peer, request.headers, settings.trusted_proxies)
    if edge.limiter is not None and not edge.limiter.allow(ip or "unknown"):
        wait = edge.limiter.retry_after(ip or "unknown")
        return error(429, "rate_limited", "too many requests from this client; retry later",
                     headers={"Retry-After": wait})  # fmt: skip
    if not origin_allowed(request.headers.get("origin"), request.headers.get("host"),
                          settings.allowed_origins):  # fmt: skip
        return error(403, "origin_not_allowed",
                     "this origin may not send events here (see ROKT_EDGE_ALLOWED_ORIGINS)")  # fmt: skip
    content_type = request.headers.get("content-type", "text/plain").split(";")[0].strip().lower()
    if content_type not in JSON_TYPES:
        return error(415, "unsupported_media_type",
                     f"send JSON as text/plain or application/json, not {content_type}")  # fmt: skip
    try:
        raw = await read_body(request, settings.beacon_max_bytes)
    except TooLarge:
        return error(413, "too_large", f"the body is over {settings.beacon_max_bytes:,} bytes")
    except ClientDisconnect:
        return Response(status_code=400)
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as problem:
        return error(400, "invalid_json", f"the body is not JSON: {problem}")
    raw_events = events_of(document)
    if raw_events is None:
        return error(400, "invalid_body", 'send one event, {"batch": [events]} or [events]')
    if len(raw_events) > settings.beacon_max_events:
        return error(413, "too_many_events",
                     f"{len(raw_events)} events; at most {settings.beacon_max_events} per request")  # fmt: skip
    events: list[Event] = []
    problems: list[dict[str, Any]] = []
    for index, raw_event in enumerate(raw_events):
        try:
            events.append(parse_event(raw_event, index))
        except EventError as bad:
            problems.append({"event": index, "field": bad.field, "message": str(bad)})
    if not events:
        message = problems[0]["message"] if problems else "no events in the body"
        return error(400, "invalid_event", message, events=problems)

    user_agent = request.headers.get("user-agent")
    gpc = request.headers.get("sec-gpc")
    is_bot = settings.skip_bots and bool(user_agent) and parse_user_agent(user_agent).is_bot
    visitor = edge.cookies.read(request.cookies.get(settings.cookie_name))
    now = edge.clock()
    window = settings.attribution_window_days * 86400.0
    outbound: list[Outbound] = []
    skipped: list[Skipped] = []
    identities: list[IdentityUpdate] = []
    private = False
    for event in events:
        reason = privacy_skip(event.body, gpc, honor_gpc=settings.honor_gpc,
                              honor_consent=settings.honor_consent)  # fmt: skip
        if reason is not None:
            private = True
        elif is_bot:
            reason = BOT
        if reason is not None:
            skipped.append(Skipped(event.message_id, reason))
            continue
        known: Known | None = None
        if event_click_id(event.body) is None:
            known = cookie_click(visitor, now=now, window_seconds=window)
            keys = identity_keys(event)
            if known is None and keys:
                record = await edge.store.identity(keys, since=now - window)
                if record is not None and record.click_id and record.click_seen_at is not None:
                    known = Known(record.click_id, record.click_seen_at, "identity")
        enriched = enrich(event, ip=ip, user_agent=user_agent, visitor=visitor, known=known, now=now)
        for outcome in edge.pipeline.process(enriched.event):
            (outbound if isinstance(outcome, Outbound) else skipped).append(outcome)  # type: ignore[arg-type]
        body = enriched.event.body
        keys = identity_keys(enriched.event)
        if keys:
            identities.append(
                IdentityUpdate(keys, enriched.click_id, enriched.click_seen_at, ip, user_agent)
            )
        visitor = Visitor(
            anonymous_id=body.get("anonymousId") or visitor.anonymous_id,
            click_id=enriched.click_id or visitor.click_id,
            click_seen_at=int(enriched.click_seen_at)
            if enriched.click_id and enriched.click_seen_at is not None
            else visitor.click_seen_at,
        )
    try:
        await edge.store.put(Intake(outbound, skipped, identities))
    except StoreError as failure:
        log.error("beacon: the store could not write: %s", failure)
        return error(503, "store_unavailable", "the events could not be stored; send them again")
    edge.accepted(source="beacon", events=events, skipped=skipped, outbound=len(outbound),
                  seconds=time.perf_counter() - started)  # fmt: skip
    payload: dict[str, Any] = {"success": True, "accepted": len(events)}
    if problems:
        payload["errors"] = problems
    response = JSONResponse(payload)
    if not private:
        secure = is_https(request.url.scheme, peer, request.headers, settings.trusted_proxies)
        response.headers.append("set-cookie", edge.cookies.header(visitor, secure=secure))
    return response
