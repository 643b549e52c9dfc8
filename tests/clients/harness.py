"""Segment's own clients, as merchants run them, pointed at a server on loopback.

- analytics.js (`@segment/analytics-next`) in Debian's Chromium: `SegmentPages` serves pages that
  load it from tests/clients/node_modules, configured with a write key and an API host (the
  page's own origin or another one), optionally batching; `open_analytics` opens one and
  `AnalyticsTab.call` calls `window.analytics`. Nothing comes from Segment's CDN: the library,
  its lazily loaded chunks and (for the pasted snippet) its settings are served by the page's
  server.
- `@segment/analytics-node` in Node: `run_analytics_node` makes a list of calls with the library's
  default settings against a host and closes it (tests/clients/analytics_node.mjs).
- `Recorder`: a stand-in server that records what the clients send (CORS answered for any origin).

Both libraries are pinned in tests/clients/package.json and installed by `make browser-setup`
(`npm ci`). Without node, the packages or Chromium a test skips saying why; under CI=true it fails.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.conftest import unavailable

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, Request

HERE = Path(__file__).resolve().parent
NODE_MODULES = HERE / "node_modules"
ANALYTICS_JS = "@segment/analytics-next"
ANALYTICS_NODE = "@segment/analytics-node"
BUNDLES = NODE_MODULES / ANALYTICS_JS / "dist" / "umd"  # index.js (UMD), standalone.js, chunks
NODE_SCRIPT = HERE / "analytics_node.mjs"
SETUP = "run `make browser-setup` (npm ci in tests/clients)"
# Where a page's server serves the library, its chunks and its settings: its stand-in for
# cdn.segment.com (`<cdn>/analytics-next/bundles/<file>`, `<cdn>/v1/projects/<key>/settings`).
CDN = "/__segment"
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


# ---- what the machine has -----------------------------------------------------------------------


def package_dir(package: str) -> Path:
    """Where an npm package of tests/clients is installed (unavailable() when it is not)."""
    directory = NODE_MODULES / package
    if not (directory / "package.json").is_file():
        unavailable(f"{package} is not installed in tests/clients/node_modules: {SETUP}")
    return directory


def installed_version(package: str) -> str:
    """The version of an installed npm package of tests/clients, e.g. "1.84.3"."""
    meta = json.loads((package_dir(package) / "package.json").read_text())
    return str(meta["version"])


def node_binary() -> str:
    node = shutil.which("node")
    if node is None:
        unavailable("node is not on PATH: install Node.js 20 or later to run Segment's clients")
    return node


# ---- serving on loopback ------------------------------------------------------------------------


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _respond(
    send: Send, status: int, body: bytes = b"", headers: Mapping[str, str] | None = None
) -> None:
    raw = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    raw.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


@dataclass(frozen=True)
class Received:
    """One request a Recorder saw: header names in lower case, the body parsed when JSON."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any

    @property
    def write_key(self) -> str | None:
        """The user name of the request's HTTP Basic auth (the write key), if any."""
        auth = self.headers.get("authorization", "")
        if not auth.startswith("Basic "):
            return None
        return base64.b64decode(auth[6:]).decode().partition(":")[0]


