"""The sender against a fake upstream on loopback: every response class of spec/capi-wire.md."""

from __future__ import annotations

import asyncio
import base64
import time
from collections import Counter
from typing import Any

import httpx
import pytest

from edge import __version__
from edge.delivery.verdict import redact
from edge.jsontext import encode
from edge.metrics import Metrics
from edge.settings import Settings
from edge.store.sqlite import SQLiteStore
from edge.store.values import EXPIRED, REJECTED, Intake
from tests.fake_capi import API_KEY, API_SECRET, FakeCapi, Reply, errors
from tests.outbound import conversion, conversions
from tests.sending import eventually, make_sender, quick_settings, running, settled

pytestmark = pytest.mark.anyio

BAD_IDFA = "not-a-uuid"


def make_settings(fake: FakeCapi, **overrides: Any) -> Settings:
    """Contract A at the fake, for a delivery loop under test."""
    values: dict[str, Any] = {"api_key": API_KEY, "api_secret": API_SECRET, "rokt_url": fake.url}
    return quick_settings(**{**values, **overrides})


def with_bad_idfa(n: int) -> Any:
    """A batch the upstream rejects whole (a non-UUID advertising id slipped through)."""
    item = conversion(n)
    item.body["device_info"] = {"ios_advertising_id": BAD_IDFA}
    return item


async def test_items_go_in_bulk_requests_with_basic_auth_each_event_once(
    fake: FakeCapi, store: SQLiteStore
) -> None:
    items = conversions(250)
    await store.put(Intake(outbound=items))
    sender = make_sender(make_settings(fake), store)

    async with running(sender):
        await eventually(lambda: settled(store))

    requests = fake.requests()
    sizes = sorted((r.path, len(r.batches)) for r in requests)  # sent in parallel
    assert sizes == [("/bulkevents", 50), ("/bulkevents", 100), ("/bulkevents", 100)]
    expected = "Basic " + base64.b64encode(f"{API_KEY}:{API_SECRET}".encode()).decode()
    assert {r.headers["authorization"] for r in requests} == {expected}
    assert {r.headers["content-type"] for r in requests} == {"application/json"}
    assert {r.headers["user-agent"] for r in requests} == {f"rokt-edge/{__version__}"}
    assert sorted(fake.accepted_message_ids()) == [item.message_id for item in items]
    assert all(batch["source_request_id"] for r in requests for batch in r.batches)
    assert (await store.stats()).delivered == 250
    assert sender.delivered == 250


async def test_a_single_batch_goes_to_events(fake: FakeCapi, store: SQLiteStore) -> None:
    item = conversion(1)
    await store.put(Intake(outbound=[item]))

    async with running(make_sender(make_settings(fake), store)):
        await eventually(lambda: settled(store))

    [request] = fake.requests()
    assert request.path == "/events"
    assert request.body == encode(item.body)


async def test_a_202_with_errors_fails_only_the_batches_it_names(
    fake: FakeCapi, store: SQLiteStore
) -> None:
    await store.put(Intake(outbound=conversions(5)))
    fake.reply(
        Reply(
            202,
            errors(
                "Error converting value &quot;x&quot; to type 'System.Guid'. "
                "Path '[1].device_info.ios_advertising_id'",
                "Unexpected token: StartObject. Path '[3].events[0].data.custom_attributes.x'",
            ),
        )
    )

    async with running(make_sender(make_settings(fake), store)):
        await eventually(lambda: settled(store))

    stats = await store.stats()
    assert (stats.delivered, stats.dead) == (3, {REJECTED: 2})
    messages = {message for _, message, _ in stats.dead_messages}
    assert "Error converting value \"x\" to type 'System.Guid'. " in next(
        m for m in messages if "Guid" in m
    )
    assert len(fake.requests()) == 1  # nothing sent twice


async def test_one_bad_batch_among_100_the_other_99_are_delivered(
    fake: FakeCapi, store: SQLiteStore
) -> None:
    items = conversions(100)
    items[37] = with_bad_idfa(37)
    await store.put(Intake(outbound=items))

    async with running(make_sender(make_settings(fake), store)):
        await eventually(lambda: settled(store))

    delivered = set(fake.accepted_message_ids())
    assert delivered == {item.message_id for item in items} - {items[37].message_id}
    stats = await store.stats()
    assert (stats.delivered, stats.dead) == (99, {REJECTED: 1})
    [(_, message, _)] = stats.dead_messages
    assert message.startswith(f'Error converting value "{BAD_IDFA}"')  # entities unescaped
    assert len(fake.requests()) <= 1 + 2 * 7  # bisection: a few requests, not a hundred


async def test_a_rejected_single_batch_is_dead_lettered_with_the_upstreams_message(
    fake: FakeCapi, store: SQLiteStore
) -> None:
    await store.put(Intake(outbound=[conversion(1)]))
    fake.reply(Reply(400, errors('Required event field "event_type" is missing or empty.')))

    async with running(make_sender(make_settings(fake), store)):
        await eventually(lambda: settled(store))

    stats = await store.stats()
    assert stats.dead_messages == [
        (REJECTED, 'Required event field "event_type" is missing or empty.', 1)
    ]
    assert stats.upstream_errors[0].status == 400


