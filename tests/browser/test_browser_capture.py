"""The snippet captures the click id (rtid) and attaches it to the conversion, in a real browser."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from tests.browser.conftest import ROKT, Site, Tab

pytestmark = pytest.mark.browser

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def rtid_of(event: dict[str, Any]) -> str | None:
    rtid: str | None = event.get("integrations", {}).get(ROKT, {}).get("rtid")
    return rtid


def in_order(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Events in the order they were made (beacons may arrive out of order)."""
    return sorted(events, key=lambda e: e["timestamp"])


def test_landing_with_rtid_stores_it_in_localstorage_and_a_cookie(site: Site, tab: Tab) -> None:
    # given a shop with the snippet installed
    site.shop()
    # when a customer lands from a Rokt ad
    tab.goto(site.url("/landing?rtid=click-X"))
    # then the click id is kept in localStorage (with its expiry) and in the first-party cookie
    stored = tab.stored()
    assert stored["c"] == "click-X"
    assert stored["x"] / 1000 == pytest.approx(time.time() + 2592000, abs=120)
    cookie = next(c for c in tab.page.context.cookies() if c["name"] == "rtid")
    assert cookie["value"] == "click-X"
    assert cookie["path"] == "/"
    assert cookie["sameSite"] == "Lax"
    assert cookie["secure"] is False  # http page: no Secure attribute
    assert cookie["domain"] == "127.0.0.1"  # host-only by default
    assert cookie["expires"] == pytest.approx(time.time() + 2592000, abs=120)
    # and the automatic page event carries it
    (page_event,) = site.recorder.wait_for(lambda events: len(events) == 1)
    assert page_event["type"] == "page"
    assert rtid_of(page_event) == "click-X"


def test_conversion_on_a_later_page_carries_the_click_id(site: Site, tab: Tab) -> None:
    # given a customer who landed with ?rtid=X and browsed on
    site.shop()
    tab.goto(site.url("/landing?rtid=X"))
    tab.goto(site.url("/product"))
    with tab.page.expect_navigation(wait_until="load"):
        tab.page.click("#to-checkout")
    # when the checkout reports the order
    tab.page.click("#buy")
    # then the conversion arrives in Segment's shape with the click id for Rokt
    events = site.recorder.wait_for(lambda evs: any(e["type"] == "track" for e in evs))
    (order,) = [e for e in events if e["type"] == "track"]
    assert order["event"] == "Order Completed"
    assert order["properties"] == {"order_id": "o1", "revenue": 10}
    assert order["integrations"] == {ROKT: {"rtid": "X"}}
    assert UUID.match(order["messageId"])
    assert UUID.match(order["anonymousId"])
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", order["timestamp"])
    assert order["context"]["page"] == {
        "url": site.url("/checkout"),
        "path": "/checkout",
        "search": "",
        "referrer": site.url("/product"),
        "title": "Checkout",
    }
    # and every event of the visit shares one anonymous id and carries the click
    pages = [e for e in in_order(events) if e["type"] == "page"]
    assert [p["context"]["page"]["path"] for p in pages] == ["/landing", "/product", "/checkout"]
    assert {e["anonymousId"] for e in events} == {order["anonymousId"]}
    assert {rtid_of(e) for e in events} == {"X"}
    assert len({e["messageId"] for e in events}) == len(events)


def test_the_click_survives_a_reload(site: Site, tab: Tab) -> None:
    site.shop()
    tab.goto(site.url("/landing?rtid=X"))
    tab.goto(site.url("/product"))
    # when the page is reloaded
    tab.page.reload(wait_until="load")
    # then the reloaded page still knows the click
    events = site.recorder.wait_for(lambda evs: len(evs) == 3)
    assert [rtid_of(e) for e in events] == ["X", "X", "X"]
    assert tab.stored()["c"] == "X"


def test_the_click_is_read_back_from_the_cookie_when_localstorage_lost_it(
    site: Site, tab: Tab
) -> None:
    site.shop()
    tab.goto(site.url("/landing?rtid=X"))
    # given localStorage was cleared (the cookie remains), among cookies with similar names
    tab.js("() => localStorage.clear()")
    tab.js("() => { document.cookie = 'xrtid=bad; path=/'; document.cookie = 'rtidx=bad; path=/' }")
    # when the customer goes on
    tab.goto(site.url("/product"))
    # then the click id comes back from the cookie
    events = site.recorder.wait_for(lambda evs: len(evs) == 2)
    assert [rtid_of(e) for e in events] == ["X", "X"]


