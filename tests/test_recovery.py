"""Crash recovery in seconds, not a lease: an edge killed (SIGKILL) while its requests to Rokt are
in flight, started again on its store, takes back what its earlier life held at once
(`edge.store.owners`, `edge.store.liveness`) rather than when the claims' leases run out (120 s
by default: before owners, the last event of such a crash reached Rokt 127 s after the load)."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import httpx

from tests.fake_capi import FakeCapi, Reply
from tests.test_fault_injection import (
    WRITE_KEY,
    EdgeProcess,
    edge_env,
    free_port,
    order,
    report,
    require_proc,
    wait_for,
)

EVENTS = 30
RECOVERED_WITHIN = 10.0  # seconds from the restart to the last event at Rokt
HUNG = 60.0  # seconds the fake Rokt holds each request while the edge is killed


def test_an_edge_killed_mid_send_and_started_again_delivers_what_it_held_within_seconds(
    tmp_path: Path,
) -> None:
    require_proc()
    orders = [order("recovery", n) for n in range(EVENTS)]
    with FakeCapi() as fake, contextlib.ExitStack() as stack:
        # Given an edge with the default leases (120 s), whose requests to Rokt hang
        env = edge_env(tmp_path / "edge.db", fake)
        env.pop("ROKT_EDGE_LEASE_SECONDS")
        env["ROKT_EDGE_REQUEST_TIMEOUT"] = str(HUNG)
        fake.outage(Reply(503, delay=HUNG))
        port = free_port()
        first = stack.enter_context(EdgeProcess.started(env, port, tmp_path / "edge-1.log"))

        # and a backend's batch of orders acknowledged, and their requests to Rokt in flight
        answer = httpx.post(
            f"{first.url}/v1/batch", json={"batch": orders}, auth=(WRITE_KEY, ""), timeout=10
        )
        assert answer.status_code == 200, answer.text
        wait_for(lambda: fake.requests(), "a request in flight to the fake Rokt")

        # When the edge is killed mid-send, Rokt recovers, and the edge is started again
        first.kill()
        fake.outage(None)
        restarted_at = time.monotonic()
        second = stack.enter_context(EdgeProcess.started(env, port, tmp_path / "edge-2.log"))

        # Then every order reaches Rokt within seconds of the restart, not once leases ran out
        sent = {event["messageId"] for event in orders}

        def missing() -> set[str]:
            return sent - set(fake.accepted_message_ids())

        wait_for(lambda: not missing(), "every order at Rokt", fail=False)
        assert not missing(), report(missing(), fake, env, first, second)
        assert time.monotonic() - restarted_at < RECOVERED_WITHIN, report(
            set(), fake, env, first, second
        )
        assert "taken again at once" in second.log.read_text()