@dataclass
class Recorder:
    """A stand-in for the edge: records every request that reaches it. A POST is answered
    `status` with {"success": true}; a CORS preflight 204, allowing the asking origin with
    credentials and the headers it asked for; anything else 404. Cross-origin answers carry
    Access-Control-Allow-Origin (the request's origin) and -Credentials."""

    status: int = 200
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        raw = await _read_body(receive)
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw.decode("utf-8", "replace")
        method = scope["method"]
        with self.lock:
            self.received.append(Received(method, scope["path"], headers, body))
            status = self.status
        cors = {}
        if "origin" in headers:
            cors = {
                "Access-Control-Allow-Origin": headers["origin"],
                "Access-Control-Allow-Credentials": "true",
                "Vary": "Origin",
            }
        if method == "OPTIONS":
            asked = headers.get("access-control-request-headers", "")
            cors |= {"Access-Control-Allow-Methods": "POST", "Access-Control-Allow-Headers": asked}
            await _respond(send, 204, headers=cors)
        elif method == "POST":
            ok = b'{"success": true}'
            await _respond(send, status, ok, cors | {"Content-Type": "application/json"})
        else:
            await _respond(send, 404, b"not found", {"Content-Type": "text/plain"})

    def requests(self, method: str | None = None, path: str | None = None) -> list[Received]:
        """What arrived so far, in order (of one method, to one path, when given)."""
        with self.lock:
            return [
                r for r in self.received if method in (None, r.method) and path in (None, r.path)
            ]

    def clear(self) -> None:
        with self.lock:
            self.received.clear()
            self.status = 200

    def wait_for(
        self, predicate: Callable[[list[Received]], bool], *, timeout: float = 10.0
    ) -> list[Received]:
        """Poll until predicate(requests) holds; return them (fail the test on timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            received = self.requests()
            if predicate(received):
                return received
            if time.monotonic() > deadline:
                seen = [(r.method, r.path) for r in received]
                pytest.fail(f"the expected requests never arrived; the server saw {seen}")
            time.sleep(0.02)


# ---- analytics.js in a page ---------------------------------------------------------------------


@dataclass(frozen=True)
class Batching:
    """analytics.js's batching delivery strategy: up to `size` events a POST to <apiHost>/b, sent
    when full or `timeout_ms` after the first (the library's defaults: 10 and 5000)."""

    size: int = 10
    timeout_ms: int = 5000


def segmentio_options(
    api: str, *, batching: Batching | None = None, fetch: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The options of analytics.js's Segment.io destination that send to `api`, a URL such as
    "https://shop.example/v1": {"apiHost": "shop.example/v1", "protocol": "https"} (apiHost never
    carries the scheme), plus the delivery strategy. `fetch` goes into the strategy's config:
    credentials ("include" sends cookies cross-origin), keepalive, headers, priority."""
    url = urlsplit(api)
    if url.scheme not in ("http", "https") or not url.netloc:
        raise ValueError(f"api must be an http(s) URL, not {api!r}")
    options: dict[str, Any] = {"apiHost": url.netloc + url.path.rstrip("/"), "protocol": url.scheme}
    config = dict(fetch or {})
    if batching is not None:
        config = {"size": batching.size, "timeout": batching.timeout_ms} | config
        options["deliveryStrategy"] = {"strategy": "batching", "config": config}
    elif config:
        options["deliveryStrategy"] = {"strategy": "standard", "config": config}
    return options


def cdn_settings(write_key: str) -> dict[str, Any]:
    """A source's settings as cdn.segment.com serves them (trimmed to what analytics.js reads):
    Segment.io's apiKey is the write key the library sends. Its apiHost is Segment's; the load
    options override it. Remote metrics are off (real settings sample 10% of them, sent every
    30 s to <apiHost>/m), so a test sees only the calls it makes."""
    return {
        "integrations": {
            "Segment.io": {
                "apiKey": write_key,
                "apiHost": "api.segment.io/v1",
                "unbundledIntegrations": [],
                "addBundledMetadata": True,
                "maybeBundledConfigIds": {},
            }
        },
        "plan": {},
        "enabledMiddleware": {},
        "metrics": {"sampleRate": 0},
        "remotePlugins": [],
    }


def _js(value: Any) -> str:
    """A JSON value to embed in a <script>."""
    return json.dumps(value).replace("</", "<\\/")


# Segment's snippet as the merchant pastes it (@segment/snippet 5.2.1's `snippet.min` output with
# useHostForBundles), with one change: its CDN, "https://cdn.segment.com" or the host it is given,
# is the page's own origin + CDN (an expression, so one page serves any origin).
SNIPPET = (
    '!function(){var i="analytics",analytics=window[i]=window[i]||[];if(!analytics.initialize)'
    'if(analytics.invoked)window.console&&console.error&&console.error("Segment snippet included'
    ' twice.");else{analytics.invoked=!0;analytics.methods=["trackSubmit","trackClick",'
    '"trackLink","trackForm","pageview","identify","reset","group","track","ready","alias",'
    '"debug","page","screen","once","off","on","addSourceMiddleware","addIntegrationMiddleware",'
    '"setAnonymousId","addDestinationMiddleware","register"];analytics.factory=function(e){'
    "return function(){if(window[i].initialized)return window[i][e].apply(window[i],arguments);"
    'var n=Array.prototype.slice.call(arguments);if(["track","screen","alias","group","page",'
    '"identify"].indexOf(e)>-1){var c=document.querySelector("link[rel=\'canonical\']");'
    'n.push({__t:"bpc",c:c&&c.getAttribute("href")||void 0,p:location.pathname,u:location.href,'
    "s:location.search,t:document.title,r:document.referrer})}n.unshift(e);analytics.push(n);"
    "return analytics}};for(var n=0;n<analytics.methods.length;n++){var key=analytics.methods[n];"
    "analytics[key]=analytics.factory(key)}analytics.load=function(key,n){var t=document."
    'createElement("script");t.type="text/javascript";t.async=!0;t.setAttribute('
    '"data-global-segment-analytics-key",i);t.src=CDN+"/analytics.js/v1/" + key + '
    '"/analytics.min.js";var r=document.getElementsByTagName("script")[0];r.parentNode.'
    "insertBefore(t,r);analytics._loadOptions=n};analytics._writeKey=WRITE_KEY;"
    'analytics._cdn = CDN;analytics.SNIPPET_VERSION="5.2.0";\n'
    "analytics.load(WRITE_KEY, LOAD_OPTIONS);\nPAGE}}();"
)


class SegmentPages:
    """Pure ASGI: serves test pages running analytics.js and, under CDN, what the library loads
    (the UMD build, the standalone build the snippet loads, the lazily loaded chunks, the
    settings of the pages' write keys); hands every other request to `app` (the edge, a
    Recorder), or answers 404. Pages find the library on their own origin (location.origin)."""

    def __init__(self, app: ASGIApp | None = None) -> None:
        self.app = app
        self.pages: dict[str, str] = {}
        self.settings: dict[str, dict[str, Any]] = {}

    def page(
        self,
        path: str,
        *,
        write_key: str,
        api: str,
        batching: Batching | None = None,
        fetch: Mapping[str, Any] | None = None,
        snippet: bool = False,
        page_view: bool = False,
        title: str = "Shop",
        head: str = "",
        body: str = "",
    ) -> str:
        """Register a page at `path` (a path, without query) and return it. analytics.js sends
        to `api` (e.g. "http://127.0.0.1:8080/v1": its calls go to /v1/t, /v1/i, ...) with
        `write_key`, one POST a call, or batched to /v1/b with `batching`.

        By default the page loads the UMD build (what `import {AnalyticsBrowser} from
        "@segment/analytics-next"` runs) and calls AnalyticsBrowser.load({writeKey, cdnSettings},
        {integrations: {"Segment.io": ...}}): no settings are fetched. With snippet=True it runs
        Segment's pasted snippet instead, `analytics.load(writeKey, {integrations: ...})`, which
        loads the standalone build (cdn.segment.com's analytics.min.js) and fetches its settings
        (served here). page_view=True makes the page's analytics.page() call, as the snippet does.
        Either way window.analyticsReady turns true once the library is loaded."""
        load_options = {
            "integrations": {"Segment.io": segmentio_options(api, batching=batching, fetch=fetch)}
        }
        self.settings[write_key] = cdn_settings(write_key)
        cdn = f"location.origin+{_js(CDN)}"
        if snippet:
            values = {
                "CDN": cdn,
                "WRITE_KEY": _js(write_key),
                "LOAD_OPTIONS": _js(load_options),
                "PAGE": "analytics.page();\n" if page_view else "",
            }
            script = re.sub(
                r"\b(CDN|WRITE_KEY|LOAD_OPTIONS|PAGE)\b", lambda m: values[m[1]], SNIPPET
            )
            library = f"<script>{script}</script>"
        else:
            # index.js decides once, as it runs, where its lazily loaded chunks come from:
            # window.analytics._cdn, else https://cdn.segment.com.
            library = (
                f"<script>window.analytics={{_cdn:{cdn}}}</script>"
                f'<script src="{CDN}/analytics-next/bundles/index.js"></script>'
                "<script>window.analytics=AnalyticsNext.AnalyticsBrowser.load("
                f"{{writeKey:{_js(write_key)},cdnSettings:{_js(cdn_settings(write_key))}}},"
                f"{_js(load_options)});{'analytics.page();' if page_view else ''}</script>"
            )
        self.pages[path] = (
            f"<!doctype html><html><head><meta charset=utf-8><title>{escape(title)}</title>"
            f"{head}{library}"
            "<script>analytics.ready(function(){window.analyticsReady=true})</script>"
            f"</head><body>{body}</body></html>"
        )
        return path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            found = self._get(scope["path"])
            if found is not None:
                content_type, content = found
                headers = {"Content-Type": content_type, "Cache-Control": "no-store"}
                await _respond(send, 200, content, headers)
                return
        if self.app is not None:
            await self.app(scope, receive, send)
        elif scope["type"] == "http":
            await _respond(send, 404, b"not found", {"Content-Type": "text/plain"})

    def _get(self, path: str) -> tuple[str, bytes] | None:
        if path in self.pages:
            return "text/html; charset=utf-8", self.pages[path].encode()
        if not path.startswith(CDN + "/"):
            return None
        parts = path[len(CDN) + 1 :].split("/")
        javascript = "application/javascript"
        match parts:
            case ["analytics-next", "bundles", name] if name in _bundle_names():
                return javascript, _bundle(name)
            case ["analytics.js", "v1", _, "analytics.min.js"]:
                return javascript, _bundle("standalone.js")
            case ["v1", "projects", write_key, "settings"] if write_key in self.settings:
                return "application/json", json.dumps(self.settings[write_key]).encode()
        return None


@cache
def _bundle_names() -> frozenset[str]:
    return frozenset(p.name for p in BUNDLES.glob("*.js")) if BUNDLES.is_dir() else frozenset()


@cache
def _bundle(name: str) -> bytes:
    return (BUNDLES / name).read_bytes()


# ---- Chromium -----------------------------------------------------------------------------------


@contextlib.contextmanager
def chromium() -> Iterator[Browser]:
    """Debian's Chromium driven by Playwright (launched as tests/browser launches it); checks
    that analytics.js is installed too."""
    if not CHROMIUM.exists():
        unavailable(f"{CHROMIUM} not found: apt-get install -y chromium to run browser tests")
    if not (BUNDLES / "index.js").is_file():
        unavailable(f"{ANALYTICS_JS} is not installed in tests/clients/node_modules: {SETUP}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright not installed: pip install playwright")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def _on_loopback(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme not in ("http", "https", "ws", "wss") or parts.hostname in LOOPBACK


class AnalyticsTab:
    """A page in a fresh browser context, and what went wrong on it: uncaught errors, console
    errors, and every request for anything off loopback (analytics.js must load nothing from
    the internet). Playwright reports these as Python next talks to it (any call on the page)."""

    def __init__(self, context: BrowserContext) -> None:
        self.context = context
        self.page: Page = context.new_page()
        self.page.set_default_timeout(10_000)
        self.page_errors: list[str] = []
        self.console_errors: list[str] = []
        self.outside: list[str] = []
        self.page.on("pageerror", lambda error: self.page_errors.append(str(error)))
        self.page.on("console", self._console)
        # A listener, not a route: a route with a predicate holds every request of the page
        # until Python answers, so nothing would reach a server while the test sleeps.
        context.on("request", self._request)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.console_errors.append(message.text)

    def _request(self, request: Request) -> None:
        if not _on_loopback(request.url):
            self.outside.append(request.url)

    def goto(self, url: str, *, ready: bool = True) -> None:
        """Open url; with ready, wait until analytics.js has loaded (window.analyticsReady)."""
        self.page.goto(url, wait_until="load")
        if ready:
            self.page.wait_for_function("() => window.analyticsReady === true")

    def call(self, method: str, *args: Any) -> None:
        """window.analytics[method](...args), e.g. call("track", "Order Completed", {...}).
        Returns at once: the test watches the server for what is sent."""
        self.page.evaluate("([m, args]) => { window.analytics[m](...args) }", [method, args])

    def js(self, expression: str, arg: Any = None) -> Any:
        return self.page.evaluate(expression, arg)

    def close(self) -> None:
        self.context.close()


@contextlib.contextmanager
def open_analytics(
    browser: Browser, url: str, *, ready: bool = True, init_scripts: Sequence[str] = ()
) -> Iterator[AnalyticsTab]:
    """A tab in a fresh context (no cookies, no localStorage) on url, closed after; init_scripts
    run before any script of each page. Afterwards the page must have had no uncaught error
    and asked for nothing off loopback."""
    context = browser.new_context()
    for script in init_scripts:
        context.add_init_script(script)
    tab = AnalyticsTab(context)
    try:
        tab.goto(url, ready=ready)
        yield tab
        tab.page.evaluate("0")  # let Playwright deliver the page's pending events
        assert tab.page_errors == [], f"uncaught errors on the page: {tab.page_errors}"
        assert tab.outside == [], f"the page asked for things off loopback: {tab.outside}"
    finally:
        tab.close()


# ---- analytics-node -----------------------------------------------------------------------------

Call = tuple[str, Mapping[str, Any]]


@dataclass(frozen=True)
class NodeRun:
    """What tests/clients/analytics_node.mjs saw: the HTTP requests the library made (url,
    method, headers, parsed body), the statuses answered, the errors it reported."""

    returncode: int
    version: str
    requests: list[dict[str, Any]]
    responses: list[dict[str, Any]]
    errors: list[str]
    stderr: str


def run_analytics_node(
    host: str,
    write_key: str,
    calls: Sequence[Call],
    *,
    path: str | None = None,
    close_timeout: float | None = None,
    timeout: float = 120.0,
    check: bool = True,
) -> NodeRun:
    """Make `calls` with @segment/analytics-node, `new Analytics({writeKey, host})` with its
    default batching (flushAt 15, flushInterval 10 s), then closeAndFlush(). A call is a method
    (identify, track, page, screen, group, alias) and its params object, e.g.
    ("track", {"userId": "u1", "event": "Order Completed", "properties": {...}}).

    host is the base URL ("http://127.0.0.1:8080"); the library posts to host + path, path
    defaulting to its own "/v1/batch" (a path in host is dropped: new URL(path, host)).
    close_timeout (seconds) bounds closeAndFlush (default: the library's 75 s). With check,
    fail the test when the library reported an error (exit status 1) or the script broke."""
    node = node_binary()
    package_dir(ANALYTICS_NODE)
    document: dict[str, Any] = {
        "host": host,
        "writeKey": write_key,
        "calls": [[method, dict(params)] for method, params in calls],
    }
    if path is not None:
        document["path"] = path
    if close_timeout is not None:
        document["closeTimeout"] = int(close_timeout * 1000)
    try:
        done = subprocess.run(
            [node, str(NODE_SCRIPT)],
            input=json.dumps(document),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"analytics-node did not finish in {timeout} s")
    if done.returncode not in (0, 1) or not done.stdout.strip():
        pytest.fail(f"analytics_node.mjs failed ({done.returncode}): {done.stderr}")
    seen = json.loads(done.stdout)
    run = NodeRun(
        done.returncode,
        seen["version"],
        seen["requests"],
        seen["responses"],
        seen["errors"],
        done.stderr,
    )
    if check and run.returncode != 0:
        pytest.fail(f"analytics-node reported errors: {run.errors}")
    return run