async def test_bad_credentials_pause_delivery_then_it_resumes_with_nothing_lost(
    fake: FakeCapi, store: SQLiteStore
) -> None:
    items = conversions(150)
    await store.put(Intake(outbound=items))
    fake.api_secret = "rotated-secret"  # the merchant's secret no longer works: 403
    metrics = Metrics(store)
    sender = make_sender(make_settings(fake), store, metrics=metrics)

    async with running(sender):
        await eventually(lambda: asyncio.sleep(0, sender.paused is not None))
        await asyncio.sleep(0.5)  # a few probes, all refused
        stats = await store.stats()
        assert stats.paused is not None
        assert "403" in stats.paused.reason
        assert (stats.pending, stats.dead, stats.delivered) == (150, {}, 0)
        assert b"rokt_edge_delivery_paused 1.0" in metrics.render()
        probes = len(fake.requests())
        assert 2 <= probes <= 10  # retried slowly, one item at a time

        fake.api_secret = API_SECRET  # credentials fixed upstream
        await eventually(lambda: settled(store))

    assert sender.paused is None
    assert (await store.stats()).paused is None
    assert sorted(set(fake.accepted_message_ids())) == [item.message_id for item in items]
    assert b"rokt_edge_delivery_paused 0.0" in metrics.render()


async def test_a_401_pauses_too(fake: FakeCapi, store: SQLiteStore) -> None:
    await store.put(Intake(outbound=conversions(3)))
    fake.reply(Reply(401, errors("Authorization header missing")))
    sender = make_sender(make_settings(fake), store)

    async with running(sender):
        await eventually(lambda: asyncio.sleep(0, sender.paused is not None))
        await eventually(lambda: settled(store))

    assert (await store.stats()).dead == {}
    assert len(set(fake.accepted_message_ids())) == 3


async def test_429_retry_after_is_honoured(fake: FakeCapi, store: SQLiteStore) -> None:
    await store.put(Intake(outbound=conversions(10)))
    fake.reply(Reply(429, headers={"Retry-After": "1", "X-mp-rate-limit-exceeded": "true"}))

    async with running(make_sender(make_settings(fake), store)):
        await eventually(lambda: settled(store))

    limited, retried = fake.requests()
    assert limited.status == 429
    assert retried.at - limited.at >= 1.0
    assert len(fake.accepted_message_ids()) == 10


async def test_429_without_retry_after_backs_off(fake: FakeCapi, store: SQLiteStore) -> None:
    await store.put(Intake(outbound=conversions(10)))
    fake.reply(Reply(429), Reply(429))

    async with running(make_sender(make_settings(fake, backoff_base=0.2, backoff_cap=1), store)):
        await eventually(lambda: settled(store))

    first, second, third = fake.requests()
    assert second.at - first.at >= 0.1  # at least half of backoff(1) = 0.2 s
    assert third.at - second.at >= 0.2  # at least half of backoff(2) = 0.4 s
    assert len(fake.accepted_message_ids()) == 10


async def test_an_outage_then_recovery_delivers_every_event_once(
    fake: FakeCapi, store: SQLiteStore
) -> None:
    items = conversions(300)
    await store.put(Intake(outbound=items))
    fake.reply(*[Reply(503, "Service Unavailable")] * 4, Reply(500), Reply(502))

    async with running(make_sender(make_settings(fake), store)):
        await eventually(lambda: settled(store))

    accepted = fake.accepted_message_ids()
    assert Counter(accepted) == Counter(item.message_id for item in items)  # each exactly once
    stats = await store.stats()
    assert [e.status for e in stats.upstream_errors][:6] == [502, 500, 503, 503, 503, 503]
    assert stats.delivered == 300


async def test_a_timeout_is_retried(fake: FakeCapi, store: SQLiteStore) -> None:
    await store.put(Intake(outbound=conversions(5)))
    fake.reply(Reply(202, delay=1.0))

    async with running(make_sender(make_settings(fake, request_timeout=0.3), store)):
        await eventually(lambda: settled(store))

    assert len(fake.requests()) == 2
    assert (await store.stats()).upstream_errors[0].status is None
    assert set(fake.accepted_message_ids()) == {item.message_id for item in conversions(5)}


async def test_connection_errors_are_retried(fake: FakeCapi, store: SQLiteStore) -> None:
    await store.put(Intake(outbound=conversions(5)))
    real = httpx.AsyncHTTPTransport()
    failures = 3

    async def flaky(request: httpx.Request) -> httpx.Response:
        nonlocal failures
        if failures:
            failures -= 1
            raise httpx.ConnectError("connection refused", request=request)
        return await real.handle_async_request(request)

    transport = httpx.MockTransport(flaky)
    async with running(make_sender(make_settings(fake), store, transport=transport)):
        await eventually(lambda: settled(store))
    await real.aclose()

    stats = await store.stats()
    assert stats.delivered == 5
    assert [e.status for e in stats.upstream_errors] == [None, None, None]
    assert "ConnectError" in stats.upstream_errors[0].message


