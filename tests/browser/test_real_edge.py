"""The snippet in Chromium against the real edge (uvicorn, SQLite) delivering to a fake Rokt.

Each story ends at the fake's accepted batches: what Rokt would really receive. Pages are served
by the edge's own origin (see RealEdge in conftest.py), except in the cross-origin story.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from edge.demo import mask
from tests.browser.conftest import RealEdge, Site, Tab
from tests.live import wait_for

pytestmark = pytest.mark.browser

ORDER = "roktEdge('track','Order Completed',{order_id:'o1',revenue:10})"
GPC_ON = "Object.defineProperty(Navigator.prototype, 'globalPrivacyControl', {get: () => true})"
Start = Callable[..., RealEdge]
NewTab = Callable[..., Tab]


def click_of(batch: dict[str, Any]) -> str:
    return str(batch["integration_attributes"]["1277"]["passbackconversiontrackingid"])


def land(tab: Tab, edge: RealEdge, rtid: str, attrs: dict[str, str] | None = None) -> None:
    """Arrive on the landing page from a Rokt ad, and wait for the page event's beacon."""
    before = len(edge.beacons("POST"))
    tab.goto(edge.page("/landing", attrs, body="<h1>Welcome</h1>") + f"?rtid={rtid}")
    wait_for(lambda: len(edge.beacons("POST")) > before)


def quiet(seconds: float = 0.6) -> None:
    """Give a send that should not happen the time it would need to happen."""
    time.sleep(seconds)


def test_a_click_on_the_landing_url_reaches_rokt_with_a_later_conversion(
    start_edge: Start, edge_tab: NewTab
) -> None:
    edge, tab = start_edge(), edge_tab()

    # Given a shopper who lands from a Rokt ad
    land(tab, edge, "CLICK-1")

    # Then the snippet stored the click (localStorage and its cookie) and the edge set its own
    assert tab.stored()["c"] == "CLICK-1"
    cookies = {c["name"]: c for c in tab.page.context.cookies()}
    assert cookies["rtid"]["value"] == "CLICK-1"
    assert cookies["rtid"]["httpOnly"] is False
    wait_for(lambda: "rokt_edge" in tab.cookies())
    assert {c["name"]: c for c in tab.page.context.cookies()}["rokt_edge"]["httpOnly"] is True

    # When they order on a later page whose URL has no click id
    tab.goto(edge.page("/product"))
    tab.js(f"() => {ORDER}")

    # Then Rokt receives the conversion with the click, the shopper's IP and user agent
    wait_for(lambda: edge.delivered())
    [batch] = edge.delivered()
    assert click_of(batch) == "CLICK-1"
    assert batch["ip"] == "127.0.0.1"
    assert batch["device_info"]["http_header_user_agent"] == tab.js("() => navigator.userAgent")
    assert batch["events"][0]["data"]["custom_attributes"]["confirmationref"] == "o1"


def test_the_click_survives_a_reload_and_an_edge_restart(
    start_edge: Start, edge_tab: NewTab
) -> None:
    edge, tab = start_edge(), edge_tab()
    land(tab, edge, "CLICK-2")

    # When the page is reloaded and the edge restarts on the same database and port
    tab.page.reload(wait_until="load")
    edge.restart()
    tab.goto(edge.page("/product"))
    tab.js(f"() => {ORDER}")

    # Then the conversion still carries the click
    wait_for(lambda: edge.orders() == ["o1"])
    assert click_of(edge.delivered()[0]) == "CLICK-2"

    # And with the snippet's storage gone, the restarted edge's own cookie still carries it:
    # its signing key lives in the database, not in the process
    tab.js("() => { localStorage.clear(); document.cookie = 'rtid=; max-age=0; path=/' }")
    tab.goto(edge.page("/product"))
    tab.js("() => roktEdge('track','Order Completed',{order_id:'o2',revenue:10})")
    wait_for(lambda: edge.orders() == ["o1", "o2"])
    assert click_of(edge.delivered()[1]) == "CLICK-2"


def test_an_order_fired_on_click_right_before_navigating_away_still_arrives(
    start_edge: Start, edge_tab: NewTab
) -> None:
    edge, tab = start_edge(), edge_tab()
    edge.page("/thanks", body="<h1>Thanks</h1>")
    land(tab, edge, "CLICK-3")
    tab.goto(edge.page("/checkout", body=f'<a id=buy href=/thanks onclick="{ORDER}">Buy</a>'))

    with tab.page.expect_navigation(url="**/thanks", wait_until="load"):
        tab.page.click("#buy")

    wait_for(lambda: edge.orders() == ["o1"])
    assert click_of(edge.delivered()[0]) == "CLICK-3"


def test_calls_made_before_the_snippet_loads_are_sent(start_edge: Start, edge_tab: NewTab) -> None:
    edge, tab = start_edge(), edge_tab()

    # a page that tracks its order in an inline script, before the deferred snippet has run
    tab.goto(edge.page("/receipt", before=ORDER) + "?rtid=CLICK-4")

    wait_for(lambda: edge.orders() == ["o1"])
    assert click_of(edge.delivered()[0]) == "CLICK-4"


