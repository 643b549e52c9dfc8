"""What the delivery loop needs to know about each upstream, behind one small interface.

The sender (`sender.py`) is the same for both contracts: claim, pack, POST, then act on the
`Verdict` (`verdict.py`). What differs is here:

                  CapiWire (contract A)               EventApiWire (contract B)
    not sent      older than 30 days (the data-age    outside the Event API's window (18
                  limit): dead-lettered `expired`     months back): `expired`; a stored body
                                                      that is no Event API event: `rejected`
    grouping      ≤ 100 batches and ≤ 256 KB          ≤ 100 events
    request       /events (one batch),                /v2/events (/v1/events with v1 auth),
                  /bulkevents [a,b,…]                 {"accountId": …, "events": [a,b,…]}
    auth          Basic key:secret, on the client     Basic rpub:rsec, or a v1 bearer token and
                                                      an Idempotency-Key (`event_api_auth`)
    answers       `responses.classify`                `event_api_responses.classify`

Both build a request's body from the stored JSON texts joined, never decoding and re-encoding
them; contract B also decodes each event once, for its time and its clientEventId (an answer's
unprocessed records name events by it; v1's Idempotency-Key is made from them).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Protocol

import httpx

from edge.jsontext import encode
from edge.rokt import event_api_responses, packing, responses
from edge.rokt.capi import (
    BULK_EVENTS_PATH,
    EVENTS_PATH,
    MAX_BATCHES_PER_REQUEST,
    MAX_BODY_BYTES,
    UpstreamRequest,
    path_for,
)
from edge.rokt.event_api import (
    ACCOUNT_ID_UNSET,
    MAX_EVENTS_PER_REQUEST,
    PATHS,
    outside_time_window,
    parse_event_time,
)
from edge.rokt.event_api_auth import (
    Auth,
    CredentialsRejected,
    TokenUnavailable,
    auth_for,
    post_events,
)
from edge.rokt.verdict import Kind, Verdict
from edge.settings import Settings
from edge.store.outbox import Claims
from edge.store.values import EXPIRED, REJECTED, DeadLetter, ItemId

MAX_AGE_SECONDS: Final = 30 * 24 * 3600  # contract A's data-age limit
NOT_AN_EVENT: Final = (
    "not an Event API event (stored for another upstream? ROKT_EDGE_UPSTREAM changed while it "
    "waited); not sent"
)


class Request:
    """Claimed items sent as one upstream request, in order: the path, the exact body, and
    (contract B) the decoded events, against which the answer is read."""

    __slots__ = ("claims", "content", "events", "path")

    def __init__(
        self,
        claims: Claims,
        path: str,
        content: bytes,
        events: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        self.claims = claims
        self.path = path
        self.content = content
        self.events = events

    @property
    def ids(self) -> Sequence[ItemId]:
        return self.claims.ids


class Wire(Protocol):
    """One upstream contract, as the sender sees it."""

    name: str

    @property
    def client_auth(self) -> tuple[str, str] | None:
        """Basic credentials for every request of the client, or None (the wire sends its own)."""
        ...

    def prepare(self, claims: Claims, now: float) -> tuple[list[DeadLetter], list[Request]]:
        """Dead letters for the claims that may no longer be sent (`now`: epoch seconds), and
        the rest packed into requests within the upstream's limits, in order."""
        ...

    def split(self, request: Request) -> tuple[Request, Request]:
        """The request's first and second halves (to isolate a bad item)."""
        ...

    def bind(self, client: httpx.AsyncClient) -> None:
        """Get ready to send through `client`; called before the first `send` (not in dry run)."""
        ...

    async def send(self, client: httpx.AsyncClient, request: Request) -> Verdict:
        """POST the request and judge the answer; raises httpx.HTTPError (timeouts included)
        when no answer came or it could not be read."""
        ...


def wire_for(settings: Settings, clock: Callable[[], float]) -> Wire:
    """The configured upstream's wire; `clock` gives epoch seconds (for Retry-After dates)."""
    if settings.upstream == "event-api":
        return EventApiWire(settings, clock)
    return CapiWire(settings, clock)


