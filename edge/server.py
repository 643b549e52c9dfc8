"""Serving: uvicorn configured as `rokt-edge serve` runs it, and the guards its HTTP/1.1 needs.

Threat model: anyone who can reach the port may open connections and send bytes; none of it
may take memory, file descriptors or the event loop from the beacons of real visitors.
- A request head is bounded as nginx bounds it (`large_client_header_buffers 4 8k`): a line
  (the request line or one header) of at most 8 KiB, the whole head at most 32 KiB; above,
  414 or 431, counted from the bytes received, so a 64 MiB header is never held.
- A head must arrive within `header_timeout` of the connection's opening, or of its first byte
  after a keep-alive pause: a slow or silent client is closed (slowloris). An idle keep-alive
  connection is closed after `keep_alive_timeout` (uvicorn's own timer).
- At most `max_connections` at once (lowered to fit the open-files limit, which `rokt-edge
  serve` raises to its hard limit first); a request beyond them gets 503 and its connection is
  closed. Every answer given here, before the app, is JSON like the app's, and is logged at
  most once a minute (a flood must not flood the log).
"""

from __future__ import annotations

import asyncio
import http
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, ClassVar, Final

import httptools
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from edge.app import SHUTDOWN_GRACE_SECONDS
from edge.settings import Settings

try:
    import resource
except ImportError:  # Windows: no rlimits to raise
    resource = None  # type: ignore[assignment]

log = logging.getLogger("rokt_edge.server")

# File descriptors kept for everything but client connections: the listening socket, the
# store's connections (a reader per scrape of its stats, the writer's pipe), upstream requests,
# logs. The connection cap is lowered when the open-files limit leaves less than this.
FD_RESERVE: Final = 128
REFUSALS_LOGGED_EVERY: Final = 60.0  # seconds


@dataclass(frozen=True, slots=True)
class Limits:
    line_bytes: int  # request line or one header line
    head_bytes: int  # request line and every header
    head_seconds: float  # from the connection, or the first byte after a keep-alive pause
    connections: int


class Refusal(Exception):
    """A request answered here, before the app, with a JSON error; the connection then closes."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def response(self, default_headers: list[tuple[bytes, bytes]]) -> bytes:
        error = {"error": {"code": self.code, "message": self.message}}
        body = json.dumps(error, separators=(",", ":")).encode()  # as JSONResponse writes it
        phrase = http.HTTPStatus(self.status).phrase
        headers = [
            *default_headers,
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        if self.status == 503:
            headers.append((b"retry-after", b"1"))
        lines = [f"HTTP/1.1 {self.status} {phrase}".encode()]
        lines += [name + b": " + value for name, value in headers]
        return b"\r\n".join(lines) + b"\r\n\r\n" + body


def malformed() -> Refusal:
    return Refusal(400, "bad_request", "the request is not valid HTTP/1.1")


class RefusalLog:
    """Counts refusals by code; logs the first at once, then at most one line a minute."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.logged_at = float("-inf")

    def note(self, refusal: Refusal) -> None:
        self.counts[f"{refusal.status} {refusal.code}"] += 1
        now = time.monotonic()
        if now - self.logged_at >= REFUSALS_LOGGED_EVERY:
            counts = ", ".join(f"{kind}: {n:,}" for kind, n in sorted(self.counts.items()))
            log.warning("requests refused before the app since the last such line: %s", counts)
            self.counts.clear()
            self.logged_at = now


class EdgeHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits above. `limits` and `refusals` are set on
    the subclass `config` makes for one server."""

    limits: ClassVar[Limits]
    refusals: ClassVar[RefusalLog]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reading_head = True  # waiting for (the rest of) a request's head
        self.head_received = 0  # bytes received since the head began (whole chunks)
        self.head_parsed = 0  # bytes of the head parsed so far: target and complete headers
        self.head_deadline: asyncio.TimerHandle | None = None

    # -- the connection ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # uvicorn's, except that what it cannot parse, or what is refused, is answered here
        self._unset_keepalive_if_required()
        if self.reading_head:
            self._arm_head_deadline()  # a keep-alive connection's next request begins
            self.head_received += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            pass  # no WebSocket here: the request was answered as plain HTTP, without a warning
        except httptools.HttpParserError as error:
            cause = error.__context__
            self._refuse(cause if isinstance(cause, Refusal) else malformed())
            return
        if self.reading_head and self.head_received > self.limits.head_bytes:
            self._refuse(self._head_too_large())

    # -- the parser's callbacks: each raises a Refusal to stop it ------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.head_parsed = 0

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self.head_parsed += len(url)
        if len(self.url) > self.limits.line_bytes:
            raise Refusal(
                414, "uri_too_long", f"the request target is over {self.limits.line_bytes:,} bytes"
            )

    def on_header(self, name: bytes, value: bytes) -> None:
        line = len(name) + 2 + len(value)
        self.head_parsed += line + 2
        if line > self.limits.line_bytes:
            raise Refusal(
                431,
                "header_too_large",
                f"a header line is over {self.limits.line_bytes:,} bytes",
            )
        if self.head_parsed > self.limits.head_bytes:
            raise self._head_too_large()
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self.reading_head = False
        self.head_received = 0
        self._disarm_head_deadline()
        cap = self.limits.connections
        if len(self.connections) > cap or len(self.tasks) >= cap:
            raise Refusal(503, "overloaded", "too many connections at once; retry shortly")
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.reading_head = True  # what comes next is the next request's head
        self.head_received = 0

    # -- refusing ------------------------------------------------------------------------

    def send_400_response(self, msg: str) -> None:  # uvicorn's: plain text
        self._refuse(malformed())

    def _head_too_large(self) -> Refusal:
        return Refusal(
            431, "headers_too_large", f"the request's head is over {self.limits.head_bytes:,} bytes"
        )

    def _refuse(self, refusal: Refusal) -> None:
        self._disarm_head_deadline()
        if self.transport.is_closing():
            return
        self.refusals.note(refusal)
        if self.cycle is None or self.cycle.response_complete:
            # (A refusal during a pipelined request's response only closes: no bytes between)
            self.transport.write(refusal.response(self.server_state.default_headers))
        self.transport.close()

    def _arm_head_deadline(self) -> None:
        if self.head_deadline is None:
            self.head_deadline = self.loop.call_later(
                self.limits.head_seconds, self._head_timed_out
            )

    def _disarm_head_deadline(self) -> None:
        if self.head_deadline is not None:
            self.head_deadline.cancel()
            self.head_deadline = None

    def _head_timed_out(self) -> None:
        self.head_deadline = None
        if self.head_received == 0:  # nothing was sent: close quietly (a browser's preconnect)
            self.transport.close()
            return
        seconds = f"{self.limits.head_seconds:g}"
        self._refuse(
            Refusal(408, "request_timeout", f"the request's head did not arrive within {seconds} s")
        )


def connection_cap(wanted: int, open_files: int | None) -> int:
    """At most `wanted` connections, and fewer when the open-files limit leaves no room for
    them beside the FD_RESERVE (at least 1)."""
    if open_files is None:
        return wanted
    return max(1, min(wanted, open_files - FD_RESERVE))


def open_files_limit() -> int | None:
    """The soft open-files limit, None when there is none (or no way to know)."""
    if resource is None:
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


def raise_open_files_limit() -> None:
    """Raise this process's soft open-files limit to its hard limit, and say what it did."""
    if resource is None:
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == hard:
        log.info("open files: at most %s (the hard limit already)", _count(soft))
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as error:  # e.g. macOS: an unlimited hard limit is refused
        log.warning("open files: at most %s; raising it to %s failed: %s",
                    _count(soft), _count(hard), error)  # fmt: skip
        return
    log.info("open files: soft limit raised from %s to %s (the hard limit)",
             _count(soft), _count(hard))  # fmt: skip


def _count(limit: int) -> str:
    return "unlimited" if resource is not None and limit == resource.RLIM_INFINITY else f"{limit:,}"


def config(app: Any, settings: Settings, host: str, port: int) -> uvicorn.Config:
    """uvicorn's configuration for serving `app`: `rokt-edge serve`'s, and the tests'."""
    cap = connection_cap(settings.max_connections, open_files_limit())
    if cap < settings.max_connections:
        log.warning(
            "connections: at most %s at once, not ROKT_EDGE_MAX_CONNECTIONS = %s: the open-files "
            "limit (%s) leaves no more", f"{cap:,}", f"{settings.max_connections:,}",
            _count(open_files_limit() or 0),
        )  # fmt: skip
    limits = Limits(
        line_bytes=settings.header_line_max_bytes,
        head_bytes=settings.header_max_bytes,
        head_seconds=float(settings.header_timeout),
        connections=cap,
    )

    class Protocol(EdgeHttpProtocol):
        pass

    Protocol.limits = limits
    Protocol.refusals = RefusalLog()
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=Protocol,
        ws="none",
        log_config=None,  # ours: edge.logs.configure_logging
        proxy_headers=False,  # the edge reads forwarding headers itself, from trusted proxies only
        server_header=False,
        # Per-request access lines cost more than the beacon's own work; the shop's proxy or
        # CDN already logs requests, and /metrics counts them.
        access_log=False,
        timeout_keep_alive=settings.keep_alive_timeout,
        timeout_graceful_shutdown=int(SHUTDOWN_GRACE_SECONDS),
    )
