"""The edge served by a real uvicorn server on loopback, in a background thread.

    with LiveEdge(settings) as edge:
        httpx.post(edge.url + "/e", ...)

(`serve(app)` serves any other ASGI app the same way: a test's pages, a recorder.)

The server listens on a port the OS picks (or the one given: a browser test restarts the edge on
the same origin, so the page keeps its localStorage and cookies), runs the app's lifespan (store,
delivery loop), and stops gracefully on exit, as `rokt-edge serve` does.
"""

from __future__ import annotations

import contextlib
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import uvicorn

from edge.app import create_app
from edge.settings import Settings
from edge.store.errors import StoreUnavailable
from edge.store.sqlite import SQLiteStore
from edge.store.values import Arrival, Intake, PutResult

ROOT = Path(__file__).resolve().parents[1]


class FailingStore(SQLiteStore):
    """A real SQLite store whose writes fail while `failing` is set, as a full disk would (the
    edge then answers 503)."""

    failing = False

    async def put(self, intake: Intake) -> PutResult:
        if self.failing:
            raise StoreUnavailable("disk full (injected)")
        return await super().put(intake)

    async def put_arrival(self, arrival: Arrival) -> None:
        if self.failing:
            raise StoreUnavailable("disk full (injected)")
        await super().put_arrival(arrival)


class LiveEdge:
    def __init__(
        self,
        settings: Settings,
        *,
        port: int = 0,
        wrap: Callable[[Any], Any] | None = None,
        **overrides: Any,
    ) -> None:
        """`wrap(app)` returns the ASGI app to serve around the edge's (a test's pages, a log of
        requests); `self.app` stays the edge's own."""
        self.settings = settings
        self.app = create_app(settings, **overrides)
        config = uvicorn.Config(
            wrap(self.app) if wrap else self.app,
            host="127.0.0.1",
            port=port,
            http="h11",
            ws="none",
            log_level="warning",
            access_log=False,
            proxy_headers=False,  # as `rokt-edge serve`: the edge reads forwarding headers itself
            timeout_graceful_shutdown=5,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="live-edge", daemon=True)
        self.url = ""

    def __enter__(self) -> LiveEdge:
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the edge did not start")
            time.sleep(0.01)
        port = self._server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=15)

    @property
    def edge(self) -> Any:
        """The app's shared state (store, sender, metrics), for assertions."""
        return self.app.state.edge

    def processed(self, timeout: float = 10.0) -> None:
        """Wait until every request answered so far has been processed (`edge.processing`):
        its outbox items, skip records and identity links are in the store."""

        def no_arrivals() -> bool:
            with contextlib.closing(sqlite3.connect(self.edge.store.path)) as db:
                return bool(db.execute("SELECT count(*) FROM arrivals").fetchone()[0] == 0)

        wait_for(no_arrivals, timeout)


def wait_for(condition: Any, timeout: float = 10.0, interval: float = 0.05) -> None:
    """Poll `condition()` until it is true; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {condition}")
        time.sleep(interval)


@contextlib.contextmanager
def serve(app: Any, port: int = 0) -> Iterator[str]:
    """Serve an ASGI app with uvicorn on loopback (on `port`, or a free one) in a thread; yield
    its origin, "http://127.0.0.1:<port>"."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
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
            raise RuntimeError("the loopback server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
