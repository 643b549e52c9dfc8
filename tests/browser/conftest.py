"""Real-browser fixtures: Debian's Chromium driven by Playwright, against a recording server.

The recorder stands in for the edge until the real one exists: a Starlette app served by uvicorn
on two loopback ports (two origins), in a background thread. It serves the minified snippet
(static/rokt-edge.js, read on every request so a rebuild is picked up), test pages registered by
each test, and POST /e, which records every beacon with its headers and answers a status the test
chooses (503 to play a failing edge). OPTIONS requests are recorded too, so a test can assert that
no CORS preflight happened.

Chromium comes from Debian (`apt-get install chromium`); Playwright's own browser download does
not work here. Without /usr/bin/chromium (or without the playwright package) every browser test is
skipped with the reason.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

CHROMIUM = Path("/usr/bin/chromium")
SNIPPET = Path(__file__).resolve().parents[2] / "static" / "rokt-edge.js"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# The install snippet, exactly as a merchant pastes it (see static/rokt-edge.src.js).
STUB = (
    "<script>window.roktEdge=window.roktEdge||function(){"
    "(roktEdge.q=roktEdge.q||[]).push(arguments)}</script>"
)
ROKT = "Rokt Conversions API"


@dataclass
class Beacon:
    """One request the recorder saw."""

    method: str
    port: int
    path: str
    status: int
    content_type: str | None
    origin: str | None
    body: Any = None


@dataclass
class Recorder:
    """Shared state of the recording server; reset before every test."""

    status: int = 204
    delay: float = 0.0  # seconds before answering a POST /e (recorded on arrival)
    beacons: list[Beacon] = field(default_factory=list)
    pages: dict[str, str] = field(default_factory=dict)
    allowed_origins: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self.lock:
            self.status = 204
            self.delay = 0.0
            self.beacons.clear()
            self.pages.clear()
            self.allowed_origins.clear()

    def settle(self, quiet: float = 0.2, timeout: float = 3.0) -> None:
        """Wait until no request has arrived for `quiet` seconds (a closed page's pagehide
        flush may still be sending when the next test starts)."""
        deadline = time.monotonic() + timeout
        seen = -1
        while time.monotonic() < deadline:
            with self.lock:
                count = len(self.beacons)
            if count == seen:
                return
            seen = count
            time.sleep(quiet)

    def posts(self) -> list[Beacon]:
        with self.lock:
            return [b for b in self.beacons if b.method == "POST"]

    def events(self, *, delivered: bool = True) -> list[dict[str, Any]]:
        """Bodies of the POSTs (only those answered 2xx unless delivered=False)."""
        return [b.body for b in self.posts() if not delivered or 200 <= b.status < 300]

    def preflights(self) -> list[Beacon]:
        with self.lock:
            return [b for b in self.beacons if b.method == "OPTIONS"]

    def wait_for(
        self,
        predicate: Callable[[list[dict[str, Any]]], bool],
        *,
        delivered: bool = True,
        timeout: float = 5.0,
    ) -> list[dict[str, Any]]:
        """Poll until predicate(events) holds; return the events (fail on timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            events = self.events(delivered=delivered)
            if predicate(events):
                return events
            if time.monotonic() > deadline:
                pytest.fail(f"recorder never saw the expected events; it has: {events!r}")
            time.sleep(0.02)


def _cors(recorder: Recorder, request: Request) -> dict[str, str]:
    origin = request.headers.get("origin")
    if origin and origin in recorder.allowed_origins:
        return {
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Credentials": "true",
            "Vary": "Origin",
        }
    return {}


def build_app(recorder: Recorder) -> Starlette:
    async def beacon(request: Request) -> Response:
        raw = await request.body()
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw.decode("utf-8", "replace")
        with recorder.lock:
            status = recorder.status if request.method == "POST" else 204
            delay = recorder.delay if request.method == "POST" else 0.0
            recorder.beacons.append(
                Beacon(
                    method=request.method,
                    port=request.url.port or 0,
                    path=request.url.path,
                    status=status,
                    content_type=request.headers.get("content-type"),
                    origin=request.headers.get("origin"),
                    body=body,
                )
            )
        if delay:
            await asyncio.sleep(delay)
        headers = _cors(recorder, request)
        if request.method == "OPTIONS":
            headers |= {
                "Access-Control-Allow-Methods": "POST",
                "Access-Control-Allow-Headers": "Content-Type",
            }
        return Response(status_code=status, headers=headers)

    async def snippet(request: Request) -> Response:
        return Response(
            SNIPPET.read_bytes(),
            media_type="application/javascript",
            headers={"Cache-Control": "no-store"},
        )

    async def page(request: Request) -> Response:
        with recorder.lock:
            html = recorder.pages.get(request.url.path)
        if html is None:
            return HTMLResponse("<!doctype html><title>not found</title>", status_code=404)
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    return Starlette(
        routes=[
            Route("/e", beacon, methods=["POST", "OPTIONS"]),
            Route("/rokt-edge.js", snippet),
            Route("/{path:path}", page),
        ]
    )


class Site:
    """The two origins of the recorder and helpers to write test pages."""

    def __init__(self, recorder: Recorder, ports: tuple[int, int]) -> None:
        self.recorder = recorder
        self.origin = f"http://127.0.0.1:{ports[0]}"
        # a second origin (another port) playing an edge on another allowed origin
        self.edge_origin = f"http://127.0.0.1:{ports[1]}"

    def url(self, path: str) -> str:
        return self.origin + path

    def page(
        self,
        path: str,
        *,
        attrs: dict[str, str] | None = None,
        head: str = "",
        before: str = "",
        body: str = "",
        title: str | None = None,
    ) -> str:
        """Register an HTML page at path: the install snippet with data-* attrs; return its URL.

        head goes before the stub, before runs between the stub and the script tag (calls made
        before the snippet loads), body is the page's body.
        """
        data = "".join(f' data-{k}="{escape(v)}"' for k, v in (attrs or {}).items())
        html = (
            "<!doctype html><html><head><meta charset=utf-8>"
            f"<title>{escape(title or path)}</title>{head}{STUB}"
            f"{f'<script>{before}</script>' if before else ''}"
            f'<script defer src="/rokt-edge.js"{data}></script>'
            f"</head><body>{body}</body></html>"
        )
        with self.recorder.lock:
            self.recorder.pages[path] = html
        return self.url(path)

    def shop(self, attrs: dict[str, str] | None = None) -> None:
        """The three pages of a little shop: a landing page, a product page, a checkout."""
        self.page("/landing", attrs=attrs, title="Landing", body="<h1>Welcome</h1>")
        self.page(
            "/product",
            attrs=attrs,
            title="Product",
            body="<h1>A product</h1><a id=to-checkout href=/checkout>Checkout</a>",
        )
        self.page(
            "/checkout",
            attrs=attrs,
            title="Checkout",
            body=(
                "<button id=buy onclick=\"roktEdge('track','Order Completed',"
                "{order_id:'o1',revenue:10})\">Buy</button>"
            ),
        )


def _serve(app: Starlette) -> tuple[uvicorn.Server, threading.Thread, int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_level="warning", lifespan="off", ws="none", http="h11", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the recording server did not start")
        time.sleep(0.01)
    return server, thread, port


@pytest.fixture(scope="session")
def _recorder_servers() -> Iterator[tuple[Recorder, tuple[int, int]]]:
    recorder = Recorder()
    app = build_app(recorder)
    started = [_serve(app), _serve(app)]
    try:
        yield recorder, (started[0][2], started[1][2])
    finally:
        for server, _, _ in started:
            server.should_exit = True
        for _, thread, _ in started:
            thread.join(timeout=10)


@pytest.fixture
def site(_recorder_servers: tuple[Recorder, tuple[int, int]]) -> Site:
    recorder, ports = _recorder_servers
    recorder.settle()
    recorder.reset()
    return Site(recorder, ports)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found: apt-get install -y chromium to run browser tests")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright not installed: pip install playwright"
    )
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class Tab:
    """A Playwright page plus what the page's own code saw go wrong."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.page_errors: list[str] = []
        page.on("pageerror", lambda error: self.page_errors.append(str(error)))

    def goto(self, url: str) -> None:
        self.page.goto(url, wait_until="load")

    def js(self, expression: str, arg: Any = None) -> Any:
        return self.page.evaluate(expression, arg)

    def stored(self) -> dict[str, Any]:
        """The snippet's localStorage record ({} when absent)."""
        raw = self.js("() => localStorage.getItem('rokt-edge')")
        return json.loads(raw) if raw else {}

    def cookies(self) -> dict[str, str]:
        return {c["name"]: c["value"] for c in self.page.context.cookies()}

    def wait_until(self, expression: str, timeout: float = 5000) -> None:
        self.page.wait_for_function(expression, timeout=timeout)


# Records what the page's own error handlers see: window.onerror and unhandled rejections.
WATCH_ERRORS = """
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(String(e.message)));
window.addEventListener('unhandledrejection', e => window.__errors.push(String(e.reason)));
"""


@pytest.fixture
def tab(browser: Any, site: Site) -> Iterator[Tab]:
    context = browser.new_context()
    context.add_init_script(WATCH_ERRORS)
    page = context.new_page()
    page.set_default_timeout(10_000)
    tab = Tab(page)
    try:
        yield tab
        assert tab.page_errors == [], f"uncaught errors on the page: {tab.page_errors}"
    finally:
        context.close()


@pytest.fixture
def new_tab(browser: Any) -> Iterator[Callable[..., Tab]]:
    """Make tabs in fresh browser contexts, with init scripts run before any page script."""
    contexts: list[Any] = []

    def make(*init_scripts: str) -> Tab:
        context = browser.new_context()
        contexts.append(context)
        context.add_init_script(WATCH_ERRORS)
        for script in init_scripts:
            context.add_init_script(script)
        page = context.new_page()
        page.set_default_timeout(10_000)
        return Tab(page)

    try:
        yield make
    finally:
        for context in contexts:
            context.close()
