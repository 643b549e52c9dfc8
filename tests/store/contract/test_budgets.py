"""Budgets: a token bucket in the store, spent by every process on it together
(`edge.store.budgets`); on every backend."""

from __future__ import annotations

import asyncio

import pytest

from edge.store import Store
from tests.store.conftest import Clock
from tests.store.contract.backends import Backend

pytestmark = pytest.mark.anyio


async def test_a_full_bucket_gives_a_seconds_worth_then_says_how_long_to_wait(
    store: Store, clock: Clock
) -> None:
    assert [await store.take_budget("b", 100, 50) for _ in range(2)] == [0.0, 0.0]
    assert await store.take_budget("b", 100, 10) == pytest.approx(0.1)
    clock.now += 0.1
    assert await store.take_budget("b", 100, 10) == 0.0


async def test_a_request_larger_than_the_bucket_goes_when_it_is_full_and_leaves_a_debt(
    store: Store, clock: Clock
) -> None:
    assert await store.take_budget("b", 50, 100) == 0.0
    assert await store.take_budget("b", 50, 100) == pytest.approx(2.0)  # debt 50, then 50 more
    clock.now += 2.0
    assert await store.take_budget("b", 50, 100) == 0.0


async def test_processes_on_one_store_spend_one_bucket_and_buckets_are_apart(
    store: Store, backend: Backend
) -> None:
    other = backend.open()
    # at once, from two processes: one second's worth between them, not each
    taken = await asyncio.gather(*(s.take_budget("b", 100, 25) for s in (store, other) * 3))
    assert sorted(taken)[:4] == [0.0] * 4
    assert all(wait > 0 for wait in sorted(taken)[4:])
    assert await other.take_budget("another account", 100, 100) == 0.0
