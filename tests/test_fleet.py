"""A fleet: two `rokt-edge serve` processes on one PostgreSQL database, as behind a shop's load
balancer. A browser's click seen by one edge reaches a conversion another edge took in; one
edge killed (SIGKILL) under load loses nothing, and what it held is sent within seconds, not
when its leases run out."""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from tests.fake_capi import FakeCapi, Reply
from tests.test_fault_injection import (
    CHROME,
    WRITE_KEY,
    EdgeProcess,
    Load,
    edge_env,
    free_port,
    order,
    report,
    wait_for,
)

EVENTS = 600
DELIVERED_WITHIN = 10.0  # seconds from the load's end to the last event at Rokt
SLOW_UPSTREAM = 0.2  # seconds the fake Rokt takes to answer each request
LEASE = "120"  # the default: what a dead edge's claims would wait without owners


@contextlib.contextmanager
def fleet(
    tmp_path: Path, database: str, fake: FakeCapi
) -> Iterator[tuple[dict[str, str], EdgeProcess, EdgeProcess]]:
    env = edge_env(tmp_path / "unused.db", fake) | {
        "ROKT_EDGE_DATABASE_URL": database,
        "ROKT_EDGE_LEASE_SECONDS": LEASE,
    }
    with contextlib.ExitStack() as stack:
        a, b = (
            stack.enter_context(EdgeProcess.started(env, free_port(), tmp_path / f"edge-{n}.log"))
            for n in ("a", "b")
        )
        yield env, a, b


def click_ids_by_order(fake: FakeCapi) -> dict[str, set[Any]]:
    """The click ids Rokt received with each order (confirmation ref)."""
    found: dict[str, set[Any]] = {}
    for request in fake.requests():
        for batch in request.accepted:
            click = batch.get("integration_attributes", {}).get("1277", {})
            for event in batch["events"]:
                ref = (event["data"].get("custom_attributes") or {}).get("confirmationref")
                if ref is not None:
                    found.setdefault(ref, set()).add(click.get("passbackconversiontrackingid"))
    return found


def test_a_click_seen_by_one_edge_reaches_the_conversion_another_took_in(
    tmp_path: Path, fleet_database: str
) -> None:
    with FakeCapi() as fake, fleet(tmp_path, fleet_database, fake) as (_, a, b):
        # Given a shopper who landed from a Rokt ad: the snippet's page view went to edge A
        page = {
            "type": "page", "anonymousId": "visitor-1", "messageId": "page-1",
            "context": {"page": {"url": "https://shop.example/?rtid=CLICK-1",
                                 "search": "?rtid=CLICK-1"}},
        }  # fmt: skip
        headers = {"content-type": "text/plain", "user-agent": CHROME}
        assert httpx.post(f"{a.url}/e", json=page, headers=headers).status_code == 200

        # When the shop's backend reports, through edge B, who the visitor is and the order
        batch = [
            {"type": "identify", "userId": "customer-1", "anonymousId": "visitor-1",
             "messageId": "identify-1", "traits": {"email": "shopper@example.com"}},
            {"type": "track", "event": "Order Completed", "userId": "customer-1",
             "messageId": "order-1",
             "properties": {"order_id": "order-1", "revenue": 42, "currency": "USD"}},
        ]  # fmt: skip
        answer = httpx.post(f"{b.url}/v1/batch", json={"batch": batch}, auth=(WRITE_KEY, ""))
        assert answer.status_code == 200, answer.text

        # Then Rokt gets the order once, with the click edge A saw
        wait_for(lambda: "order-1" in click_ids_by_order(fake), "the order at Rokt")
        assert click_ids_by_order(fake) == {"order-1": {"CLICK-1"}}


def test_an_edge_killed_under_load_loses_nothing_and_its_work_resumes_within_seconds(
    tmp_path: Path, fleet_database: str
) -> None:
    orders = [order("fleet", n) for n in range(EVENTS)]
    with FakeCapi() as fake, fleet(tmp_path, fleet_database, fake) as (env, a, b):
        # Given both edges taking beacons and batches, as behind a load balancer, and a Rokt
        # slow to answer (each edge always has requests in flight)
        fake.outage(Reply(202, delay=SLOW_UPSTREAM))
        load = Load([a.url, b.url], orders)
        with load:
            # When edge A is killed (SIGKILL) with a third of the load answered
            load.wait_acknowledged(EVENTS // 3)
            a.kill()
            # and the rest goes to edge B, as a load balancer would send it
            load.finish()
        ended = time.monotonic()

        # Then every acknowledged event reaches Rokt within seconds of the load's end, though
        # edge A died holding leases of two minutes
        acknowledged = load.acknowledged()
        assert acknowledged == {event["messageId"] for event in orders}

        def missing() -> set[str]:
            return acknowledged - set(fake.accepted_message_ids())

        wait_for(lambda: not missing(), "every acknowledged event at the fake Rokt", fail=False)
        delivered_after = time.monotonic() - ended
        assert not missing(), report(missing(), fake, env, a, b)
        assert delivered_after < DELIVERED_WITHIN, report(set(), fake, env, a, b)
        assert "of a process that died are taken again at once" in b.log.read_text()

        # and duplicates (sent by A, then again after its death) are few and each carries the
        # event's own message id
        sent = Counter(fake.accepted_message_ids())
        duplicates = sum(count - 1 for count in sent.values())
        print(
            f"fleet: {len(acknowledged)} events acknowledged, the last at Rokt "
            f"{delivered_after:.1f} s after the load ended; {duplicates} duplicate sends "
            f"({len(load.refused)} refused, {load.unanswered} resent)"
        )
        assert duplicates <= len(acknowledged) // 10
