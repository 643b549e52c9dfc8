"""The sender with the Event API's legacy v1 auth against the fake: one OAuth token reused,
renewed once after a 401, refused app credentials pause delivery, and a 409 on a repeated
Idempotency-Key counts as delivered."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.store.sqlite import SQLiteStore
from edge.store.values import Intake
from edge.upstreams.event_api.auth import idempotency_key
from tests.event_api_items import (
    APP_ID,
    APP_SECRET,
    Recording,
    delivered,
    ids,
    order,
    orders,
    v1,
)
from tests.fake_event_api import FakeEventApi, basic
from tests.sending import eventually, make_sender, running, settled

pytestmark = pytest.mark.anyio


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    store = SQLiteStore(tmp_path / "edge.db")
    yield store
    store.close()


async def test_v1_fetches_one_token_and_reuses_it(
    event_api: FakeEventApi, store: SQLiteStore
) -> None:
    items = orders(250)
    await store.put(Intake(outbound=items))

    async with running(make_sender(v1(event_api), store)):
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
    sender = make_sender(v1(event_api), store)

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
    sender = make_sender(v1(event_api), store)

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
    async with running(make_sender(v1(event_api), store, transport=transport)):
        await eventually(lambda: settled(store))

    # Then the Event API's 409 counts as delivered: every event once, none dead
    assert event_api.statuses == [200, 409]
    first, second = event_api.received
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"]
    assert first.headers["idempotency-key"] == idempotency_key([i.body for i in items])
    assert sorted(event_api.accepted) == ids(items)
    stats = await store.stats()
    assert (stats.delivered, stats.dead) == (3, {})
