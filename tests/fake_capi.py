"""A fake of Rokt's Conversions API (contract A) as a real HTTP server on loopback.

It follows spec/capi-wire.md: Basic auth (401 without the header, 403 with wrong credentials),
`/events` takes one batch and `/bulkevents` a list of at most 100, bodies of at most 256 KB, and
batches are validated the way the upstream rejects them (a non-UUID advertising id, an event
without `event_type`). An invalid batch gets the whole request a 400 naming it
(`Path '[i]…'`), or, with `partial=True`, a 202 whose `errors` name the bad batches.

Fault injection: `reply(Reply(...), ...)` queues scripted answers (status, body, headers, delay)
for the next requests, before any validation. `outage(Reply(...), every=n)` answers every n-th
request with that reply until `outage(None)` (an upstream failing for a while, whatever the number
of requests); a `Reply(close=True)` closes the connection without answering. `reject(id, ...)`
makes the batches holding those source_message_ids invalid, answered as any invalid batch is.
Every request is recorded in `received`.

    with FakeCapi() as fake:
        fake.reply(Reply(503), Reply(429, headers={"Retry-After": "1"}))
        ... point ROKT_EDGE_ROKT_URL at fake.url ...
        fake.accepted_message_ids()
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from uvicorn.protocols.http.h11_impl import H11Protocol

BASE_PATH = "/s2s/v2"
API_KEY = "example-api-key"
API_SECRET = "example-api-secret"
MAX_BODY = 256 * 1024
UUID_FIELDS = ("ios_advertising_id", "android_advertising_id")
_PATH_INDEX = re.compile(r"Path '\[(\d+)\]")


@dataclass(frozen=True)
class Reply:
    status: int = 202
    body: Any = None  # a JSON value, or str
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering (a hung upstream, a timeout)
    close: bool = False  # close the connection (after `delay`) instead of answering


@dataclass
class Received:
    path: str  # "/events" or "/bulkevents"
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() when it arrived
    status: int = 0  # what the fake answered (0: not answered yet)
    accepted: list[dict[str, Any]] = field(default_factory=list)

    @property
    def batches(self) -> list[dict[str, Any]]:
        document = json.loads(self.body)
        return document if isinstance(document, list) else [document]


def errors(*messages: str) -> dict[str, Any]:
    return {"errors": [{"code": "BAD_REQUEST", "message": message} for message in messages]}


class FakeCapi:
    def __init__(self, *, partial: bool = False) -> None:
        self.api_key = API_KEY
        self.api_secret = API_SECRET
        self.partial = partial
        self.received: list[Received] = []
        self._script: deque[Reply] = deque()
        self._outage: tuple[Reply, int] | None = None  # the reply, and one request in how many
        self._outage_requests = 0
        self._rejected: set[str] = set()
        self._lock = threading.Lock()
        self._closing = False
        # Each open connection's transport by its client address, for `Reply(close=True)`.
        self._transports: dict[tuple[str, int], asyncio.Transport] = {}
        app = Starlette(routes=[Route(BASE_PATH + "/{path:path}", self._handle, methods=["POST"])])
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=0,
            http=_keeping_transports(self._transports),
            ws="none",
            lifespan="off",
            log_level="error",
            access_log=False,
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="fake-capi", daemon=True)
        self.url = ""

    # -- control ---------------------------------------------------------------------------

    def start(self) -> FakeCapi:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the fake upstream did not start")
            time.sleep(0.01)
        port = self._server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}{BASE_PATH}"
        return self

    def stop(self) -> None:
        self._closing = True
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def __enter__(self) -> FakeCapi:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reply(self, *replies: Reply) -> None:
        """Answer the next requests with these, in order; then as the upstream would."""
        with self._lock:
            self._script.extend(replies)

    def outage(self, reply: Reply | None, *, every: int = 1) -> None:
        """From now on answer `reply` to one request in `every` (1: to all), after any scripted
        replies and before validation; `outage(None)` ends it."""
        with self._lock:
            self._outage = None if reply is None else (reply, every)
            self._outage_requests = 0

    def reject(self, *message_ids: str) -> None:
        """Batches holding an event with one of these source_message_ids are invalid: the
        request gets a 400 naming each such batch (a 202 naming them with `partial=True`)."""
        with self._lock:
            self._rejected.update(message_ids)

    def accepted_message_ids(self) -> list[str]:
        """source_message_id of every event in every batch the fake accepted, in order."""
        with self._lock:
            batches = [batch for request in self.received for batch in request.accepted]
        return [event["data"]["source_message_id"] for b in batches for event in b["events"]]

    def requests(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    # -- the server ------------------------------------------------------------------------

    async def _handle(self, request: Request) -> Response:
        body = await request.body()
        received = Received("/" + request.path_params["path"], dict(request.headers), body, 0)
        received.at = time.monotonic()
        with self._lock:
            self.received.append(received)
            scripted = self._script.popleft() if self._script else None
            if scripted is None and self._outage is not None:
                outage, every = self._outage
                self._outage_requests += 1
                if self._outage_requests % every == 0:
                    scripted = outage
        reply = scripted or self._answer(received)
        deadline = time.monotonic() + reply.delay
        while time.monotonic() < deadline and not self._closing:
            await asyncio.sleep(0.01)
        if reply.close:
            client = request.scope["client"]
            transport = self._transports.get((client[0], client[1])) if client else None
            if transport is not None:
                transport.close()
                await asyncio.sleep(0.01)  # uvicorn sees the connection lost, drops the answer
            return Response(status_code=500)  # never sent (or sent if the transport was gone)
        if 200 <= reply.status < 300:
            received.accepted = _accepted(received, reply)
        received.status = reply.status
        return _response(reply)

    def _answer(self, received: Received) -> Reply:
        """What the upstream would answer (spec/capi-wire.md)."""
        authorization = received.headers.get("authorization")
        if authorization is None:
            return Reply(401, errors("Authorization header missing"))
        expected = base64.b64encode(f"{self.api_key}:{self.api_secret}".encode()).decode()
        if authorization != f"Basic {expected}":
            return Reply(403, errors("Invalid API key or secret"))
        if len(received.body) > MAX_BODY:
            return Reply(413, errors("Request body too large"))
        if received.path not in ("/events", "/bulkevents"):
            return Reply(404, errors("Not found"))
        try:
            document = json.loads(received.body)
        except ValueError:
            return Reply(400, errors("Request body is not valid JSON"))
        if received.path == "/bulkevents" and not isinstance(document, list):
            return Reply(400, errors("Expected an array of batches"))
        if received.path == "/events" and not isinstance(document, dict):
            return Reply(400, errors("Expected one batch object"))
        batches = document if isinstance(document, list) else [document]
        if len(batches) > 100:
            return Reply(400, errors("At most 100 batches per request"))
        bulk = received.path == "/bulkevents"
        messages = []
        for i, batch in enumerate(batches):
            if problem := _problem(batch) or self._rejected_event(batch):
                text, path = problem
                messages.append(f"{text} Path '[{i}].{path}'" if bulk else f"{text} Path '{path}'")
        if not messages:
            return Reply(202)
        if self.partial and bulk:
            return Reply(202, errors(*messages))
        return Reply(400, errors(*messages))

    def _rejected_event(self, batch: Any) -> tuple[str, str] | None:
        """The message and path for an event of this batch that `reject` named, if any."""
        with self._lock:
            rejected = set(self._rejected)
        for n, event in enumerate(batch["events"]):
            message_id = (event.get("data") or {}).get("source_message_id")
            if message_id in rejected:
                return f"Event {message_id} rejected by the test.", f"events[{n}]"
        return None


def _keeping_transports(transports: dict[tuple[str, int], asyncio.Transport]) -> type[H11Protocol]:
    """uvicorn's HTTP/1.1 protocol, keeping each open connection's transport in `transports`
    by its client address (the ASGI scope's `client`), so a handler can close it."""

    class Protocol(H11Protocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if self.client is not None:
                transports[self.client] = transport

        def connection_lost(self, exc: Exception | None) -> None:
            if self.client is not None:
                transports.pop(self.client, None)
            super().connection_lost(exc)

    return Protocol


def _problem(batch: Any) -> tuple[str, str] | None:
    """The upstream's message and path for the first thing it would reject in this batch."""
    if not isinstance(batch, dict) or not isinstance(batch.get("events"), list):
        return 'Required field "events" is missing.', "events"
    for field_name in UUID_FIELDS:
        value = (batch.get("device_info") or {}).get(field_name)
        if value is not None:
            try:
                uuid.UUID(value)
            except ValueError:
                # The upstream writes quotes as HTML entities in these messages.
                text = f"Error converting value &quot;{value}&quot; to type 'System.Guid'."
                return text, f"device_info.{field_name}"
    for n, event in enumerate(batch["events"]):
        if not isinstance(event, dict) or not event.get("event_type"):
            return 'Required event field "event_type" is missing or empty.', f"events[{n}]"
    return None


def _accepted(received: Received, reply: Reply) -> list[dict[str, Any]]:
    named: set[int] = set()
    if isinstance(reply.body, dict):
        for error in reply.body.get("errors", []):
            match = _PATH_INDEX.search(str(error.get("message", "")))
            named.add(int(match.group(1)) if match else -1)
    if -1 in named and received.path == "/events":
        return []
    try:
        batches = received.batches
    except ValueError:
        return []
    return [batch for i, batch in enumerate(batches) if i not in named]


def _response(reply: Reply) -> Response:
    if reply.body is None:
        content = b""
    elif isinstance(reply.body, str):
        content = reply.body.encode()
    else:
        content = json.dumps(reply.body).encode()
    media = "application/json" if content and not isinstance(reply.body, str) else "text/plain"
    return Response(content, reply.status, headers=reply.headers, media_type=media)
