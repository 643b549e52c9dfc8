"""A PostgreSQL outage seen by a running edge: it answers 503 (clients send again) and says it is
not ready while the database is unreachable, loses nothing it acknowledged, and reconnects by
itself once the database is back. The database is reached through a TCP relay the test can cut,
as a network partition or a server down would."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from tests.fake_capi import FakeCapi
from tests.test_fault_injection import (
    WRITE_KEY,
    EdgeProcess,
    edge_env,
    free_port,
    order,
    report,
    wait_for,
)


class Relay:
    """Forwards connections from a local port to the database; `cut()` closes every connection
    and refuses new ones (the database unreachable), `restore()` takes them again."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._open: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self._lock = threading.Lock()
        self.restore()

    def restore(self) -> None:
        listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        assert self._listener is not None
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the thread waiting in accept
        self._listener.close()
        self._listener = None
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._open.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # cut
                return
            server = socket.create_connection(self.target)
            with self._lock:
                self._open += [client, server]
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


@contextlib.contextmanager
def relayed(url: str) -> Iterator[tuple[Relay, str]]:
    parts = urlsplit(url)
    relay = Relay((parts.hostname or "127.0.0.1", parts.port or 5432))
    try:
        yield relay, parts._replace(netloc=f"{parts.username}@127.0.0.1:{relay.port}").geturl()
    finally:
        with contextlib.suppress(AssertionError):
            relay.cut()


def test_a_database_outage_answers_503_loses_nothing_and_the_edge_reconnects_by_itself(
    tmp_path: Path,
    fleet_database: str,
) -> None:
    orders = [order("outage", n) for n in range(20)]
    with FakeCapi() as fake, relayed(fleet_database) as (relay, url), contextlib.ExitStack() as s:
        env = edge_env(tmp_path / "unused.db", fake) | {"ROKT_EDGE_DATABASE_URL": url}
        edge = s.enter_context(EdgeProcess.started(env, free_port(), tmp_path / "edge.log"))

        def send(batch: list[dict[str, object]]) -> int:
            answer = httpx.post(
                f"{edge.url}/v1/batch", json={"batch": batch}, auth=(WRITE_KEY, ""), timeout=10
            )
            return answer.status_code

        def ready() -> int:
            return httpx.get(f"{edge.url}/readyz", timeout=10).status_code

        # Given an edge taking orders on its database
        assert send(orders[:10]) == 200
        assert ready() == 200

        # When the database becomes unreachable
        relay.cut()

        # Then the edge says it is not ready, and answers 503 rather than acknowledge an order
        # it could not store (never a 500)
        wait_for(lambda: ready() == 503, "/readyz to fail")
        assert send(orders[10:]) == 503

        # and once the database is back, it is ready again by itself and takes the orders sent
        # again; every acknowledged order reaches Rokt
        relay.restore()
        wait_for(lambda: ready() == 200, "/readyz to recover")
        wait_for(lambda: send(orders[10:]) == 200, "the orders to be taken again")
        wanted = {event["messageId"] for event in orders}

        def missing() -> set[str]:
            return wanted - set(fake.accepted_message_ids())

        wait_for(lambda: not missing(), "every order at Rokt", fail=False)
        assert not missing(), report(missing(), fake, env, edge)
        assert " 500 " not in edge.log.read_text()