def test_when_consent_is_required_nothing_is_stored_or_sent_until_granted(
    start_edge: Start, edge_tab: NewTab
) -> None:
    edge, tab = start_edge(), edge_tab()
    required = {"consent": "required"}

    # Given a shopper who lands and orders on a site that asks for consent first
    tab.goto(edge.page("/landing", required) + "?rtid=CLICK-5")
    tab.js(f"() => {ORDER}")
    quiet()

    # Then nothing is stored, no beacon left the page, no cookie was set
    assert tab.stored() == {}
    assert tab.cookies() == {}
    assert edge.beacons() == []

    # When the shopper grants consent
    tab.js("() => roktEdge('consent', {ads: true})")

    # Then the click is stored at once and the waiting order reaches Rokt with it
    assert tab.stored()["c"] == "CLICK-5"
    assert tab.cookies()["rtid"] == "CLICK-5"
    wait_for(lambda: edge.orders() == ["o1"])
    assert click_of(edge.delivered()[0]) == "CLICK-5"


def test_global_privacy_control_keeps_everything_from_the_edge_and_rokt(
    start_edge: Start, edge_tab: NewTab
) -> None:
    edge, tab = start_edge(), edge_tab(GPC_ON)

    tab.goto(edge.page("/landing") + "?rtid=CLICK-6")
    tab.js(f"() => {ORDER}")
    tab.goto(edge.page("/product"))
    quiet()

    assert tab.stored().get("c") is None
    assert "rtid" not in tab.cookies()
    assert "rokt_edge" not in tab.cookies()
    assert edge.beacons() == []
    assert edge.fake.requests() == []


def test_an_order_the_failing_edge_refused_is_sent_again_from_the_next_page_once(
    start_edge: Start, edge_tab: NewTab
) -> None:
    edge, tab = start_edge(), edge_tab()
    land(tab, edge, "CLICK-7")

    # Given an edge whose store cannot write: it answers 503
    edge.failing(True)
    tab.js(f"() => {ORDER}")
    wait_for(lambda: any(seen.status == 503 for seen in edge.beacons("POST")))
    tab.wait_until("JSON.parse(localStorage.roktEdge).q.length == 1")

    # When the edge recovers and the shopper moves on
    edge.failing(False)
    tab.goto(edge.page("/product"))

    # Then the queued order reaches Rokt, once, with its click; the page saw no exception
    wait_for(lambda: edge.orders() == ["o1"])
    tab.wait_until("JSON.parse(localStorage.roktEdge).q.length == 0")
    quiet()
    assert edge.orders() == ["o1"]
    assert click_of(edge.delivered()[0]) == "CLICK-7"
    assert tab.js("() => window.__errors") == []


def test_a_page_on_another_allowed_origin_sends_without_a_preflight(
    start_edge: Start, edge_tab: NewTab, site: Site
) -> None:
    # Given an edge that allows the shop's origin, and the shop's pages on that other origin
    edge = start_edge(allowed_origins=(site.origin,))
    attrs = {"endpoint": edge.url + "/e"}
    site.page("/landing", attrs=attrs)
    site.page("/product", attrs=attrs)
    tab = edge_tab()

    tab.goto(site.url("/landing?rtid=CLICK-8"))
    tab.goto(site.url("/product"))
    tab.js(f"() => {ORDER}")

    # Then the order reaches Rokt with the click, the edge saw no OPTIONS request, and the
    # snippet read every answer (CORS allowed it): nothing is left to retry
    wait_for(lambda: edge.orders() == ["o1"])
    assert click_of(edge.delivered()[0]) == "CLICK-8"
    assert edge.beacons("OPTIONS") == []
    assert {seen.status for seen in edge.beacons("POST")} == {200}
    tab.wait_until("!(JSON.parse(localStorage.roktEdge).q || []).length")
    assert site.recorder.posts() == []  # nothing went to the page's own origin


def test_the_demo_shows_a_shoppers_click_and_conversion_in_the_inspect_panel(
    start_edge: Start, edge_tab: NewTab
) -> None:
    # Given a dry-run edge (no credentials: the demo is on and shows its traffic)
    edge = start_edge(api_key=None, api_secret=None)
    tab = edge_tab()

    # When a newcomer walks through the shop from a sample Rokt ad click to an order
    tab.goto(edge.url + "/demo")
    with tab.page.expect_navigation(url="**/demo?rtid=DEMO-*", wait_until="load"):
        tab.page.click("#sample")
    rtid = tab.js("() => new URLSearchParams(location.search).get('rtid')")
    assert tab.page.text_content("#rtid") == rtid
    with tab.page.expect_navigation(url="**/demo/product", wait_until="load"):
        tab.page.click("#to-product")
    with tab.page.expect_navigation(url="**/demo/checkout", wait_until="load"):
        tab.page.click("#to-checkout")
    tab.page.fill("#email", "shopper@example.com")
    order_id = tab.page.input_value("#order-id")
    with tab.page.expect_navigation(url="**/demo/inspect", wait_until="load"):
        tab.page.click("#buy")

    # Then the panel shows the conversion with the click id, and the request Rokt would get,
    # personal data masked (the click id to its first characters, the email to a letter)
    shown = mask(rtid, "click_id")
    assert shown != rtid
    tab.page.wait_for_selector(f"#events td.click:text-is('{shown}')", timeout=10_000)
    assert tab.page.text_content("#visitors td.click") == shown
    requests = tab.page.text_content("#requests")
    assert requests is not None
    assert f'"passbackconversiontrackingid": "{shown}"' in requests
    assert f'"confirmationref": "{order_id}"' in requests
    assert '"email": "s…@example.com"' in requests  # the presets do not hash; the panel masks
    assert edge.fake.requests() == []  # dry run: nothing sent
