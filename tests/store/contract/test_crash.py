"""Crash recovery: what the store committed survives its loss, what it had not committed fails
cleanly (the client sends it again), and the store goes on without a restart; on every backend
(`Backend.crash`: SQLite's writer process killed)."""

from __future__ import annotations

import asyncio

import pytest

from edge.pipeline.pipeline import Outbound
from edge.store import Store
from edge.store.errors import StoreUnavailable
from edge.store.values import Intake
from tests.outbound import conversion, conversions
from tests.store.contract.backends import Backend

pytestmark = pytest.mark.anyio


async def test_what_was_put_survives_closing_and_reopening(backend: Backend) -> None:
    first = backend.open()
    first.put_sync(Intake(outbound=conversions(5)))
    first.close()

    second = backend.open()
    stats = second.stats_sync()
    assert stats.pending == 5
    assert stats.oldest_pending is not None


async def test_a_crash_keeps_what_was_committed_fails_what_was_not_and_the_store_goes_on(
    store: Store, backend: Backend
) -> None:
    # Given clients putting items one after the other, four at a time, until 20 more have
    # been answered after the crash below
    answered: list[Outbound] = []
    failures: list[BaseException] = []
    enough = 10**9

    async def client(first: int) -> None:
        n = first
        while len(answered) < enough:
            item, n = conversion(n), n + 4
            try:
                await store.put(Intake(outbound=[item]))
            except StoreUnavailable as failure:
                failures.append(failure)
                await asyncio.sleep(0.01)  # as a client waits before it sends again
                continue
            answered.append(item)

    clients = asyncio.gather(*(client(first) for first in range(4)))

    # When the store loses its database while their puts are on their way
    while len(answered) < 20:
        await asyncio.sleep(0.001)
    backend.crash(store)
    enough = len(answered) + 20
    await asyncio.wait_for(clients, timeout=30)  # no put hangs

    # Then what had not been committed failed saying the store is unavailable (the client sends
    # it again), the store went on without a restart, and every put that answered, before the
    # crash or after, is committed
    assert all(isinstance(failure, StoreUnavailable) for failure in failures)
    assert len(answered) >= enough
    assert [backend.has_item(item.key) for item in answered] == [True] * len(answered)
