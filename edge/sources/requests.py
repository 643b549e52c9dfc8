"""What every source's door shares: reading a request within limits, checking where it came from,
storing its arrival before the answer, and answering errors as JSON (`{"error": {"code",
"message"}}`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Final
from urllib.parse import urlsplit

from starlette.requests import ClientDisconnect, Request, cookie_parser
from starlette.responses import JSONResponse

from edge.capture.ratelimit import RateLimiter
from edge.events import Event
from edge.logs import Throttled
from edge.service import Edge
from edge.store.errors import StoreError
from edge.store.values import Arrival

log = logging.getLogger("rokt_edge.intake")
refused = Throttled(log, logging.ERROR)  # one line per request while the store is down

JSON_TYPES: Final = ("text/plain", "application/json")
ORIGIN_REFUSED: Final = "this origin may not send events here (see ROKT_EDGE_ALLOWED_ORIGINS)"
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


def rate_limited(limiter: RateLimiter, client: str, message: str = RATE_LIMITED) -> JSONResponse:
    return error(429, "rate_limited", message, headers={"Retry-After": limiter.retry_after(client)})


class Refusal(Exception):
    """A request refused as a whole; becomes a JSON error response."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.response = error(status, code, message, **extra)


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


def origin_allowed(origin: str | None, hosts: list[str], allowed: tuple[str, ...]) -> bool:
    """A text/plain POST needs no CORS preflight, so the browser sends it from any site: the
    edge itself refuses origins that are neither its own nor in `ROKT_EDGE_ALLOWED_ORIGINS`."""
    if not origin:  # not a browser's cross-site fetch (curl, a server, an old same-origin beacon)
        return True
    if origin.rstrip("/").lower() in allowed:
        return True
    return same_origin(origin, hosts)


def same_origin(origin: str, hosts: list[str]) -> bool:
    """Whether a browser's `Origin` names the host the request was sent to (`request_hosts`)."""
    try:
        netloc = urlsplit(origin).netloc
    except ValueError:  # "http://[": not an origin a browser sends
        return False
    return netloc.lower() in hosts


def sent_cookie(headers: Mapping[str, str], name: str) -> str | None:
    """A cookie's value, the Cookie header parsed only when one was sent (Starlette's
    `request.cookies` looks for the header afresh)."""
    return cookie_parser(headers["cookie"]).get(name) if "cookie" in headers else None


async def store(
    edge: Edge, arrival: Arrival, events: Sequence[Event], started: float
) -> JSONResponse | None:
    """Store a request's arrival durably (`Edge.commit_arrival`): None once it is, else the
    503 that tells the client to send the events again."""
    try:
        await edge.commit_arrival(arrival, events, started)
    except StoreError as failure:
        refused.log("%s: the store could not write (answered 503): %s", arrival.source, failure)
        return error(503, "store_unavailable", STORE_UNAVAILABLE)
    return None
