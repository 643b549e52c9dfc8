"""Contract A's wire: mParticle batches to /events or /bulkevents, Basic auth on the client
(the sender's side of the table in `edge.delivery.wire`)."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from edge.delivery import packing
from edge.delivery.verdict import Verdict
from edge.delivery.wire import MAX_AGE_SECONDS, Request
from edge.settings import Settings
from edge.store.outbox import Claims
from edge.store.values import EXPIRED, DeadLetter
from edge.upstreams.capi.contract import (
    BULK_EVENTS_PATH,
    EVENTS_PATH,
    MAX_BATCHES_PER_REQUEST,
    MAX_BODY_BYTES,
    path_for,
)
from edge.upstreams.capi.responses import classify


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
        base = str(client.base_url)  # httpx ends it with a slash, unless it is a bare host
        base = base if base.endswith("/") else base + "/"
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
        return classify(response, len(request.claims), now=self.clock())

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
