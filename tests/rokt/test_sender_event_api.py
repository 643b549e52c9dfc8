"""The sender delivering to contract B, against the fake Event API on loopback: every response
class of spec/event-api-wire.md, v1 tokens and idempotency, the time window at send time, and the
whole edge (beacon to Event API) with `rokt-edge serve`'s app and `python -m edge.rokt.deliver`."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge.metrics import Metrics
from edge.rokt.capi import encode
from edge.rokt.event_api import EventApiContract
from edge.rokt.event_api_auth import idempotency_key
from edge.rokt.fields import Mapped
from edge.rokt.pipeline import Outbound
from edge.rokt.sender import Sender
from edge.settings import Settings, load_settings
from edge.store.base import EXPIRED, REJECTED, Intake
from edge.store.sqlite import SQLiteStore
from tests.conftest import ROOT
from tests.fake_event_api import FakeEventApi, Fault, basic, error_body
from tests.live import LiveEdge, wait_for
from tests.outbound import conversion
from tests.rokt.test_sender import eventually, running, settled

pytestmark = pytest.mark.anyio

ACCOUNT = "12345"
PUBLIC_KEY, SECRET_KEY = "rpub-test-1", "rsec-test-1"
APP_ID = "40svbin0d194subpohl079rhck"
APP_SECRET = "1dimhvr1v6skae9uhvtgs3chs2astnjf0469df6ul9hurubtoovn"
MONTH = 31 * 24 * 3600


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    store = SQLiteStore(tmp_path / "edge.db")
    yield store
    store.close()


def order(n: int, *, age_seconds: float = 60.0) -> Outbound:
    """Order n as the pipeline stores it for contract B, built when it happened (so an old
    order was inside the Event API's window then); its clientEventId is `msg-n`."""
    message_id = f"msg-{n:06d}"
    timestamp_ms = int((time.time() - age_seconds) * 1000)
    mapped = Mapped(
        mapping="Send",
        message_id=message_id,
        timestamp_ms=timestamp_ms,
        conversion_type="Order Completed",
        confirmation_ref=f"order-{n}",
        amount=10.0 + n,
        currency="USD",
        email=f"buyer{n}@example.com",
        click_id=f"rtid-{n}",
    )
    contract = EventApiContract(ACCOUNT, plain_ids_for="Send", clock=lambda: timestamp_ms / 1000)
    body = contract.build(mapped)
    return Outbound(f"Send\n{message_id}", "Send", message_id, timestamp_ms, body)


def orders(count: int) -> list[Outbound]:
    return [order(n) for n in range(count)]


def ids(items: list[Outbound]) -> list[str]:
    return [item.message_id for item in items]


def make_settings(fake: FakeEventApi, **overrides: Any) -> Settings:
    """Contract B with v2 keys; quick retries and polls, no rate limit, unless a test says."""
    values: dict[str, Any] = {
        "upstream": "event-api",
        "account_id": ACCOUNT,
        "api_key": PUBLIC_KEY,
        "api_secret": SECRET_KEY,
        "rokt_url": fake.url,
        "rate_limit": 0,
        "backoff_base": 0.05,
        "backoff_cap": 0.2,
        "pause_retry": 0.2,
        "poll_interval": 0.02,
        "request_timeout": 2,
        "lease_seconds": 5,
        **overrides,
    }
    return load_settings({f"ROKT_EDGE_{k.upper()}": str(v) for k, v in values.items() if v != ""})


def v1(fake: FakeEventApi, **overrides: Any) -> Settings:
    return make_settings(
        fake, event_api_auth="v1", api_key=APP_ID, api_secret=APP_SECRET, **overrides
    )


async def delivered(store: SQLiteStore, count: int) -> bool:
    return (await store.stats()).delivered == count


async def test_events_go_in_requests_of_100_with_the_references_headers_each_once(
    event_api: FakeEventApi, store: SQLiteStore
) -> None:
    items = orders(250)
    await store.put(Intake(outbound=items))

    async with running(Sender(make_settings(event_api), store)):
        await eventually(lambda: settled(store))

    requests = event_api.received
    assert sorted(len(r.body["events"]) for r in requests) == [50, 100, 100]
    assert {r.path for r in requests} == {"/v2/events"}
    assert {r.body["accountId"] for r in requests} == {ACCOUNT}
    headers = requests[0].headers
    assert headers["rokt-version"] == "2020-05-21"
    assert headers["charset"] == "utf-8"
    assert headers["content-type"] == "application/json"
    assert headers["authorization"] == basic(PUBLIC_KEY, SECRET_KEY)
    assert sorted(event_api.accepted) == ids(items)
    assert (await store.stats()).delivered == 250


async def test_the_body_is_exactly_what_the_contract_packs(
    event_api: FakeEventApi, store: SQLiteStore
) -> None:
    items = orders(3)
    await store.put(Intake(outbound=items))
    transport = Recording()

    async with running(Sender(make_settings(event_api), store, transport=transport)):
        await eventually(lambda: settled(store))

    [packed] = EventApiContract(ACCOUNT).pack([item.body for item in items])
    assert transport.bodies == [encode(packed.body)]


async def test_a_200_with_unprocessed_records_fails_only_those(
    event_api: FakeEventApi, store: SQLiteStore
) -> None:
    items = orders(5)
    await store.put(Intake(outbound=items))
    event_api.unprocessed = {items[3].message_id: ("ValidationError", "Invalid content")}

    async with running(Sender(make_settings(event_api), store)):
        await eventually(lambda: settled(store))

    stats = await store.stats()
    assert (stats.delivered, stats.dead) == (4, {REJECTED: 1})
    assert stats.dead_messages == [(REJECTED, "ValidationError: Invalid content", 1)]
    assert sorted(event_api.accepted) == ids(items[:3] + items[4:])
    assert len(event_api.received) == 1  # nothing sent twice


async def test_a_400_for_one_bad_event_among_100_is_isolated_by_splitting(
    event_api: FakeEventApi, store: SQLiteStore
) -> None:
    items = orders(100)
    # A name the Event API reserves, slipped into a stored event: the whole request is refused.
    items[37].body["objectData"].append({"name": "rokt.internal", "value": "x"})
    await store.put(Intake(outbound=items))

    async with running(Sender(make_settings(event_api), store)):
        await eventually(lambda: settled(store))

    assert Counter(event_api.accepted) == Counter(ids(items)) - Counter([items[37].message_id])
    stats = await store.stats()
    assert (stats.delivered, stats.dead) == (99, {REJECTED: 1})
    [(_, message, _)] = stats.dead_messages
    assert message.startswith("400 RequestValidationError: events[0].objectData: the rokt.")
    assert len(event_api.received) <= 1 + 2 * 7  # bisection: a few requests, not a hundred


async def test_a_401_pauses_delivery_then_it_resumes_with_nothing_lost(
    event_api: FakeEventApi, store: SQLiteStore
) -> None:
    items = orders(150)
    await store.put(Intake(outbound=items))
    event_api.key_authorization = basic(PUBLIC_KEY, "rsec-rotated")  # the keys were rotated
    metrics = Metrics(store)
    sender = Sender(make_settings(event_api), store, metrics=metrics)

    async with running(sender):
        await eventually(lambda: asyncio.sleep(0, sender.paused is not None))
        await asyncio.sleep(0.5)  # a few probes, all refused
        stats = await store.stats()
        assert stats.paused is not None
        assert stats.paused.reason.startswith("401")
        assert (stats.pending, stats.dead, stats.delivered) == (150, {}, 0)
        assert b"rokt_edge_delivery_paused 1.0" in metrics.render()
        assert 2 <= len(event_api.received) <= 10  # probed slowly, one event at a time

        event_api.key_authorization = basic(PUBLIC_KEY, SECRET_KEY)  # the merchant's keys again
        await eventually(lambda: settled(store))

    assert sender.paused is None
    assert (await store.stats()).paused is None
    assert sorted(event_api.accepted) == ids(items)


async def test_a_403_for_another_account_pauses_too(
    event_api: FakeEventApi, store: SQLiteStore
) -> None:
    await store.put(Intake(outbound=orders(2)))
    sender = Sender(make_settings(event_api, account_id="99999"), store)

    async with running(sender):
        await eventually(lambda: asyncio.sleep(0, sender.paused is not None))

    stats = await store.stats()
    assert stats.paused is not None
    assert stats.paused.reason.startswith("403")
    assert (stats.pending, stats.dead) == (2, {})
    assert "Forbidden" in stats.upstream_errors[0].message


async def test_an_outage_then_recovery_delivers_every_event_once(
    event_api: FakeEventApi, store: SQLiteStore
) -> None:
    items = orders(300)
    await store.put(Intake(outbound=items))
    outage = [Fault(503, error_body("ServiceUnavailableError", "try later"))] * 4
    event_api.faults.extend([*outage, Fault(500), Fault(502)])

    async with running(Sender(make_settings(event_api), store)):
        await eventually(lambda: settled(store))

    assert Counter(event_api.accepted) == Counter(ids(items))  # each exactly once
    stats = await store.stats()
    assert [e.status for e in stats.upstream_errors][:6] == [502, 500, 503, 503, 503, 503]
    assert stats.delivered == 300


async def test_each_failure_keeps_the_upstreams_trace_id(
    event_api: FakeEventApi, store: SQLiteStore, caplog: pytest.LogCaptureFixture
) -> None:
    await store.put(Intake(outbound=orders(2)))
    event_api.faults.append(Fault(503, error_body("ServiceUnavailableError", "try later")))

    with caplog.at_level(logging.WARNING, logger="rokt_edge.sender"):
        async with running(Sender(make_settings(event_api), store)):
            await eventually(lambda: settled(store))

    [error] = (await store.stats()).upstream_errors
    assert error.status == 503
    assert error.message == "503 ServiceUnavailableError: try later (trace trace-1)"
    assert "(trace trace-1)" in caplog.text


async def test_429_retry_after_is_honoured(event_api: FakeEventApi, store: SQLiteStore) -> None:
    await store.put(Intake(outbound=orders(10)))
    event_api.faults.append(Fault(429, error_body("TooManyRequests", ""), {"Retry-After": "1"}))

    async with running(Sender(make_settings(event_api), store)):
        await eventually(lambda: settled(store))

    limited, retried = event_api.received
    assert event_api.statuses == [429, 200]
    assert retried.at - limited.at >= 1.0
    assert len(event_api.accepted) == 10


async def test_v1_fetches_one_token_and_reuses_it(
    event_api: FakeEventApi, store: SQLiteStore
) -> None:
    items = orders(250)
    await store.put(Intake(outbound=items))

    async with running(Sender(v1(event_api), store)):
        await eventually(lambda: settled(store))

    assert len(event_api.token_requests) == 1
    assert {r.path for r in event_api.received} == {"/v1/events"}
    assert {r.headers["authorization"] for r in event_api.received} == {"Bearer token-1"}
    keys = {r.headers["idempotency-key"] for r in event_api.received}
    assert len(keys) == 3  # one per request
    assert sorted(event_api.accepted) == ids(items)


async def test_v1_renews_the_token_once_after_a_401_without_pausing(
    event_api: FakeEventApi, store: SQLiteStore
) -> None:
    await store.put(Intake(outbound=[order(1)]))
    sender = Sender(v1(event_api), store)

    async with running(sender):
        await eventually(lambda: delivered(store, 1))
        event_api.revoke_tokens()  # Rokt forgot the token before it expired
        await store.put(Intake(outbound=[order(2)]))
        sender.notify()
        await eventually(lambda: delivered(store, 2))

    assert len(event_api.token_requests) == 2
    authorizations = [r.headers["authorization"] for r in event_api.received]
    assert authorizations == ["Bearer token-1", "Bearer token-1", "Bearer token-2"]
    assert event_api.statuses == [200, 401, 200]
    stats = await store.stats()
    assert (stats.paused, stats.upstream_errors, stats.dead) == (None, [], {})


async def test_v1_app_credentials_refused_by_the_token_endpoint_pause_delivery(
    event_api: FakeEventApi, store: SQLiteStore
) -> None:
    await store.put(Intake(outbound=orders(3)))
    event_api.app_authorization = basic(APP_ID, "an-older-secret")
    sender = Sender(v1(event_api), store)

    async with running(sender):
        await eventually(lambda: asyncio.sleep(0, sender.paused is not None))
        stats = await store.stats()
        assert stats.paused is not None
        assert stats.paused.reason.startswith("token endpoint answered 401")
        assert event_api.received == []  # no event was sent without a token

        event_api.app_authorization = basic(APP_ID, APP_SECRET)
        await eventually(lambda: settled(store))

    assert len(event_api.accepted) == 3
    assert APP_SECRET not in (await store.stats()).upstream_errors[0].message


async def test_a_409_on_a_repeated_idempotency_key_counts_as_delivered(
    event_api: FakeEventApi, store: SQLiteStore
) -> None:
    # Given a v1 request that reached the Event API, whose answer was lost on the way back
    items = orders(3)
    await store.put(Intake(outbound=items))
    transport = Recording(lose_first_answer=True)

    # When the sender sends it again, with the same Idempotency-Key
    async with running(Sender(v1(event_api), store, transport=transport)):
        await eventually(lambda: settled(store))

    # Then the Event API's 409 counts as delivered: every event once, none dead
    assert event_api.statuses == [200, 409]
    first, second = event_api.received
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"]
    assert first.headers["idempotency-key"] == idempotency_key([i.body for i in items])
    assert sorted(event_api.accepted) == ids(items)
    stats = await store.stats()
    assert (stats.delivered, stats.dead) == (3, {})


async def test_an_event_that_aged_out_of_the_window_while_waiting_is_dead_lettered_not_sent(
    event_api: FakeEventApi, store: SQLiteStore
) -> None:
    old = order(1, age_seconds=19 * MONTH)  # inside the window when it was built
    await store.put(Intake(outbound=[old, order(2)]))

    async with running(Sender(make_settings(event_api), store)):
        await eventually(lambda: settled(store))

    assert event_api.accepted == [order(2).message_id]
    assert [e["clientEventId"] for r in event_api.received for e in r.body["events"]] == [
        order(2).message_id
    ]
    stats = await store.stats()
    assert stats.dead == {EXPIRED: 1}
    [(_, message, _)] = stats.dead_messages
    assert "older than 18 months" in message


async def test_an_event_older_than_30_days_is_still_sent(
    event_api: FakeEventApi, store: SQLiteStore
) -> None:
    # Contract A's 30-day limit is not the Event API's: 18 months is.
    item = order(1, age_seconds=2 * MONTH)
    await store.put(Intake(outbound=[item]))

    async with running(Sender(make_settings(event_api), store)):
        await eventually(lambda: settled(store))

    assert event_api.accepted == [item.message_id]


async def test_a_batch_stored_for_contract_a_is_dead_lettered_not_sent(
    event_api: FakeEventApi, store: SQLiteStore
) -> None:
    # The upstream was switched from capi to event-api while this batch waited in the outbox.
    await store.put(Intake(outbound=[conversion(7), order(1)]))

    async with running(Sender(make_settings(event_api), store)):
        await eventually(lambda: settled(store))

    assert event_api.accepted == [order(1).message_id]
    [(reason, message, _)] = (await store.stats()).dead_messages
    assert reason == REJECTED
    assert message.startswith("not an Event API event")


async def test_dry_run_sends_nothing_and_keeps_the_event_api_bodies(
    event_api: FakeEventApi, store: SQLiteStore
) -> None:
    items = orders(120)
    await store.put(Intake(outbound=items))
    settings = make_settings(event_api, api_key="", api_secret="", account_id="")
    assert settings.dry_run

    async with running(Sender(settings, store)):
        await eventually(lambda: settled(store))

    assert event_api.received == []
    newest, oldest = await store.dry_run_bodies(10)
    assert oldest.path == "/v2/events"
    packed = EventApiContract(None).pack([item.body for item in items])
    assert [oldest.body, newest.body] == [encode(p.body).decode() for p in packed]


class Recording(httpx.AsyncBaseTransport):
    """The network, recording each Event API request's exact bytes; it can lose the answer
    to the first one (the upstream got it, the sender never hears back)."""

    def __init__(self, *, lose_first_answer: bool = False) -> None:
        self.real = httpx.AsyncHTTPTransport()
        self.bodies: list[bytes] = []
        self.lose = lose_first_answer

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.real.handle_async_request(request)
        if request.url.path.endswith("/events"):
            self.bodies.append(request.content)
            if self.lose:
                self.lose = False
                await response.aclose()
                raise httpx.ReadTimeout("the answer was lost", request=request)
        return response

    async def aclose(self) -> None:
        await self.real.aclose()


# -- the whole edge ---------------------------------------------------------------------------

BROWSER = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 Version/17.0 Safari"


def test_a_beacon_conversion_with_a_click_id_reaches_the_event_api(
    tmp_path: Path, event_api: FakeEventApi
) -> None:
    settings = Settings(
        upstream="event-api", account_id=ACCOUNT, api_key=PUBLIC_KEY, api_secret=SECRET_KEY,
        rokt_url=event_api.url, database_url=f"sqlite:///{tmp_path / 'edge.db'}",
        poll_interval=0.05, backoff_base=0.05,
    )  # fmt: skip
    purchase = {
        "type": "track",
        "event": "Order Completed",
        "messageId": "order-e2e-1",
        "properties": {"order_id": "o-1", "revenue": 85, "currency": "USD"},
        "context": {"page": {"url": "https://shop.example/thanks?rtid=CLICK-1"}},
    }

    with LiveEdge(settings) as live:
        response = httpx.post(
            live.url + "/e",
            content=json.dumps(purchase),
            headers={"content-type": "text/plain", "user-agent": BROWSER},
        )
        assert response.status_code == 200
        wait_for(lambda: event_api.accepted == ["order-e2e-1"])

    [received] = event_api.received
    assert received.path == "/v2/events"
    assert received.body["accountId"] == ACCOUNT
    [event] = received.body["events"]
    assert event["eventType"] == "conversion"
    data = {entry["name"]: entry["value"] for entry in event["objectData"]}
    assert data["passbackconversiontrackingid"] == "CLICK-1"
    assert (data["amount"], data["currency"], data["confirmationref"]) == ("85.00", "USD", "o-1")
    assert data["useragent"] == BROWSER


def test_python_m_deliver_delivers_to_the_event_api(
    tmp_path: Path, event_api: FakeEventApi
) -> None:
    database = tmp_path / "edge.db"
    store = SQLiteStore(database)
    items = orders(150)
    store.put_sync(Intake(outbound=items))
    env = {key: value for key, value in os.environ.items() if not key.startswith("ROKT_EDGE_")}
    env.update(
        PYTHONPATH=str(ROOT),
        ROKT_EDGE_DATABASE_URL=f"sqlite:///{database}",
        ROKT_EDGE_UPSTREAM="event-api",
        ROKT_EDGE_ACCOUNT_ID=ACCOUNT,
        ROKT_EDGE_EVENT_API_AUTH="v1",
        ROKT_EDGE_API_KEY=APP_ID,
        ROKT_EDGE_API_SECRET=APP_SECRET,
        ROKT_EDGE_ROKT_URL=event_api.url,
        ROKT_EDGE_POLL_INTERVAL="0.05",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "edge.rokt.deliver"],
        env=env,
        cwd=tmp_path,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(lambda: store.stats_sync().delivered == 150, timeout=20)
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=10)

    assert process.returncode == 0
    assert sorted(event_api.accepted) == ids(items)
    assert APP_SECRET.encode() not in stderr
    assert b"token-1" not in stderr  # the bearer token is a secret too
    store.close()
