"""Shops that also run Rokt's own tag: the snippet picks up the click that tag kept.

Rokt's web SDK keeps the click id as RoktTransactionId, in localStorage or in a cookie of that
name, and reads it when the URL has no rtid or rclid. These stories land the shopper on a page
that runs only a stand-in for Rokt's tag (it keeps the given values as Rokt's does), then go on
to the shop's pages, which run only ours, and follow the order through the real edge to the fake
Rokt. The last one watches the snippet's own beacons instead (the recorder of conftest.py): the
edge remembers a shopper's click on its own, which would hide what the snippet sent.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.browser.conftest import ROKT, RealEdge, Site, Tab
from tests.live import wait_for

pytestmark = pytest.mark.browser

ORDER = "roktEdge('track','Order Completed',{order_id:'%s',revenue:25.5,currency:'USD'})"
THIRTY_DAYS = 2592000
Start = Callable[..., RealEdge]
NewTab = Callable[..., Tab]


def rokt_tag_page(local: str | None = None, cookie: str | None = None) -> str:
    """A page that runs Rokt's tag and not ours: it keeps RoktTransactionId in localStorage
    and/or in a cookie (URL-encoded, path=/)."""
    keep = ""
    if local is not None:
        keep += f"localStorage.setItem('RoktTransactionId', {json.dumps(local)});"
    if cookie is not None:
        keep += (
            f"document.cookie = 'RoktTransactionId=' + encodeURIComponent({json.dumps(cookie)})"
            " + '; path=/; max-age=86400';"
        )
    return f"<!doctype html><title>Rokt's tag</title><script>{keep}</script><h1>Welcome</h1>"


def visit_rokt_tag_page(tab: Tab, edge: RealEdge, **kept: str) -> None:
    edge.pages["/rokt-landing"] = rokt_tag_page(**kept)
    tab.goto(edge.url + "/rokt-landing")


def order_on_checkout(
    tab: Tab,
    edge: RealEdge,
    attrs: dict[str, str] | None = None,
    *,
    order: str = "o1",
    search: str = "",
) -> None:
    """Open our checkout page (its URL ending in `search`) and report the order there."""
    tab.goto(edge.page("/checkout", attrs) + search)
    tab.js(f"() => {ORDER % order}")


def a_day_passes(tab: Tab) -> None:
    """Move the stored click's expiry a day earlier, as if it had been stored a day ago."""
    tab.js(
        "() => { const s = JSON.parse(localStorage.roktEdge); s.x -= 864e5;"
        " localStorage.roktEdge = JSON.stringify(s) }"
    )


def clicks_delivered(edge: RealEdge, orders: int) -> list[str]:
    """The click ids of the conversions Rokt accepted, once it has accepted orders o1..o<orders>."""
    wait_for(lambda: edge.orders() == [f"o{n}" for n in range(1, orders + 1)])
    return [
        str(batch["integration_attributes"]["1277"]["passbackconversiontrackingid"])
        for batch in edge.delivered()
    ]


def click_delivered(edge: RealEdge) -> str:
    """The click id of the one conversion Rokt accepted."""
    [click] = clicks_delivered(edge, 1)
    return click


def test_rokt_s_click_in_localstorage_reaches_rokt_with_the_conversion(
    start_edge: Start, edge_tab: NewTab
) -> None:
    edge, tab = start_edge(), edge_tab()

    # Given a shopper whose landing page ran Rokt's tag, which kept the click in localStorage
    visit_rokt_tag_page(tab, edge, local="ROKT-LS-1")

    # When they order on a page of ours whose URL has no click id
    order_on_checkout(tab, edge)

    # Then Rokt receives the conversion with that click, adopted as a click from the URL is
    assert click_delivered(edge) == "ROKT-LS-1"
    stored = tab.stored()
    assert stored["c"] == "ROKT-LS-1"
    assert stored["x"] / 1000 == pytest.approx(time.time() + THIRTY_DAYS, abs=120)
    assert tab.cookies()["rtid"] == "ROKT-LS-1"


def test_rokt_s_click_in_its_cookie_reaches_rokt_url_decoded(
    start_edge: Start, edge_tab: NewTab
) -> None:
    edge, tab = start_edge(), edge_tab()

    # Given Rokt's tag kept the click only in its cookie, URL-encoded
    visit_rokt_tag_page(tab, edge, cookie="ROKT/CK 1+é")
    assert tab.cookies()["RoktTransactionId"] == "ROKT%2FCK%201%2B%C3%A9"

    order_on_checkout(tab, edge)

    assert click_delivered(edge) == "ROKT/CK 1+é"
    assert tab.stored()["c"] == "ROKT/CK 1+é"
    assert tab.cookies()["rtid"] == "ROKT%2FCK%201%2B%C3%A9"