async def test_an_answer_that_cannot_be_decoded_is_retried_not_fatal(
    fake: FakeCapi, store: SQLiteStore
) -> None:
    # A proxy in front of Rokt answers with a body that is not the gzip it claims: httpx raises
    # DecodingError, which is not a TransportError.
    await store.put(Intake(outbound=conversions(5)))
    fake.reply(Reply(502, "not gzip", headers={"Content-Encoding": "gzip"}))

    async with running(make_sender(make_settings(fake), store)):
        await eventually(lambda: settled(store))

    stats = await store.stats()
    assert stats.delivered == 5
    assert "DecodingError" in stats.upstream_errors[0].message
    assert set(fake.accepted_message_ids()) == {item.message_id for item in conversions(5)}


async def test_an_unexpected_error_costs_one_lease_not_the_delivery_loop(
    fake: FakeCapi, store: SQLiteStore, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a sender whose first send hits a bug (injected: no real part produces one on cue)
    await store.put(Intake(outbound=conversions(3)))
    sender = make_sender(make_settings(fake, lease_seconds=1, request_timeout=0.5), store)
    real_send = sender.wire.send
    calls = 0

    async def send_with_a_bug_once(client: Any, request: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a bug")
        return await real_send(client, request)

    sender.wire.send = send_with_a_bug_once  # type: ignore[method-assign]

    # When it runs, the loop survives, the lease expires, the sweep returns the items
    async with running(sender):
        await eventually(lambda: settled(store), timeout=20)

    # Then every item is delivered, and the bug was logged loudly
    assert set(fake.accepted_message_ids()) == {item.message_id for item in conversions(3)}
    assert "unexpected error sending 3 item(s)" in caplog.text


async def test_events_older_than_30_days_are_dead_lettered_as_expired_not_sent(
    fake: FakeCapi, store: SQLiteStore
) -> None:
    old = conversion(1, age_seconds=31 * 24 * 3600)
    await store.put(Intake(outbound=[old, conversion(2)]))

    async with running(make_sender(make_settings(fake), store)):
        await eventually(lambda: settled(store))

    assert fake.accepted_message_ids() == [conversion(2).message_id]
    assert (await store.stats()).dead == {EXPIRED: 1}


async def test_dry_run_sends_nothing_and_keeps_the_exact_bodies(
    fake: FakeCapi, store: SQLiteStore
) -> None:
    items = conversions(120)
    await store.put(Intake(outbound=items))
    settings = make_settings(fake, api_key="", api_secret="", dry_run_keep=5)
    assert settings.dry_run

    async with running(make_sender(settings, store)):
        await eventually(lambda: settled(store))

    assert fake.requests() == []
    stats = await store.stats()
    assert (stats.delivered, stats.delivered_dry_run, stats.dry_run_bodies) == (120, 120, 2)
    newest, oldest = await store.dry_run_bodies(10)
    assert oldest.path == "/bulkevents"
    assert oldest.body == encode([item.body for item in items[:100]]).decode()
    assert newest.body == encode([item.body for item in items[100:]]).decode()


async def test_the_rate_limit_spreads_batches_over_time(fake: FakeCapi, store: SQLiteStore) -> None:
    await store.put(Intake(outbound=conversions(400)))
    started = time.monotonic()

    async with running(make_sender(make_settings(fake, rate_limit=200), store)):
        await eventually(lambda: settled(store))

    assert time.monotonic() - started >= 1.0  # 200 at once, then 200 more at 200/s


async def test_metrics_count_what_happened(fake: FakeCapi, store: SQLiteStore) -> None:
    items = conversions(4)
    items[2] = with_bad_idfa(2)
    await store.put(Intake(outbound=items))
    metrics = Metrics(store)
    fake.reply(Reply(503))

    async with running(make_sender(make_settings(fake), store, metrics=metrics)):
        await eventually(lambda: settled(store))

    text = metrics.render().decode()
    assert 'rokt_edge_delivered_total{dry_run="false"} 3.0' in text
    assert 'rokt_edge_dead_lettered_total{reason="rejected"} 1.0' in text
    assert 'rokt_edge_upstream_responses_total{status="503"} 1.0' in text
    assert 'rokt_edge_dead_letters{reason="rejected"} 1.0' in text
    assert 'rokt_edge_outbox_items{state="pending"} 0.0' in text


def test_upstream_messages_are_redacted_for_the_log() -> None:
    message = "Error converting value \"jane@example.com\" to type 'System.Guid'. Path '[1]'"
    assert "jane" not in redact(message)
    assert "Path '[1]'" in redact(message)
    assert "'System.Guid'" in redact(message)
    quoted_phone = "Invalid value '+61412345678' at Path '[0].user_attributes.mobile'"
    assert "61412345678" not in redact(quoted_phone)
    assert "Path '[0].user_attributes.mobile'" in redact(quoted_phone)
    assert "412 345" not in redact("bad mobile +61 412 345 678 in batch 3")
    assert "not-a-uuid" not in redact("Error converting value 'not-a-uuid' to type 'System.Guid'")
