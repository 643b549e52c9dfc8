"""Contract B's wire: Rokt's Event API, v2 keys or v1 tokens (`auth`); the sender's side of
the table in `edge.delivery.wire`."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import httpx

from edge.delivery.verdict import Kind, Verdict
from edge.delivery.wire import Request
from edge.jsontext import encode
from edge.settings import Settings
from edge.store.outbox import Claims
from edge.store.values import EXPIRED, REJECTED, DeadLetter
from edge.upstreams.base import UpstreamRequest
from edge.upstreams.event_api.auth import (
    Auth,
    CredentialsRejected,
    TokenUnavailable,
    auth_for,
    post_events,
)
from edge.upstreams.event_api.contract import (
    ACCOUNT_ID_UNSET,
    MAX_EVENTS_PER_REQUEST,
    PATHS,
    outside_time_window,
    parse_event_time,
)
from edge.upstreams.event_api.responses import classify

NOT_AN_EVENT: Final = (
    "not an Event API event (stored for another upstream? ROKT_EDGE_UPSTREAM changed while it "
    "waited); not sent"
)


class EventApiWire:
    """Contract B: Rokt's Event API, v2 keys or v1 tokens (`auth`)."""

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
        return classify(
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