def test_rokt_s_localstorage_comes_before_its_cookie_and_a_url_click_before_both(
    start_edge: Start, edge_tab: NewTab
) -> None:
    edge, tab = start_edge(), edge_tab()

    # Given Rokt's tag kept one click in localStorage and another in its cookie
    visit_rokt_tag_page(tab, edge, local="ROKT-LS-2", cookie="ROKT-CK-2")

    # When the shopper orders on our page: the click in localStorage goes, not the cookie's
    order_on_checkout(tab, edge)
    assert clicks_delivered(edge, 1) == ["ROKT-LS-2"]

    # When they come back by a Rokt ad to our page, Rokt's storage unchanged, and order there
    order_on_checkout(tab, edge, order="o2", search="?rtid=URL-CLICK-2")

    # Then the click in the URL wins over both
    assert clicks_delivered(edge, 2) == ["ROKT-LS-2", "URL-CLICK-2"]

    # And Rokt's older clicks, still in its storage, do not take it back on a later page
    order_on_checkout(tab, edge, order="o3")
    assert clicks_delivered(edge, 3) == ["ROKT-LS-2", "URL-CLICK-2", "URL-CLICK-2"]
    assert tab.stored()["c"] == "URL-CLICK-2"
    assert tab.cookies()["rtid"] == "URL-CLICK-2"


def test_a_newer_rokt_click_replaces_a_stored_click_from_an_earlier_url(
    start_edge: Start, edge_tab: NewTab
) -> None:
    edge, tab = start_edge(), edge_tab()

    # Given a shopper who came from a Rokt ad to our page a while ago
    tab.goto(edge.page("/landing") + "?rtid=URL-CLICK-3")
    a_day_passes(tab)
    earlier = tab.stored()
    assert earlier["c"] == "URL-CLICK-3"

    # When they come back by a later Rokt ad to a page where Rokt's tag kept that click
    visit_rokt_tag_page(tab, edge, local="ROKT-LS-3")
    order_on_checkout(tab, edge)

    # Then the newer click replaces the stored one, with a fresh expiry, and goes with the order
    assert click_delivered(edge) == "ROKT-LS-3"
    stored = tab.stored()
    assert stored["c"] == "ROKT-LS-3"
    assert stored["x"] > earlier["x"]
    assert tab.cookies()["rtid"] == "ROKT-LS-3"


def test_rokt_s_click_equal_to_the_stored_one_keeps_its_expiry(
    start_edge: Start, edge_tab: NewTab
) -> None:
    edge, tab = start_edge(), edge_tab()

    # Given a click from our URL, stored a day ago, that Rokt's tag also kept
    tab.goto(edge.page("/landing") + "?rtid=SAME-5")
    a_day_passes(tab)
    expiry = tab.stored()["x"]
    visit_rokt_tag_page(tab, edge, local="SAME-5")

    # When the shopper orders on another page
    order_on_checkout(tab, edge)

    # Then nothing changed: the same click, with its expiry
    assert click_delivered(edge) == "SAME-5"
    assert tab.stored()["c"] == "SAME-5"
    assert tab.stored()["x"] == expiry


def test_under_pending_consent_rokt_s_click_is_kept_in_memory_until_granted(
    start_edge: Start, edge_tab: NewTab
) -> None:
    edge, tab = start_edge(), edge_tab()
    required = {"consent": "required"}
    visit_rokt_tag_page(tab, edge, local="ROKT-LS-6")

    # When the shopper orders on a page that asks for consent first
    order_on_checkout(tab, edge, required)
    time.sleep(0.6)

    # Then nothing of ours is stored or sent
    assert tab.stored() == {}
    assert "rtid" not in tab.cookies()
    assert edge.beacons() == []

    # And once consent is granted the click is stored and goes with the waiting order
    tab.js("() => roktEdge('consent', {ads: true})")
    assert tab.stored()["c"] == "ROKT-LS-6"
    assert tab.cookies()["rtid"] == "ROKT-LS-6"
    assert click_delivered(edge) == "ROKT-LS-6"


# ---- the snippet's own beacons (the recorder), where the edge's memory would hide them


def click_sent(event: dict[str, Any]) -> str | None:
    rtid: str | None = event.get("integrations", {}).get(ROKT, {}).get("rtid")
    return rtid


def test_rokt_s_click_that_expired_is_not_revived(site: Site, tab: Tab) -> None:
    # Given a shop whose clicks last one second, and Rokt's tag keeping a click
    site.shop({"max-age": "1", "auto-page": "false"})
    with site.recorder.lock:
        site.recorder.pages["/rokt-landing"] = rokt_tag_page(local="ROKT-LS-7")
    tab.goto(site.url("/rokt-landing"))
    tab.goto(site.url("/checkout"))
    tab.page.click("#buy")
    (first,) = site.recorder.wait_for(lambda evs: len(evs) == 1)
    assert click_sent(first) == "ROKT-LS-7"

    # When the click's lifetime has passed, and the shopper orders on two more pages
    tab.page.wait_for_timeout(1500)
    for _ in range(2):
        tab.goto(site.url("/checkout"))
        tab.page.click("#buy")

    # Then neither order carries the expired click, though Rokt's storage still holds it
    events = site.recorder.wait_for(lambda evs: len(evs) == 3)
    assert [click_sent(e) for e in sorted(events, key=lambda e: e["timestamp"])] == [
        "ROKT-LS-7",
        None,
        None,
    ]
    assert tab.js("() => localStorage.getItem('RoktTransactionId')") == "ROKT-LS-7"
