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
from urllib.parse import urlsplit

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from edge.capture.short_form import expand
from edge.settings import Settings
from tests.fake_capi import FakeCapi
from tests.live import FailingStore, LiveEdge, serve

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

    def raw(self, *, delivered: bool = True) -> list[Any]:
        """Bodies of the POSTs as sent (only those answered 2xx unless delivered=False)."""
        return [b.body for b in self.posts() if not delivered or 200 <= b.status < 300]

    def events(self, *, delivered: bool = True) -> list[dict[str, Any]]:
        """The POSTed events as the edge reads them: the snippet's short form expanded into
        Segment's shape by edge/capture/short_form.py, as the real beacon does."""
        return [expand(body) for body in self.raw(delivered=delivered)]

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


@pytest.fixture(scope="module")
def _recorder_servers() -> Iterator[tuple[Recorder, tuple[int, int]]]:
    recorder = Recorder()
    app = build_app(recorder)
    with serve(app) as first, serve(app) as second:
        yield recorder, (urlsplit(first).port or 0, urlsplit(second).port or 0)


@pytest.fixture
def site(_recorder_servers: tuple[Recorder, tuple[int, int]]) -> Site:
    recorder, ports = _recorder_servers
    recorder.settle()
    recorder.reset()
    return Site(recorder, ports)


@pytest.fixture(scope="module")
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
        raw = self.js("() => localStorage.getItem('roktEdge')")
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


# ---- the real edge ------------------------------------------------------------------------------
# A LiveEdge (the real app under uvicorn, a real SQLite file) delivering to a FakeCapi. Test pages
# are served by the edge's own origin: a pure-ASGI wrapper answers GET for the paths a test
# registers and hands everything else to the edge untouched, recording each request's method,
# path and status (so a test can count preflights, or see the 503 of a failing store).


def page_html(
    attrs: dict[str, str] | None = None, *, before: str = "", body: str = "", title: str = "page"
) -> str:
    """A page with the install snippet as a merchant pastes it, the script tag carrying attrs;
    `before` runs between the stub and the script (calls made before the snippet loads)."""
    data = "".join(f' data-{k}="{escape(v)}"' for k, v in (attrs or {}).items())
    return (
        f"<!doctype html><html><head><meta charset=utf-8><title>{escape(title)}</title>{STUB}"
        f"{f'<script>{before}</script>' if before else ''}"
        f'<script defer src="/rokt-edge.js"{data}></script>'
        f"</head><body>{body}</body></html>"
    )


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    status: int


class PagesAndLog:
    """Pure ASGI around the edge: serves registered test pages, logs every HTTP request."""

    def __init__(self, pages: dict[str, str]) -> None:
        self.app: Any = None  # the edge's app, set by wrap() each time an edge starts
        self.pages = pages
        self.seen: list[Seen] = []
        self.lock = threading.Lock()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)  # lifespan: the edge's own
            return
        method, path = scope["method"], scope["path"]
        html = self.pages.get(path) if method == "GET" else None
        if html is not None:
            await HTMLResponse(html, headers={"Cache-Control": "no-store"})(scope, receive, send)
            self._log(method, path, 200)
            return

        async def logged(message: Any) -> None:
            if message["type"] == "http.response.start":
                self._log(method, path, message["status"])
            await send(message)

        await self.app(scope, receive, logged)

    def _log(self, method: str, path: str, status: int) -> None:
        with self.lock:
            self.seen.append(Seen(method, path, status))

    def requests(self, method: str | None = None, path: str = "/e") -> list[Seen]:
        with self.lock:
            return [s for s in self.seen if s.path == path and method in (None, s.method)]


class RealEdge:
    """A live edge on a fixed loopback port (a restart keeps the page's origin), its database
    file, a store whose writes can be made to fail, and the fake Rokt it delivers to."""

    def __init__(self, settings: Settings, fake: FakeCapi, db: Path) -> None:
        self.settings = settings
        self.fake = fake
        self.db = db
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.pages: dict[str, str] = {}
        self.log = PagesAndLog(self.pages)  # kept across restarts: it logs the whole test
        self.live: LiveEdge | None = None
        self.store: FailingStore | None = None

    def start(self) -> RealEdge:
        self.store = FailingStore(self.db)
        self.live = LiveEdge(self.settings, port=self.port, store=self.store, wrap=self._wrap)
        self.live.__enter__()
        return self

    def _wrap(self, app: Any) -> PagesAndLog:
        self.log.app = app
        return self.log

    def stop(self) -> None:
        if self.live is not None and self.store is not None:
            self.live.__exit__(None, None, None)
            self.store.close()  # the edge leaves a store it was given open
            self.live = self.store = None

    def failing(self, failing: bool) -> None:
        """Make the store's writes fail (the beacon answers 503), or work again."""
        assert self.store is not None
        self.store.failing = failing

    def restart(self) -> None:
        """Stop the edge and start a new one on the same database file and port."""
        self.stop()
        self.start()

    def page(self, path: str, attrs: dict[str, str] | None = None, **parts: str) -> str:
        self.pages[path] = page_html(attrs, title=path, **parts)
        return self.url + path

    def beacons(self, method: str | None = None) -> list[Seen]:
        """The requests to /e the edge saw (of one method, when given)."""
        return self.log.requests(method)

    def delivered(self) -> list[dict[str, Any]]:
        """The batches the fake Rokt accepted, in order."""
        return [batch for request in self.fake.requests() for batch in request.accepted]

    def orders(self) -> list[str]:
        """The order ids (confirmation refs) of the conversions Rokt accepted."""
        return [
            event["data"]["custom_attributes"]["confirmationref"]
            for batch in self.delivered()
            for event in batch["events"]
        ]


def _free_port() -> int:
    # Released before the edge binds it: on loopback, with the OS handing out ports in turn,
    # nothing else takes it in between.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def start_edge(tmp_path: Path) -> Iterator[Callable[..., RealEdge]]:
    """start_edge(**settings) -> a RealEdge delivering to its own FakeCapi (stopped after)."""
    started: list[RealEdge] = []
    fakes: list[FakeCapi] = []

    def start(**values: Any) -> RealEdge:
        fake = FakeCapi().start()
        fakes.append(fake)
        db = tmp_path / f"edge{len(started)}.db"
        defaults: dict[str, Any] = {
            "api_key": fake.api_key,
            "api_secret": fake.api_secret,
            "rokt_url": fake.url,
            "database_url": f"sqlite:///{db}",
            "poll_interval": 0.05,
            "backoff_base": 0.05,
            "client_rate_limit": 0,  # a test's browser is one client sending fast
        }
        settings = Settings(**(defaults | values))
        edge = RealEdge(settings, fake, db).start()
        started.append(edge)
        return edge

    try:
        yield start
    finally:
        for edge in started:
            edge.stop()
        for fake in fakes:
            fake.stop()


@pytest.fixture
def edge_tab(new_tab: Callable[..., Tab]) -> Iterator[Callable[..., Tab]]:
    """new_tab, and afterwards: the pages' own code saw no error, from the snippet or otherwise."""
    made: list[Tab] = []

    def make(*init_scripts: str) -> Tab:
        made.append(new_tab(*init_scripts))
        return made[-1]

    yield make
    for tab in made:
        assert tab.page_errors == [], f"uncaught errors on the page: {tab.page_errors}"
        if not tab.page.is_closed():
            assert tab.js("() => window.__errors") == [], "the page's error handlers saw errors"
