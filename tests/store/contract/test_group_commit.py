"""Group commit: writes made at the same time share transactions, each answered only once its
own is durable, and one that fails does not fail the others; on every backend."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from edge.store import Store
from edge.store.errors import StoreUnavailable
from edge.store.values import Arrival, Intake
from tests.outbound import conversion, skipped
from tests.store.contract.backends import Backend
from tests.store.contract.steps import rows_on_disk

pytestmark = pytest.mark.anyio


async def test_an_intake_is_all_or_nothing(store: Store, backend: Backend) -> None:
    broken_skip = replace(skipped(1), reason=None)  # type: ignore[arg-type]

    with pytest.raises(StoreUnavailable):
        await store.put(Intake(outbound=[conversion(1)], skipped=[broken_skip]))

    assert rows_on_disk(backend) == 0


async def test_concurrent_puts_share_commits_and_each_returns_after_its_commit(
    store: Store,
    backend: Backend,
) -> None:
    before = store.transactions
    seen_on_disk: list[bool] = []

    async def producer(n: int) -> None:
        item = conversion(n)
        await store.put(Intake(outbound=[item]))
        seen_on_disk.append(backend.has_item(item.key))

    await asyncio.gather(*(producer(n) for n in range(200)))

    assert seen_on_disk == [True] * 200
    assert rows_on_disk(backend) == 200
    assert store.transactions - before < 100  # coalesced (typically a handful)


async def test_a_failing_put_does_not_fail_the_others_in_its_group(
    store: Store, backend: Backend
) -> None:
    broken = replace(conversion(99), mapping=None)  # type: ignore[arg-type]

    results = await asyncio.gather(
        *(store.put(Intake(outbound=[item])) for item in [conversion(1), broken, conversion(2)]),
        return_exceptions=True,
    )

    assert isinstance(results[1], StoreUnavailable)
    assert [type(r).__name__ for r in (results[0], results[2])] == ["PutResult", "PutResult"]
    assert rows_on_disk(backend) == 2


async def test_concurrent_arrivals_share_commits_and_each_returns_once_another_process_sees_it(
    store: Store, backend: Backend
) -> None:
    # Given a second process's view of the store
    other = backend.open()
    before = store.transactions
    answered = 0
    seen: list[int] = []

    async def request(n: int) -> None:
        nonlocal answered
        await store.put_arrival(Arrival("beacon", 1_700_000_000.0 + n, b"{}"))
        answered += 1
        seen.append(other.stats_sync().arrivals - answered)  # never below: committed first

    # When 200 requests store their arrivals at once
    await asyncio.gather(*(request(n) for n in range(200)))

    # Then each returned only once the other process could see it, in a few transactions
    assert min(seen) >= 0
    assert other.stats_sync().arrivals == 200
    assert store.transactions - before < 20  # coalesced (typically 2)
