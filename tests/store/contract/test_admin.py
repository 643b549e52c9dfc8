"""What the store says about itself and keeps for the sender and the commands: stats, a pause,
upstream errors, dry-run bodies, the latest outcomes, secrets; on every backend."""

from __future__ import annotations

import json

import pytest

from edge.store import Store
from edge.store.errors import StoreUnavailable
from edge.store.values import (
    DEAD,
    DELIVERED,
    DRY_RUN,
    IN_FLIGHT,
    PENDING,
    REJECTED,
    RETRYING,
    SKIPPED,
    DeadLetter,
    Intake,
    Paused,
)
from tests.outbound import conversion, conversions, skipped
from tests.store.conftest import Clock
from tests.store.contract.backends import Backend

pytestmark = pytest.mark.anyio


async def test_dry_run_keeps_the_last_bodies(store: Store) -> None:
    for n in range(5):
        await store.record_dry_run("/events", json.dumps({"n": n}), keep=3)

    bodies = await store.dry_run_bodies(10)
    assert [json.loads(body.body)["n"] for body in bodies] == [4, 3, 2]
    assert (await store.stats()).dry_run_bodies == 3


async def test_upstream_errors_are_kept_newest_first(store: Store) -> None:
    for n in range(25):
        await store.record_upstream_error(500 + n % 4, f"error {n}")
    await store.record_upstream_error(None, "timed out")

    errors = (await store.stats()).upstream_errors
    assert len(errors) == 20
    assert (errors[0].status, errors[0].message) == (None, "timed out")


async def test_paused_state_is_visible_to_another_process(store: Store, backend: Backend) -> None:
    await store.set_paused(Paused(since=1.0, reason="403 credentials invalid"))
    other = backend.open()
    assert other.stats_sync().paused == Paused(1.0, "403 credentials invalid")
    await store.set_paused(None)
    assert other.stats_sync().paused is None


async def test_a_closed_store_refuses_work(store: Store) -> None:
    store.close()
    with pytest.raises(StoreUnavailable, match="closed"):
        await store.put(Intake(outbound=[conversion(1)]))


async def test_a_secret_is_generated_once_and_kept(backend: Backend) -> None:
    first = backend.open()
    key = await first.secret("cookie-signing-key")
    first.close()
    again = backend.open()
    assert await again.secret("cookie-signing-key") == key
    assert await again.secret("another") != key
    assert len(key) >= 40
    await again.check_writable()


async def test_the_latest_outcomes_say_where_each_event_is_with_the_body_still_kept(
    store: Store, clock: Clock
) -> None:
    # Given six items and a skipped event: one item of each fate, the last two still waiting
    items = conversions(6)
    await store.put(Intake(outbound=items, skipped=[skipped(7)]))
    delivered, dry_run, dead, retrying, _ = await store.claim(5, lease_seconds=60)
    await store.ack([delivered.id])
    await store.ack([dry_run.id], dry_run=True)
    await store.dead([DeadLetter(dead.id, REJECTED, "bad email")])
    await store.retry([retrying.id], at=clock.now + 60, error="503 unavailable")

    # When the latest outcomes are read (`rokt-edge recent`, the demo panel)
    recent = store.recent_sync(10)

    # Then each event says where it is, with what is kept of it
    found = {outcome.message_id: outcome for outcome in recent.outcomes}
    assert len(recent.outcomes) == 7
    assert [found[item.message_id].state for item in items] == [
        DELIVERED, DRY_RUN, DEAD, RETRYING, IN_FLIGHT, PENDING,
    ]  # fmt: skip
    assert (found["skip-000007"].state, found["skip-000007"].reason) == (SKIPPED, "not triggered")
    assert (found[items[2].message_id].reason, found[items[2].message_id].message) == (
        REJECTED, "bad email",
    )  # fmt: skip
    assert found[items[3].message_id].message == "503 unavailable"
    assert found[items[0].message_id].body is None  # delivered: its body is gone
    assert found[items[1].message_id].body == dry_run.body
    assert found[items[5].message_id].body is not None
    assert recent.requests == []


async def test_a_store_that_cannot_write_says_so(store: Store) -> None:
    await store.check_writable()
    store.close()
    with pytest.raises(StoreUnavailable):
        await store.check_writable()
