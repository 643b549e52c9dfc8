"""Events recorded in a dry run are sent for real once credentials are set and they are replayed
(`rokt-edge replay --dry-run`); one that has grown too old meanwhile is dead-lettered, not sent."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from edge.store.sqlite import SQLiteStore
from edge.store.values import EXPIRED, Intake
from tests.delivery.test_sender import make_settings
from tests.fake_capi import FakeCapi
from tests.outbound import conversion, conversions
from tests.sending import eventually, make_sender, running, settled

pytestmark = pytest.mark.anyio

DAY = 86400.0


async def test_events_recorded_in_a_dry_run_are_delivered_after_a_replay_with_credentials(
    fake: FakeCapi, store: SQLiteStore
) -> None:
    # Given an edge run without credentials (a dry run): 120 events recorded, none sent
    items = conversions(120)
    await store.put(Intake(outbound=items))
    async with running(make_sender(make_settings(fake, api_key="", api_secret=""), store)):
        await eventually(lambda: settled(store))
    assert fake.requests() == []
    assert (await store.stats()).delivered_dry_run == 120

    # When the secret is set and the dry run replayed
    replayed = store.replay_dry_runs_sync()

    # Then the edge with credentials delivers every one of them, once, with its original body
    assert replayed == 120
    async with running(make_sender(make_settings(fake), store)):
        await eventually(lambda: settled(store))
    assert Counter(fake.accepted_message_ids()) == Counter(item.message_id for item in items)
    sent = {
        b["events"][0]["data"]["source_message_id"]: b for r in fake.requests() for b in r.batches
    }
    assert [sent[item.message_id] for item in items] == [item.body for item in items]
    stats = await store.stats()
    assert (stats.delivered, stats.delivered_dry_run, stats.pending) == (120, 0, 0)


async def test_a_replayed_event_older_than_the_data_age_limit_is_dead_lettered_as_expired(
    fake: FakeCapi, store: SQLiteStore
) -> None:
    # Given a dry run that recorded an event 29 days old, and a fresh one
    old, fresh = conversion(1, age_seconds=29 * DAY), conversion(2)
    await store.put(Intake(outbound=[old, fresh]))
    async with running(make_sender(make_settings(fake, api_key="", api_secret=""), store)):
        await eventually(lambda: settled(store))

    # When both are replayed two days later, with credentials
    assert await store.replay_dry_runs() == 2
    two_days_later = make_sender(make_settings(fake), store, clock=lambda: time.time() + 2 * DAY)
    async with running(two_days_later):
        await eventually(lambda: settled(store))

    # Then the fresh one is delivered; the other, now 31 days old, is dead-lettered as expired
    # (the upstream would refuse it), accounted for rather than sent
    assert fake.accepted_message_ids() == [fresh.message_id]
    stats = await store.stats()
    assert stats.dead == {EXPIRED: 1}
    assert stats.dead_messages[0][1] == "older than 30 days, the upstream's data-age limit"