def test_a_newer_click_replaces_the_older_one(site: Site, tab: Tab) -> None:
    site.shop()
    tab.goto(site.url("/landing?rtid=old"))
    tab.goto(site.url("/product"))
    # when the customer clicks another Rokt ad
    tab.goto(site.url("/landing?rtid=new"))
    tab.goto(site.url("/checkout"))
    # then the newer click is stored and attached from then on
    events = site.recorder.wait_for(lambda evs: len(evs) == 4)
    assert [rtid_of(e) for e in in_order(events)] == ["old", "old", "new", "new"]
    assert tab.stored()["c"] == "new"
    assert tab.cookies()["rtid"] == "new"


def test_rclid_is_another_name_and_values_are_url_decoded(site: Site, tab: Tab) -> None:
    site.shop()
    # an rtid with characters that must be escaped in a query string
    tab.goto(site.url("/landing?rclid=a%2Bb%20c%3D%26%C3%A9"))
    (event,) = site.recorder.wait_for(lambda evs: len(evs) == 1)
    assert rtid_of(event) == "a+b c=&é"
    assert tab.stored()["c"] == "a+b c=&é"
    # the cookie holds it percent-encoded and reads back intact
    tab.js("() => localStorage.clear()")
    tab.goto(site.url("/product"))
    events = site.recorder.wait_for(lambda evs: len(evs) == 2)
    assert [rtid_of(e) for e in events] == ["a+b c=&é", "a+b c=&é"]


def test_cookie_settings_come_from_data_attributes(site: Site, tab: Tab) -> None:
    site.shop({"cookie": "rokt_click", "max-age": "3600", "auto-page": "false"})
    tab.goto(site.url("/landing?rtid=X"))
    cookie = next(c for c in tab.page.context.cookies() if c["name"] == "rokt_click")
    assert cookie["value"] == "X"
    assert cookie["expires"] == pytest.approx(time.time() + 3600, abs=60)
    assert "rtid" not in tab.cookies()
    assert tab.stored()["x"] / 1000 == pytest.approx(time.time() + 3600, abs=60)
    # data-auto-page="false": no page event on load; explicit calls still go
    tab.js("() => roktEdge('page', 'Landing', {section: 'promo'})")
    (event,) = site.recorder.wait_for(lambda evs: len(evs) == 1)
    assert event["type"] == "page"
    assert event["name"] == "Landing"
    assert event["properties"] == {"section": "promo"}


def test_an_expired_click_is_not_used(site: Site, tab: Tab) -> None:
    site.shop({"max-age": "1", "auto-page": "false"})
    tab.goto(site.url("/landing?rtid=X"))
    # when the click's lifetime has passed
    tab.page.wait_for_timeout(1500)
    tab.goto(site.url("/checkout"))
    tab.page.click("#buy")
    (event,) = site.recorder.wait_for(lambda evs: len(evs) == 1)
    # then the conversion goes without it
    assert "integrations" not in event


def test_identify_group_and_alias(site: Site, tab: Tab) -> None:
    site.shop({"auto-page": "false"})
    tab.goto(site.url("/landing?rtid=X"))
    anonymous = tab.stored()["a"]
    tab.js(
        """() => {
        roktEdge('identify', 'user-1', {email: 'a@example.com'});
        roktEdge('group', 'acme', {plan: 'pro'});
        roktEdge('alias', 'user-2');
        roktEdge('track', 'Signed Up');
        }"""
    )
    events = site.recorder.wait_for(lambda evs: len(evs) == 4)
    by_type = {e["type"]: e for e in events}
    identify, group, alias, track = (by_type[t] for t in ("identify", "group", "alias", "track"))
    assert identify["type"] == "identify"
    assert identify["userId"] == "user-1"
    assert identify["traits"] == {"email": "a@example.com"}
    assert group["groupId"] == "acme"
    assert group["traits"] == {"plan": "pro"}
    assert group["userId"] == "user-1"
    assert alias["type"] == "alias"
    assert alias["userId"] == "user-2"
    assert alias["previousId"] == "user-1"
    assert track["userId"] == "user-2"
    assert {e["anonymousId"] for e in events} == {anonymous}
    # the user id is remembered on later pages
    tab.goto(site.url("/checkout"))
    tab.page.click("#buy")
    events = site.recorder.wait_for(lambda evs: len(evs) == 5)
    assert in_order(events)[-1]["userId"] == "user-2"


def test_identify_with_traits_only_keeps_the_user_id(site: Site, tab: Tab) -> None:
    site.shop({"auto-page": "false"})
    tab.goto(site.url("/landing"))
    tab.js("() => { roktEdge('identify', 'u1'); roktEdge('identify', {plan: 'pro'}); }")
    events = site.recorder.wait_for(lambda evs: len(evs) == 2)
    assert [e["userId"] for e in events] == ["u1", "u1"]
    assert {"plan": "pro"} in [e.get("traits") for e in events]
