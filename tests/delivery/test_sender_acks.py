"""A store that cannot record deliveries (a full disk) stops the sender: it sends nothing more,
tries the acknowledgement again until the store takes it, and so sends no item twice."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from edge.store.errors import StoreUnavailable
from edge.store.sqlite import SQLiteStore
from edge.store.values import Intake, ItemId
from tests.delivery.test_sender import make_settings
from tests.fake_capi import FakeCapi
from tests.outbound import conversions
from tests.sending import eventually, make_sender, running, settled

pytestmark = pytest.mark.anyio


class AckFailingStore(SQLiteStore):
    """A real store whose acknowledgements of deliveries fail while `failing` is set, as on a
    full disk where a claim still fits in the log but an ack does not; counts the tries."""

    failing = False
    refused = 0

    async def ack(self, ids: Sequence[ItemId], *, dry_run: bool = False) -> None:
        if self.failing:
            self.refused += 1
            raise StoreUnavailable("database or disk is full (injected)")
        await super().ack(ids, dry_run=dry_run)


@pytest.fixture
def failing_store(tmp_path: Path) -> Iterator[AckFailingStore]:
    store = AckFailingStore(tmp_path / "edge.db")
    yield store
    store.close()


async def test_while_deliveries_cannot_be_recorded_nothing_more_is_sent_and_nothing_twice(
    fake: FakeCapi, failing_store: AckFailingStore, caplog: pytest.LogCaptureFixture
) -> None:
    # Given 1,000 items, claimed 100 at a time, with leases of a second
    store = failing_store
    items = conversions(1000)
    await store.put(Intake(outbound=items))
    settings = make_settings(
        fake, claim_size=100, max_in_flight=1, lease_seconds=1, request_timeout=0.5
    )
    sender = make_sender(settings, store)

    # When the store cannot record acknowledgements for three leases' time
    store.failing = True
    async with running(sender):
        await eventually(lambda: asyncio.sleep(0, store.refused > 0))
        await asyncio.sleep(3)

        # Then the sender stopped after the requests already under way, sent no item twice
        # (none whose lease ran out went again), and kept trying the acknowledgement
        sent_while_failing = Counter(fake.accepted_message_ids())
        assert sent_while_failing
        assert max(sent_while_failing.values()) == 1
        assert len(sent_while_failing) < 1000
        assert store.refused >= 2

        # When the store writes again
        store.failing = False
        await eventually(lambda: settled(store), timeout=20)

    # Then the acknowledgements are recorded and the rest delivered: each item exactly once
    assert Counter(fake.accepted_message_ids()) == Counter(item.message_id for item in items)
    assert (await store.stats()).delivered == 1000
    assert sender.delivered == 1000
    stopped = [r for r in caplog.records if "nothing more is sent until it can" in r.message]
    assert [r.levelno for r in stopped] == [logging.ERROR]  # said once, not at each try
