"""The edge service: `create_app(settings, transport=None)` builds the Starlette application.

The lifespan owns the long-lived parts: the store, the processing loop (`edge.processing`), the
delivery loop (with its httpx client, whose transport tests may replace) and the metrics.
Configuration errors (settings, mappings) surface when the app is created, before anything
listens.

    GET  /               what this service is and where to look next (HTML; JSON when asked)
    POST /e              the first-party beacon (edge.sources.beacon)
    POST /v1/track …     Segment's tracking API (edge.sources.tracking_api), and the paths
                         analytics.js posts to, /v1/t … /v1/b (edge.sources.analytics_js): the
                         routes of every registered source (edge.sources.SOURCES)
    GET  /rokt-edge.js   the browser snippet, with ETag, Cache-Control and gzip
    GET  /healthz        the process is alive
    GET  /readyz         store writable, processing and delivery running, not paused on
                         credentials (else 503)
    GET  /metrics        Prometheus text format, rendered every few seconds (edge.metrics);
                         with ROKT_EDGE_METRICS_TOKEN, only for `Authorization: Bearer <token>`
    GET  /demo…          the demo shop and its panel, when enabled (edge.demo)
    GET  /favicon.ico    a 16x16 icon (static/demo/favicon.ico), so no page's icon is a 404

Every error is JSON, `{"error": {"code", "message"}}`: the endpoints' own, Starlette's 404 and
405, and a 500 for an unhandled exception (logged once, by the server, with its traceback; the
answer carries none). What uvicorn's protocol refuses before the app is JSON too (edge.server).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import hmac
import http
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from edge import demo
from edge.assets import read_static
from edge.capture.cookies import CookieJar, CookiePolicy
from edge.delivery.sender import Sender
from edge.home import Home
from edge.metrics import Metrics
from edge.pipeline.mapping import load_mappings
from edge.pipeline.pipeline import Pipeline
from edge.processing import Processor
from edge.service import Edge
from edge.settings import Settings
from edge.sources import SOURCES
from edge.store import Store, open_store
from edge.store.errors import StoreError
from edge.store.liveness import Liveness
from edge.upstreams import upstream_for

log = logging.getLogger("rokt_edge.app")

SNIPPET: Final = "rokt-edge.js"
SNIPPET_CACHE: Final = "public, max-age=3600, stale-while-revalidate=86400"
SHUTDOWN_GRACE_SECONDS: Final = 10.0
PREFLIGHT_CACHE_SECONDS: Final = 7200  # the most Chromium keeps a preflight's answer
METRICS_TOKEN_NEEDED: Final = "send the metrics token as Authorization: Bearer <token>"
HTTP_ERROR_MESSAGES: Final = {
    404: "nothing is served at this path",
    405: "this path does not take this method (Allow lists those it takes)",
}


class Snippet:
    """The served snippet: read once, its gzip form and ETag computed once."""

    def __init__(self) -> None:
        self.body = read_static(SNIPPET)
        if self.body is None:
            log.warning("static/%s is missing: build it with scripts/build-snippet", SNIPPET)
        self.gzipped = gzip.compress(self.body, 9, mtime=0) if self.body else b""
        digest = hashlib.sha256(self.body or b"").hexdigest()[:20]
        self.etag = f'"{digest}"'

    async def respond(self, request: Request) -> Response:
        if self.body is None:
            return JSONResponse(
                {"error": {"code": "not_found", "message": "the snippet has not been built"}},
                404,
            )
        headers = {
            "ETag": self.etag,
            "Cache-Control": SNIPPET_CACHE,
            "Vary": "Accept-Encoding",
            "Content-Type": "text/javascript; charset=utf-8",
        }
        if self.etag in request.headers.get("if-none-match", ""):
            return Response(status_code=304, headers=headers)
        if "gzip" in request.headers.get("accept-encoding", ""):
            return Response(self.gzipped, headers={**headers, "Content-Encoding": "gzip"})
        return Response(self.body, headers=headers)


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    edge: Edge = request.app.state.edge
    problems: list[str] = []
    try:
        await edge.store.check_writable()
    except StoreError as failure:
        problems.append(f"store not writable: {failure}")
    if edge.delivery is None or edge.delivery.done() or not edge.sender.running:
        problems.append("delivery is not running")
    if edge.processing is None or edge.processing.done():
        problems.append("processing is not running")
    if edge.sender.paused is not None:
        problems.append(f"delivery paused: {edge.sender.paused.reason}")
    if problems:
        return JSONResponse({"status": "not ready", "problems": problems}, 503)
    return JSONResponse({"status": "ready", "dry_run": edge.settings.dry_run})


async def metrics(request: Request) -> Response:
    """The latest rendering (edge.metrics.Exposition): a scrape never reads the store."""
    edge: Edge = request.app.state.edge
    token = edge.settings.metrics_token
    if token is not None:
        given = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(given, f"Bearer {token}".encode()):
            return JSONResponse(
                {"error": {"code": "unauthorized", "message": METRICS_TOKEN_NEEDED}},
                401,
                headers={"WWW-Authenticate": "Bearer"},
            )
    return Response(edge.exposition.text, media_type="text/plain; version=0.0.4; charset=utf-8")


def icon() -> Callable[[Request], Awaitable[Response]]:
    """`/favicon.ico`: the demo's icon, asked by every browser on every page; without the file,
    204 (nothing to show, and no failed request)."""
    body = read_static(f"demo/{demo.ICON}")
    headers = {"Cache-Control": "public, max-age=86400"}

    async def serve(request: Request) -> Response:
        if body is None:
            return Response(status_code=204, headers=headers)
        return Response(body, media_type="image/x-icon", headers=headers)

    return serve


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own errors (404, 405, …) as JSON, keeping their headers (405's Allow)."""
    assert isinstance(exc, HTTPException)
    status = http.HTTPStatus(exc.status_code)
    code = status.phrase.lower().replace(" ", "_").replace("-", "_")
    if exc.detail != status.phrase:
        message = exc.detail
    else:
        message = HTTP_ERROR_MESSAGES.get(exc.status_code, status.description)
    return JSONResponse(
        {"error": {"code": code, "message": message}}, exc.status_code, headers=exc.headers
    )


