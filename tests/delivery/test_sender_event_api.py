"""The sender delivering to contract B (v2 keys) against the fake Event API on loopback: every
response class of spec/event-api-wire.md, trace ids, the time window at send time, dry run."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

import pytest

from edge.jsontext import encode
from edge.metrics import Metrics
from edge.store.sqlite import SQLiteStore
from edge.store.values import EXPIRED, REJECTED, Intake
from edge.upstreams.event_api.contract import EventApiContract
from tests.event_api_items import (
    ACCOUNT,
    MONTH,
    PUBLIC_KEY,
    SECRET_KEY,
    Recording,
    ids,
    make_settings,
    order,
    orders,
)
from tests.fake_event_api import FakeEventApi, Fault, basic, error_body
from tests.outbound import conversion
from tests.sending import eventually, make_sender, running, settled

pytestmark = pytest.mark.anyio


async def test_events_go_in_requests_of_100_with_the_references_headers_each_once(
    event_api: FakeEventApi, store: SQLiteStore
) -> None:
    items = orders(250)
    await store.put(Intake(outbound=items))

    async with running(make_sender(make_settings(event_api), store)):
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

    async with running(make_sender(make_settings(event_api), store, transport=transport)):
        await eventually(lambda: settled(store))

    [packed] = EventApiContract(ACCOUNT).pack([item.body for item in items])
    assert transport.bodies == [encode(packed.body)]


async def test_a_200_with_unprocessed_records_fails_only_those(
    event_api: FakeEventApi, store: SQLiteStore
) -> None:
    items = orders(5)
    await store.put(Intake(outbound=items))
    event_api.unprocessed = {items[3].message_id: ("ValidationError", "Invalid content")}

    async with running(make_sender(make_settings(event_api), store)):
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

    async with running(make_sender(make_settings(event_api), store)):
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
    sender = make_sender(make_settings(event_api), store, metrics=metrics)

    async with running(sender):
        await eventually(lambda: asyncio.sleep(0, sender.paused is not None))
        await asyncio.sleep(0.5)  # a few probes, all refused
        stats = await store.stats()
        assert stats.paused is not None
        assert stats.paused.reason.startswith("401")
        waiting = stats.pending + stats.in_flight  # a probe may hold one
        assert (waiting, stats.dead, stats.delivered) == (150, {}, 0)
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
    sender = make_sender(make_settings(event_api, account_id="99999"), store)

    async with running(sender):
        await eventually(lambda: asyncio.sleep(0, sender.paused is not None))

    stats = await store.stats()
    assert stats.paused is not None
    assert stats.paused.reason.startswith("403")
    assert (stats.pending + stats.in_flight, stats.dead) == (2, {})  # a probe may hold one
    assert "Forbidden" in stats.upstream_errors[0].message


async def test_an_outage_then_recovery_delivers_every_event_once(
    event_api: FakeEventApi, store: SQLiteStore
) -> None:
    items = orders(300)
    await store.put(Intake(outbound=items))
    outage = [Fault(503, error_body("ServiceUnavailableError", "try later"))] * 4
    event_api.faults.extend([*outage, Fault(500), Fault(502)])

    async with running(make_sender(make_settings(event_api), store)):
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
        async with running(make_sender(make_settings(event_api), store)):
            await eventually(lambda: settled(store))

    [error] = (await store.stats()).upstream_errors
    assert error.status == 503
    assert error.message == "503 ServiceUnavailableError: try later (trace trace-1)"
    assert "(trace trace-1)" in caplog.text


async def test_429_retry_after_is_honoured(event_api: FakeEventApi, store: SQLiteStore) -> None:
    await store.put(Intake(outbound=orders(10)))
    event_api.faults.append(Fault(429, error_body("TooManyRequests", ""), {"Retry-After": "1"}))

    async with running(make_sender(make_settings(event_api), store)):
        await eventually(lambda: settled(store))

    limited, retried = event_api.received
    assert event_api.statuses == [429, 200]
    assert retried.at - limited.at >= 1.0
    assert len(event_api.accepted) == 10


async def test_an_event_that_aged_out_of_the_window_while_waiting_is_dead_lettered_not_sent(
    event_api: FakeEventApi, store: SQLiteStore
) -> None:
    old = order(1, age_seconds=19 * MONTH)  # inside the window when it was built
    await store.put(Intake(outbound=[old, order(2)]))

    async with running(make_sender(make_settings(event_api), store)):
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

    async with running(make_sender(make_settings(event_api), store)):
        await eventually(lambda: settled(store))

    assert event_api.accepted == [item.message_id]


async def test_a_batch_stored_for_contract_a_is_dead_lettered_not_sent(
    event_api: FakeEventApi, store: SQLiteStore
) -> None:
    # The upstream was switched from capi to event-api while this batch waited in the outbox.
    await store.put(Intake(outbound=[conversion(7), order(1)]))

    async with running(make_sender(make_settings(event_api), store)):
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

    async with running(make_sender(settings, store)):
        await eventually(lambda: settled(store))

    assert event_api.received == []
    newest, oldest = await store.dry_run_bodies(10)
    assert oldest.path == "/v2/events"
    packed = EventApiContract(None).pack([item.body for item in items])
    assert [oldest.body, newest.body] == [encode(p.body).decode() for p in packed]