class CapiWire:
    """Contract A: mParticle batches to /events or /bulkevents, Basic auth on the client."""

    name = "capi"

    def __init__(self, settings: Settings, clock: Callable[[], float]) -> None:
        self.client_auth = (settings.api_key or "", settings.api_secret or "")
        self.clock = clock
        self._urls: dict[str, httpx.URL] = {}  # by path, joined to the client's base in `bind`

    def prepare(self, claims: Claims, now: float) -> tuple[list[DeadLetter], list[Request]]:
        oldest_ms = (now - MAX_AGE_SECONDS) * 1000
        expired: list[DeadLetter] = []
        if claims.oldest_ms < oldest_ms:  # only then is each item's time looked at
            fresh = [timestamp >= oldest_ms for timestamp in claims.timestamps]
            expired = [
                DeadLetter(claim.id, EXPIRED, "older than 30 days, the upstream's data-age limit")
                for claim, kept in zip(claims, fresh, strict=True)
                if not kept
            ]
            claims = claims.where(fresh)
        groups = packing.pack(claims.sizes, MAX_BATCHES_PER_REQUEST, MAX_BODY_BYTES)
        return expired, [self._request(claims[group]) for group in groups]

    def split(self, request: Request) -> tuple[Request, Request]:
        half = len(request.claims) // 2
        return self._request(request.claims[:half]), self._request(request.claims[half:])

    def bind(self, client: httpx.AsyncClient) -> None:
        # `client.post` joins the path to the base URL and parses the result for every request,
        # then merges headers: an eighth of the event loop's time per request. The URLs are
        # joined once here, and `send` builds the request itself; the client still sends it
        # (its credentials, pool and proxies).
        base = str(client.base_url)  # httpx ends it with a slash
        self._urls = {
            path: httpx.URL(base + path.lstrip("/")) for path in (EVENTS_PATH, BULK_EVENTS_PATH)
        }

    async def send(self, client: httpx.AsyncClient, request: Request) -> Verdict:
        upstream = httpx.Request(
            "POST",
            self._urls[request.path],
            headers=client.headers,
            content=request.content,
            extensions={"timeout": client.timeout.as_dict()},
        )
        response = await client.send(upstream)
        return responses.classify(response, len(request.claims), now=self.clock())

    @staticmethod
    def _request(claims: Claims) -> Request:
        path, content = path_and_body(claims)
        return Request(claims, path, content)


def path_and_body(claims: Claims) -> tuple[str, bytes]:
    """Contract A's path and body for these stored batches: their texts joined, `[a,b,c]`, byte
    for byte `encode([A, B, C])` (one batch goes alone to `/events`)."""
    if len(claims) == 1:
        return path_for(1), bytes(claims.blob)
    return path_for(len(claims)), claims.between(b"[", b"]")


class EventApiWire:
    """Contract B: Rokt's Event API, v2 keys or v1 tokens (`event_api_auth`)."""

    name = "event-api"
    client_auth = None  # every request carries its own Authorization (a v1 token changes)

    def __init__(self, settings: Settings, clock: Callable[[], float]) -> None:
        self.settings = settings
        self.clock = clock
        self.path = PATHS[settings.event_api_auth]
        # Only a dry run has no account id (settings insist on one with credentials).
        self.account_id = settings.account_id or ACCOUNT_ID_UNSET
        self._head = b'{"accountId":' + encode(self.account_id) + b',"events":['
        self._auth: Auth | None = None

    def prepare(self, claims: Claims, now: float) -> tuple[list[DeadLetter], list[Request]]:
        dead: list[DeadLetter] = []
        sendable: list[bool] = []
        events: list[Mapping[str, Any]] = []
        for claim in claims:
            event = _event(claim.body)
            if event is None:
                dead.append(DeadLetter(claim.id, REJECTED, NOT_AN_EVENT))
            elif (reason := outside_time_window(event, now)) is not None:
                dead.append(DeadLetter(claim.id, _window_label(event, now), reason))
            else:
                events.append(event)
                sendable.append(True)
                continue
            sendable.append(False)
        kept = claims.where(sendable)
        step = MAX_EVENTS_PER_REQUEST
        requests = [
            self._request(kept[start : start + step], events[start : start + step])
            for start in range(0, len(kept), step)
        ]
        return dead, requests

    def split(self, request: Request) -> tuple[Request, Request]:
        half = len(request.claims) // 2
        claims, events = request.claims, request.events
        return (
            self._request(claims[:half], events[:half]),
            self._request(claims[half:], events[half:]),
        )

    def bind(self, client: httpx.AsyncClient) -> None:
        # v1 tokens come through the same client (and so the same transport) as the events.
        self._auth = auth_for(self.settings, client)

    async def send(self, client: httpx.AsyncClient, request: Request) -> Verdict:
        if self._auth is None:
            raise RuntimeError("EventApiWire.send before bind")
        body = {"accountId": self.account_id, "events": request.events}
        packed = UpstreamRequest(self.path, body, len(request.events))
        try:
            response = await post_events(
                client, self.settings.upstream_url, self._auth, packed, content=request.content
            )
        except CredentialsRejected as error:  # the token endpoint refused the app id or secret
            return Verdict(Kind.PAUSE, message=str(error))
        except TokenUnavailable as error:
            return Verdict(Kind.RETRY, message=str(error))
        return event_api_responses.classify(
            response.status_code,
            response.headers,
            response.content,
            request.events,
            now=self.clock(),
        )

    def _request(self, claims: Claims, events: Sequence[Mapping[str, Any]]) -> Request:
        # The stored texts are `encode(event)`, so this is `encode(body)` byte for byte.
        return Request(claims, self.path, claims.between(self._head, b"]}"), events)


def _event(text: str) -> Mapping[str, Any] | None:
    """A stored body as an EventObject, or None when it is not one (a contract A batch)."""
    try:
        event = json.loads(text)
    except ValueError:
        return None
    if not isinstance(event, dict) or not isinstance(event.get("clientEventId"), str):
        return None
    return event


def _window_label(event: Mapping[str, Any], now: float) -> str:
    """`expired` for an event that aged out while it waited; `rejected` for one that cannot be
    sent at all (an unreadable time, or one ahead of the clock: the clock went back)."""
    try:
        aged = parse_event_time(str(event.get("eventTime"))) < now * 1000
    except ValueError:
        return REJECTED
    return EXPIRED if aged else REJECTED