async def internal_error(request: Request, exc: Exception) -> Response:
    """An unhandled exception: JSON without a traceback. Starlette raises it again after this
    answer, and the server logs it once, with its traceback."""
    return JSONResponse(
        {"error": {"code": "internal", "message": "the edge failed to handle this request"}}, 500
    )


def demo_line(settings: Settings, base_url: str | None) -> str:
    """The start-up line that says where the demo is (its full address when `base_url` is known,
    else its path on this edge's address), and who its panel's data is for."""
    at = (base_url or "").rstrip("/")
    where = "" if base_url else " (on this edge's address)"
    if not demo.shows_traffic(settings):
        whom = "; its panel shows traffic only in dry run"
    elif settings.demo is True:
        whom = "; its data for any browser (ROKT_EDGE_DEMO=true), masked"
    else:
        whom = "; its data only for a browser on this machine (ROKT_EDGE_DEMO=true: any)"
    return f"demo: the shop at {at}/demo, its panel at {at}/demo/inspect{where}{whom}"


async def _finish(task: asyncio.Task[None], name: str, otherwise: str) -> None:
    """Wait for a stopped loop to end, within the shutdown grace."""
    try:
        await asyncio.wait_for(task, SHUTDOWN_GRACE_SECONDS)
    except TimeoutError:
        log.warning("%s did not stop in time; %s", name, otherwise)
    except Exception:
        log.exception("the %s loop failed", name)


def create_app(
    settings: Settings,
    transport: httpx.AsyncBaseTransport | None = None,
    *,
    base_url: str | None = None,
    **overrides: Any,
) -> Starlette:
    """The service. `base_url`: where it is served (`http://127.0.0.1:8080`), for the start-up
    log to name the demo's address. `overrides` replace parts for tests: `store`, `clock`."""
    mappings = load_mappings(settings.mappings)
    demo_routes = demo.routes(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        store: Store = overrides.get("store") or open_store(settings)
        clock: Callable[[], float] = overrides.get("clock", time.time)
        secret = settings.secret_key or await store.secret("cookie-signing-key")
        policy = CookiePolicy(
            settings.cookie_name, settings.cookie_max_age_days * 86400, settings.cookie_domain
        )
        metrics_ = Metrics(store)
        wire = upstream_for(settings).wire
        sender = Sender(settings, store, wire, metrics=metrics_, transport=transport, clock=clock)
        # What the latest events were, for the demo panel (told by processing); inert otherwise
        recent = demo.Recent(demo.REMEMBERED if demo.shows_traffic(settings) else 0)
        edge = Edge(
            settings, store, Pipeline(settings, mappings), CookieJar(secret, policy), metrics_,
            sender, SOURCES, recent, clock,
        )  # fmt: skip
        app.state.edge = edge
        await edge.exposition.refresh()
        exposing = asyncio.create_task(edge.exposition.run(), name="rokt-edge-metrics")
        edge.processor = Processor(edge)
        edge.processing = asyncio.create_task(edge.processor.run(), name="rokt-edge-processing")
        edge.delivery = asyncio.create_task(sender.run(), name="rokt-edge-delivery")
        # This process alive on the store; a dead one's leases and claims taken back at once
        liveness = Liveness(store, freed=edge.wake)
        beating = asyncio.create_task(liveness.run(), name="rokt-edge-liveness")
        if settings.dry_run:
            log.warning(
                "DRY RUN: nothing is sent to Rokt; what would be sent is recorded (%s). Set "
                "ROKT_EDGE_API_KEY and ROKT_EDGE_API_SECRET, then `rokt-edge replay --dry-run` "
                "sends what was recorded.", "ROKT_EDGE_DRY_RUN=true" if settings.api_key
                else "no credentials are set",
            )  # fmt: skip
        log.info("rokt-edge ready: upstream %s (%s)", settings.upstream_url, settings.upstream)
        if demo_routes:
            log.info("%s", demo_line(settings, base_url))
        try:
            yield
        finally:
            edge.processor.stop()  # it finishes its slice; what is left is processed next start
            await _finish(edge.processing, "processing", "its arrivals wait for the next start")
            sender.stop()
            await _finish(edge.delivery, "delivery", "its leases will expire and be swept")
            liveness.stop()
            await _finish(beating, "liveness", "its owner will be judged silent")
            exposing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await exposing
            if "store" not in overrides:
                store.close()

    middleware = []
    if settings.allowed_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.allowed_origins),
                allow_methods=["POST"],
                # analytics.js sends its write key as Basic auth: a preflight on every path
                allow_headers=["content-type", "authorization"],
                expose_headers=["retry-after"],  # read by analytics.js on a 429
                allow_credentials=True,
                max_age=PREFLIGHT_CACHE_SECONDS,
            )
        )
    routes: list[BaseRoute] = [
        Route("/", Home(settings, bool(demo_routes), f"/{SNIPPET}").respond),
        Route("/favicon.ico", icon()),
        Route(f"/{SNIPPET}", Snippet().respond, methods=["GET", "HEAD"]),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
        *(route for source in SOURCES for route in source.routes(settings)),
        *demo_routes,
    ]
    exception_handlers = {HTTPException: http_error, Exception: internal_error}
    return Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers=exception_handlers,
        lifespan=lifespan,
    )
