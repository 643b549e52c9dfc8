"""How the snippet's beacons reach the edge: keepalive, the stub queue, retries, cross-origin."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from edge.capture.short_form import expand
from edge.events import EventError, parse_event
from tests.browser.conftest import ROKT, Site, Tab

pytestmark = pytest.mark.browser

NewTab = Callable[..., Tab]


def test_an_event_fired_right_before_navigating_away_still_arrives(site: Site, tab: Tab) -> None:
    # given a slow edge and a link whose click handler reports, then navigates at once
    site.recorder.delay = 0.5
    site.page("/thanks", attrs={"auto-page": "false"}, body="<h1>Thanks</h1>")
    site.page(
        "/checkout",
        attrs={"auto-page": "false"},
        body=(
            "<button id=buy onclick=\"roktEdge('track','Order Completed',"
            "{order_id:'o1',revenue:10});location.href='/thanks'\">Buy</button>"
        ),
    )
    tab.goto(site.url("/checkout?rtid=X"))
    # when the customer clicks
    with tab.page.expect_navigation(url="**/thanks", wait_until="load"):
        tab.page.click("#buy")
    # then the conversion arrives although its page is gone
    (order,) = site.recorder.wait_for(lambda evs: len(evs) == 1)
    assert order["event"] == "Order Completed"
    assert order["integrations"][ROKT]["rtid"] == "X"


def test_fast_navigation_with_a_slow_edge_sends_each_event_once(site: Site, tab: Tab) -> None:
    # Chromium rejects a keepalive fetch still in flight when its page is left, though the
    # request is delivered; the rejection must not queue the event for a second send. The page
    # has its own pagehide listener, registered before the snippet's, as real pages do.
    site.recorder.delay = 0.3
    head = "<script>addEventListener('pagehide', function () {})</script>"
    site.page("/a", head=head)
    site.page("/b", head=head)
    # when a customer clicks through faster than the edge answers
    for _ in range(3):
        tab.goto(site.url("/a?rtid=X"))
        tab.goto(site.url("/b"))
    tab.page.wait_for_timeout(1000)
    # then every page event arrived exactly once
    events = site.recorder.events()
    assert len(events) == 6
    assert len({e["messageId"] for e in events}) == 6
    assert tab.stored().get("q", []) == []


def test_calls_made_before_the_script_loads_are_sent_in_order(site: Site, tab: Tab) -> None:
    # given a page that calls roktEdge before the deferred snippet has loaded
    site.page(
        "/early",
        attrs={"auto-page": "false"},
        before=(
            "roktEdge('identify','u1',{plan:'pro'});"
            "roktEdge('page','Early');"
            "roktEdge('track','Product Viewed',{sku:'s1'});"
            "roktEdge('track','Order Completed',{order_id:'o1',revenue:10});"
        ),
    )
    tab.goto(site.url("/early?rtid=X"))
    # then all four calls are sent, made in the order they were queued, after the click capture
    events = site.recorder.wait_for(lambda evs: len(evs) == 4)
    made = sorted(events, key=lambda e: (e["timestamp"], order_of(e)))
    assert [(e["type"], e.get("event") or e.get("name")) for e in made] == [
        ("identify", None),
        ("page", "Early"),
        ("track", "Product Viewed"),
        ("track", "Order Completed"),
    ]
    assert {e["integrations"][ROKT]["rtid"] for e in events} == {"X"}
    assert {e.get("userId") for e in events} == {"u1"}
    # and the stub has been replaced by the real function
    assert tab.js("() => roktEdge.q === undefined && typeof roktEdge === 'function'")


def order_of(event: dict[str, Any]) -> int:
    """Tie-breaker for events made in the same millisecond: the order the page made them."""
    name = event.get("event") or event.get("name") or ""
    return ["", "Early", "Product Viewed", "Order Completed"].index(name)


def test_a_failing_endpoint_s_events_are_retried_on_the_next_page(site: Site, tab: Tab) -> None:
    # given an edge that answers 503
    site.shop()
    site.recorder.status = 503
    tab.goto(site.url("/landing?rtid=X"))
    tab.js("() => roktEdge('track', 'Order Completed', {order_id: 'o1', revenue: 10})")
    failed = site.recorder.wait_for(lambda evs: len(evs) == 2, delivered=False)
    # the page keeps both events in its retry queue
    tab.wait_until("() => (JSON.parse(localStorage.getItem('roktEdge')).q || []).length == 2")
    # when the edge is back and the customer goes on
    site.recorder.status = 204
    tab.goto(site.url("/product"))
    # then both events are delivered unchanged, with the messageIds they had
    wanted = {e["messageId"]: e for e in failed}
    delivered = site.recorder.wait_for(lambda evs: wanted.keys() <= {e["messageId"] for e in evs})
    for event in delivered:
        if event["messageId"] in wanted:
            assert event == wanted[event["messageId"]]
    # (a send made while the page is left cannot be confirmed, so the pagehide flush and the
    # next page's flush may both deliver an event: at least once, always with one messageId)
    # and the queue empties
    tab.wait_until("() => (JSON.parse(localStorage.getItem('roktEdge')).q || []).length == 0")


def test_the_retry_queue_is_bounded(site: Site, tab: Tab) -> None:
    site.page("/p", attrs={"auto-page": "false"})
    site.recorder.status = 503
    tab.goto(site.url("/p"))
    tab.js("() => { for (let i = 0; i < 25; i++) roktEdge('track', 'E' + i) }")
    site.recorder.wait_for(lambda evs: len(evs) >= 25, delivered=False)
    tab.page.wait_for_timeout(300)
    # each queued event is the JSON text that is POSTed
    queued = [expand(json.loads(e))["event"] for e in tab.stored()["q"]]
    # about 20 events, the oldest dropped
    assert len(queued) == 20
    assert "E24" in queued
    assert "E0" not in queued


def test_an_event_the_edge_rejects_as_invalid_is_not_retried(site: Site, tab: Tab) -> None:
    site.page("/p", attrs={"auto-page": "false"})
    tab.goto(site.url("/p"))
    # 400: the event's own fault, retrying cannot help
    site.recorder.status = 400
    tab.js("() => roktEdge('track', 'Bad')")
    site.recorder.wait_for(lambda evs: len(evs) == 1, delivered=False)
    # 429: rate limited, worth a retry
    site.recorder.status = 429
    tab.js("() => roktEdge('track', 'Later')")
    site.recorder.wait_for(lambda evs: len(evs) == 2, delivered=False)
    tab.wait_until("() => (JSON.parse(localStorage.getItem('roktEdge')).q || []).length == 1")
    assert [expand(json.loads(e))["event"] for e in tab.stored()["q"]] == ["Later"]


def test_beacons_are_text_plain_and_need_no_preflight_cross_origin(site: Site, tab: Tab) -> None:
    # given an edge on another origin that allows the shop's origin
    site.recorder.allowed_origins.add(site.origin)
    site.page("/landing", attrs={"endpoint": site.edge_origin + "/e"})
    # when a customer lands
    tab.goto(site.url("/landing?rtid=X"))
    tab.js("() => roktEdge('track', 'Order Completed', {order_id: 'o1', revenue: 10})")
    # then both events reach the other origin, with no CORS preflight before them
    site.recorder.wait_for(lambda evs: len(evs) == 2)
    posts = site.recorder.posts()
    assert {p.port for p in posts} == {int(site.edge_origin.rsplit(":", 1)[1])}
    assert {p.origin for p in posts} == {site.origin}
    assert all(p.content_type and p.content_type.startswith("text/plain") for p in posts)
    assert site.recorder.preflights() == []
    # and the page could read the answers (credentials allowed): nothing waits for a retry
    tab.page.wait_for_timeout(200)
    assert tab.stored().get("q", []) == []


def test_same_origin_beacons_are_text_plain_json(site: Site, tab: Tab) -> None:
    site.page("/landing")
    tab.goto(site.url("/landing"))
    site.recorder.wait_for(lambda evs: len(evs) == 1)
    (post,) = site.recorder.posts()
    assert post.path == "/e"
    assert post.content_type == "text/plain;charset=UTF-8"
    assert site.recorder.preflights() == []


def test_send_beacon_is_the_fallback_when_fetch_is_missing(site: Site, new_tab: NewTab) -> None:
    tab = new_tab("delete window.fetch")
    site.page("/landing")
    tab.goto(site.url("/landing?rtid=X"))
    (event,) = site.recorder.wait_for(lambda evs: len(evs) == 1)
    assert event["integrations"][ROKT]["rtid"] == "X"
    content_type = site.recorder.posts()[0].content_type
    assert content_type is not None
    assert content_type.startswith("text/plain")
    assert tab.page_errors == []


def test_events_travel_in_the_short_form_and_an_unknown_method_is_the_edge_s_to_refuse(
    site: Site, tab: Tab
) -> None:
    site.page("/p", attrs={"auto-page": "false"})
    tab.goto(site.url("/p?rtid=X"))
    # when the page makes a typo
    tab.js("() => roktEdge('trak', 'Order Completed', {order_id: 'o1'})")
    # then the call goes out as it was made, in the snippet's short form
    site.recorder.wait_for(lambda evs: len(evs) == 1)
    (raw,) = site.recorder.raw()
    assert set(raw) == set("tnpacmslrh")  # no userId yet
    assert (raw["t"], raw["n"], raw["p"], raw["c"]) == (
        "trak",
        "Order Completed",
        {"order_id": "o1"},
        "X",
    )
    # and the edge's parser refuses it, naming the field: the typo shows in the network panel
    with pytest.raises(EventError, match="type: must be one of"):
        parse_event(expand(raw))
