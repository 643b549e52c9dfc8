"""A fake Rokt Event API: a real HTTP server on loopback, following the reference.

    POST /auth/oauth2/token   Basic app_id:app_secret, form grant_type=client_credentials →
                              {"access_token", "expires_in", "token_type": "Bearer"}
    POST /v2/events           Basic rpub:rsec
    POST /v1/events           Bearer <token>; a repeated Idempotency-Key answers 409

Both event endpoints insist on `Content-Type: application/json`, `Charset: utf-8` and
`Rokt-Version: 2020-05-21`, validate the body as the reference describes it (400 with
RequestJsonUnmarshalError or RequestValidationError), answer 403 for another account, and always
send `X-Rokt-Trace-Id`. Tests script the rest: `faults` (answers for the next event requests),
`unprocessed` (clientEventId → (code, message), reported in a 200's unprocessedRecords),
`token_life`, `revoke_tokens()` and `clock` (the time tokens expire by). What it took is in
`accepted` (clientEventIds of events answered 200 and not unprocessed, in order, repeats kept)
and `statuses` (the answer to each event request, in the order of `received`).
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

API_VERSION = "2020-05-21"


@dataclass(frozen=True)
class Fault:
    """One scripted answer: status, JSON body and headers."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]  # lower-case names
    body: Any  # JSON, or the form fields for the token endpoint
    at: float = field(default_factory=time.monotonic)


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"data": {"code": code, "message": message}}


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class FakeEventApi:
    def __init__(
        self,
        *,
        account_id: str = "12345",
        public_key: str = "rpub-test-1",
        secret_key: str = "rsec-test-1",
        app_id: str = "40svbin0d194subpohl079rhck",
        app_secret: str = "1dimhvr1v6skae9uhvtgs3chs2astnjf0469df6ul9hurubtoovn",
        token_life: int = 3600,
    ) -> None:
        self.account_id = account_id
        self.key_authorization = basic(public_key, secret_key)
        self.app_authorization = basic(app_id, app_secret)
        self.token_life = token_life
        self.url = ""  # the base URL, once `serving`
        self.clock: Callable[[], float] = time.monotonic
        self.received: list[Received] = []
        self.token_requests: list[Received] = []
        self.faults: deque[Fault] = deque()
        self.token_faults: deque[Fault] = deque()
        self.unprocessed: dict[str, tuple[str, str]] = {}
        self.tokens: dict[str, float] = {}  # token → when it expires, by `clock`
        self.idempotency_keys: set[str] = set()
        self.accepted: list[str] = []
        self.statuses: list[int] = []
        self._traces = 0
        self.app = Starlette(
            routes=[
                Route("/auth/oauth2/token", self.token, methods=["POST"]),
                Route("/v2/events", self.events_v2, methods=["POST"]),
                Route("/v1/events", self.events_v1, methods=["POST"]),
            ]
        )

    def revoke_tokens(self) -> None:
        self.tokens.clear()

    def _answer(self, status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
        self._traces += 1
        headers = {"X-Rokt-Trace-Id": f"trace-{self._traces}", **(headers or {})}
        return JSONResponse(body, status_code=status, headers=headers)

    async def token(self, request: Request) -> Response:
        form = {
            key: values[-1] for key, values in parse_qs((await request.body()).decode()).items()
        }
        self.token_requests.append(Received(request.url.path, dict(request.headers), form))
        if self.token_faults:
            fault = self.token_faults.popleft()
            return self._answer(fault.status, fault.body, fault.headers)
        if request.headers.get("content-type") != "application/x-www-form-urlencoded":
            return self._answer(400, {"error": "invalid_request"})
        if request.headers.get("authorization") != self.app_authorization:
            return self._answer(401, {"error": "invalid_client"})
        if form.get("grant_type") != "client_credentials":
            return self._answer(400, {"error": "unsupported_grant_type"})
        token = f"token-{len(self.token_requests)}"
        self.tokens[token] = self.clock() + self.token_life
        body = {"access_token": token, "expires_in": self.token_life, "token_type": "Bearer"}
        return self._answer(200, body)

    async def events_v2(self, request: Request) -> Response:
        authorized = self.key_authorization == request.headers.get("authorization")
        response = await self._events(request, authorized)
        self.statuses.append(response.status_code)
        return response

    async def events_v1(self, request: Request) -> Response:
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        valid = self.tokens.get(token, float("-inf")) > self.clock()
        response = await self._events(request, valid)
        self.statuses.append(response.status_code)
        return response

    async def _events(self, request: Request, authorized: bool) -> Response:
        raw = await request.body()
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        self.received.append(Received(request.url.path, dict(request.headers), body))
        if self.faults:
            fault = self.faults.popleft()
            return self._answer(fault.status, fault.body, fault.headers)
        headers = request.headers
        if headers.get("rokt-version") != API_VERSION:
            return self._answer(400, error_body("RequestValidationError", "bad Rokt-Version"))
        if headers.get("content-type") != "application/json" or headers.get("charset") != "utf-8":
            return self._answer(400, error_body("RequestBodyReadError", "JSON in utf-8 only"))
        if not authorized:
            return self._answer(401, error_body("UnauthorizedError", "invalid authentication"))
        if body is None:
            return self._answer(400, error_body("RequestJsonUnmarshalError", "unable to unmarshal"))
        problem = validation_problem(body)
        if problem:
            return self._answer(400, error_body("RequestValidationError", problem))
        if body["accountId"] != self.account_id:
            return self._answer(403, error_body("Forbidden", "not authorized on this account"))
        key = headers.get("idempotency-key")
        if request.url.path == "/v1/events" and key is not None:
            if key in self.idempotency_keys:
                return self._answer(409, error_body("Conflict", "request already processed"))
            self.idempotency_keys.add(key)
        records = [
            {"error": {"code": code, "message": message}, "record": event}
            for event in body["events"]
            for code, message in [self.unprocessed.get(event["clientEventId"], ("", ""))]
            if code
        ]
        self.accepted += [
            event["clientEventId"]
            for event in body["events"]
            if event["clientEventId"] not in self.unprocessed
        ]
        return self._answer(200, {"data": {"unprocessedRecords": records}})


def validation_problem(body: Any) -> str | None:
    """What the reference's parameter table forbids, or None."""
    if not isinstance(body, dict) or not isinstance(body.get("accountId"), str):
        return "accountId: required string"
    if not 0 < len(body["accountId"]) <= 64:
        return "accountId: up to 64 characters"
    events = body.get("events")
    if not isinstance(events, list) or not 0 < len(events) <= 100:
        return "events: 1 to 100 items per call"
    for index, event in enumerate(events):
        for key, limit in (("clientEventId", 36), ("eventType", 128), ("eventTime", 64)):
            value = event.get(key) if isinstance(event, dict) else None
            if not isinstance(value, str) or not 0 < len(value) <= limit:
                return f"events[{index}].{key}: required string up to {limit} characters"
        try:
            if datetime.fromisoformat(event["eventTime"].replace("Z", "+00:00")).tzinfo is None:
                return f"events[{index}].eventTime: must be UTC"
        except ValueError:
            return f"events[{index}].eventTime: not RFC 3339"
        for part in ("metaData", "objectData"):
            for entry in event.get(part, []):
                name, value = entry.get("name"), entry.get("value")
                if not isinstance(name, str) or not 0 < len(name) <= 256:
                    return f"events[{index}].{part}: names are strings up to 256 characters"
                if name.lower().startswith("rokt."):
                    return f"events[{index}].{part}: the rokt. prefix is reserved"
                if not isinstance(value, str) or len(value) > 65536:
                    return f"events[{index}].{part}.{name}: values are strings up to 65536"
    return None


@contextmanager
def serving(fake: FakeEventApi) -> Iterator[str]:
    """Run `fake` on a loopback port the OS picks; yields its base URL."""
    config = uvicorn.Config(
        fake.app, host="127.0.0.1", port=0, log_level="warning", lifespan="off", ws="none"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="fake-event-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the fake Event API did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    fake.url = f"http://127.0.0.1:{port}"
    try:
        yield fake.url
    finally:
        server.should_exit = True
        thread.join(timeout=10)
