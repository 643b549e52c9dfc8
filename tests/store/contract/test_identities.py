"""The identity store: which click id, IP and user agent each visitor's browser showed, on every
backend."""

from __future__ import annotations

import pytest

from edge.store import Store
from edge.store.values import Identity, IdentityUpdate, Intake
from tests.store.conftest import Clock

pytestmark = pytest.mark.anyio
DAY = 86400.0


def seen(*keys: str, click: str | None = None, at: float | None = None, ip: str | None = None,
         ua: str | None = None) -> Intake:  # fmt: skip
    return Intake(identities=[IdentityUpdate(keys, click, at, ip, ua)])


async def test_a_visitor_is_found_by_either_of_its_ids(store: Store, clock: Clock) -> None:
    # Given an identify that carried both ids, with the click the browser showed
    await store.put(seen("a:A", "u:U", click="X", at=clock.now, ip="203.0.113.5", ua="UA/1"))

    # Then either id finds the click, the IP and the user agent
    for key in ("a:A", "u:U"):
        assert await store.identity([key], since=clock.now - DAY) == Identity(
            "X", clock.now, "203.0.113.5", "UA/1", clock.now
        )
    assert await store.identity(["a:nobody"], since=0) is None
    assert await store.identity([], since=0) is None


async def test_a_newer_click_replaces_an_older_one_and_never_the_reverse(
    store: Store, clock: Clock
) -> None:
    await store.put(seen("a:A", click="OLD", at=clock.now - 100))
    await store.put(seen("a:A", click="NEW", at=clock.now))
    await store.put(seen("a:A", click="STALE", at=clock.now - 50))  # a late, older beacon

    found = await store.identity(["a:A"], since=0)
    assert found is not None
    assert (found.click_id, found.click_seen_at) == ("NEW", clock.now)


async def test_an_event_without_a_click_keeps_the_click_and_updates_ip_and_agent(
    store: Store, clock: Clock
) -> None:
    await store.put(seen("a:A", click="X", at=clock.now, ip="1.1.1.1", ua="old"))
    clock.now += 10
    await store.put(seen("a:A", ip="2.2.2.2", ua="new"))

    assert await store.identity(["a:A"], since=0) == Identity(
        "X", clock.now - 10, "2.2.2.2", "new", clock.now
    )


async def test_the_freshest_click_among_linked_ids_wins(store: Store, clock: Clock) -> None:
    await store.put(seen("a:phone", click="ON-PHONE", at=clock.now - 3600))
    await store.put(seen("a:laptop", click="ON-LAPTOP", at=clock.now))

    found = await store.identity(["a:phone", "a:laptop"], since=0)
    assert found is not None
    assert found.click_id == "ON-LAPTOP"


async def test_a_click_outside_the_window_is_given_with_its_first_sighting(
    store: Store, clock: Clock
) -> None:
    await store.put(seen("a:A", click="X", at=clock.now - 31 * DAY, ip="1.1.1.1"))
    await store.put(seen("a:A", ip="2.2.2.2"))  # the visitor came back today, without a click

    # The caller judges the window from the first sighting (`edge.capture.enrich.click_of`)
    found = await store.identity(["a:A"], since=clock.now - 30 * DAY)
    assert found is not None
    assert (found.click_id, found.click_seen_at, found.ip) == ("X", clock.now - 31 * DAY, "2.2.2.2")


async def test_the_same_click_seen_again_keeps_its_first_sighting(
    store: Store, clock: Clock
) -> None:
    # Given a click first seen ten days ago
    first = clock.now - 10 * DAY
    await store.put(seen("a:A", click="X", at=first))

    # When the visitor's events carry it again and again (the snippet attaches it to each)
    await store.put(seen("a:A", click="X", at=clock.now - DAY))
    await store.put(seen("a:A", click="X", at=clock.now))

    # Then the click stays dated at its first sighting, and only a different click replaces it
    found = await store.identity(["a:A"], since=0)
    assert found is not None
    assert (found.click_id, found.click_seen_at) == ("X", first)
    await store.put(seen("a:A", click="Y", at=clock.now))
    found = await store.identity(["a:A"], since=0)
    assert found is not None
    assert (found.click_id, found.click_seen_at) == ("Y", clock.now)


async def test_hashed_identifiers_are_kept_and_never_erased_by_an_event_without_them(
    store: Store, clock: Clock
) -> None:
    email, mobile = "e" * 64, "m" * 64
    await store.put(Intake(identities=[IdentityUpdate(("u:U",), None, None, None, None, email)]))
    await store.put(
        Intake(identities=[IdentityUpdate(("u:U",), None, None, None, None, None, mobile)])
    )
    await store.put(seen("u:U", ip="1.1.1.1"))

    found = await store.identity(["u:U"], since=0)
    assert found is not None
    assert (found.email_sha256, found.mobile_sha256) == (email, mobile)


async def test_visitors_unseen_for_the_window_are_pruned(store: Store, clock: Clock) -> None:
    await store.put(seen("a:old", click="X", at=clock.now))
    clock.now += 31 * DAY
    await store.put(seen("a:recent", click="Y", at=clock.now))

    assert await store.prune_identities(before=clock.now - 30 * DAY) == 1
    assert await store.identity(["a:old"], since=0) is None
    assert await store.identity(["a:recent"], since=0) is not None


async def test_the_visitors_seen_last_come_first_with_the_keys_they_are_known_by(
    store: Store, clock: Clock
) -> None:
    # Given a visitor known by two ids, then another seen ten seconds later
    await store.put(seen("a:A", "u:U", click="X", at=clock.now, ip="1.1.1.1", ua="UA/1"))
    clock.now += 10
    await store.put(seen("a:B", ip="2.2.2.2"))

    # When the latest are read (the demo panel)
    latest = store.recent_identities_sync(3)

    # Then the last seen comes first, each record with its key
    assert latest[0] == ("a:B", Identity(None, None, "2.2.2.2", None, clock.now))
    first = Identity("X", clock.now - 10, "1.1.1.1", "UA/1", clock.now - 10)
    assert sorted(latest[1:], key=lambda found: found[0]) == [("a:A", first), ("u:U", first)]
    assert store.recent_identities_sync(1) == latest[:1]


async def test_one_intake_teaching_a_visitor_several_things_applies_them_in_order(
    store: Store, clock: Clock
) -> None:
    # Given one request whose events show a visitor's old click, a newer one, then a new address
    # (a batch from the tracking API), and another visitor's beside them
    updates = [
        IdentityUpdate(("a:A",), "OLD", clock.now - 100, "1.1.1.1", "UA/1"),
        IdentityUpdate(("a:B",), "OTHER", clock.now, None, None),
        IdentityUpdate(("a:A", "u:U"), "NEW", clock.now, None, None),
        IdentityUpdate(("a:A",), "OLD", clock.now - 100, "2.2.2.2", None),
    ]

    await store.put(Intake(identities=updates))

    # Then each key holds what the updates made of it, one after the other
    found = await store.identities(["a:A", "u:U", "a:B"], since=0)
    assert found["a:A"] == Identity("NEW", clock.now, "2.2.2.2", "UA/1", clock.now)
    assert found["u:U"] == Identity("NEW", clock.now, None, None, clock.now)
    assert found["a:B"].click_id == "OTHER"
