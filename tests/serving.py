"""The edge served in a thread by uvicorn configured exactly as `rokt-edge serve` configures it
(`edge.server.config`: its protocol's limits, timeouts and JSON refusals, its logging left to
the root logger), where tests/live.py's LiveEdge runs plain uvicorn."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from typing import Any

import uvicorn

from edge import server
from edge.app import create_app
from edge.settings import Settings
from tests.live import wait_for


@contextlib.contextmanager
def served(settings: Settings, host: str = "127.0.0.1", **overrides: Any) -> Iterator[int]:
    """Serve the edge on `host`, on a port the OS picks; yield the port. `overrides` go to
    `create_app` (`store`, `clock`)."""
    config = server.config(create_app(settings, **overrides), settings, host, 0)
    uvicorn_server = uvicorn.Server(config)
    thread = threading.Thread(target=uvicorn_server.run, name="served-edge", daemon=True)
    thread.start()
    wait_for(lambda: uvicorn_server.started or not thread.is_alive(), timeout=30)
    if not uvicorn_server.started:
        raise RuntimeError("the edge did not start")
    try:
        yield int(uvicorn_server.servers[0].sockets[0].getsockname()[1])
    finally:
        uvicorn_server.should_exit = True
        thread.join(timeout=30)


def outside_address() -> str | None:
    """This machine's address on its network (not loopback), if it has one: the address a
    client on another machine would reach the edge at."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: nothing is sent, a route is chosen
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if address.startswith("127.") else address
