"""Paused on rejected credentials, the sender probes every ROKT_EDGE_PAUSE_RETRY seconds however
fast events arrive, and once a probe gets through, what waited goes at once."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest

from edge.store.sqlite import SQLiteStore
from edge.store.values import Intake
from tests.delivery.test_sender import make_settings
from tests.fake_capi import FakeCapi, Reply, errors
from tests.outbound import conversion, conversions
from tests.sending import eventually, make_sender, running, settled

pytestmark = pytest.mark.anyio


async def test_paused_the_sender_probes_every_pause_retry_however_fast_events_arrive(
    fake: FakeCapi, store: SQLiteStore
) -> None:
    # Given an upstream that refuses the edge's secret (rotated), and a probe a second
    await store.put(Intake(outbound=[conversion(0)]))
    fake.api_secret = "rotated-secret"
    sender = make_sender(make_settings(fake, pause_retry=1), store)

    async with running(sender):
        await eventually(lambda: asyncio.sleep(0, sender.paused is not None))
        paused_at = time.monotonic()

        # When events keep arriving, fifty a second, each telling the sender so (as intake does)
        for n in range(1, 151):
            await store.put(Intake(outbound=[conversion(n)]))
            sender.notify()
            await asyncio.sleep(0.02)
        paused_for = time.monotonic() - paused_at

    # Then the upstream saw the request that paused delivery and one probe a second, not one
    # request per event
    requests = fake.requests()
    assert {r.status for r in requests} == {403}
    assert all(len(r.batches) == 1 for r in requests[1:])  # probes: one item each
    assert 2 <= len(requests) <= 2 + paused_for
    assert (await store.stats()).pending == 151


async def test_once_a_probe_gets_through_what_waited_for_a_retry_goes_at_once(
    fake: FakeCapi, store: SQLiteStore
) -> None:
    # Given 150 items in two requests: the upstream fails one (503: retried after a backoff of
    # minutes) and refuses the other's credentials (401): delivery is held and paused
    items = conversions(150)
    await store.put(Intake(outbound=items))
    fake.reply(Reply(503, "Service Unavailable"), Reply(401, errors("Authorization missing")))
    settings = make_settings(fake, pause_retry=0.5, backoff_base=300, backoff_cap=300)
    sender = make_sender(settings, store)

    async with running(sender):
        await eventually(lambda: asyncio.sleep(0, sender.paused is not None))

        # When a probe gets through (the credentials are taken again)
        # Then every item goes now, those that waited for their retry too (not minutes later)
        await eventually(lambda: settled(store), timeout=20)

    assert sender.paused is None
    statuses = [r.status for r in fake.requests()]
    assert sorted(statuses[:2]) == [401, 503]
    probe, *after = fake.requests()[2:]
    assert (probe.status, len(probe.batches)) == (202, 1)
    assert {r.status for r in after} == {202}
    assert Counter(fake.accepted_message_ids()) == Counter(item.message_id for item in items)
    assert (await store.stats()).delivered == 150
