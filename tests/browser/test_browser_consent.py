"""Consent: data-consent="required", roktEdge('consent', ...), and Global Privacy Control."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.browser.conftest import ROKT, Site, Tab

pytestmark = pytest.mark.browser

NewTab = Callable[..., Tab]

GPC_ON = "Object.defineProperty(Navigator.prototype, 'globalPrivacyControl', {get: () => true})"


def nothing_sent(site: Site, tab: Tab) -> None:
    tab.page.wait_for_timeout(400)
    assert site.recorder.posts() == []


def test_consent_required_stores_and_sends_nothing_until_granted(site: Site, tab: Tab) -> None:
    # given a shop that needs consent before storing anything
    site.shop({"consent": "required"})
    # when a customer lands from a Rokt ad and has not decided yet
    tab.goto(site.url("/landing?rtid=X"))
    # then nothing is stored and nothing is sent
    assert tab.js("() => localStorage.length") == 0
    assert tab.cookies() == {}
    nothing_sent(site, tab)
    # when the consent banner reports a yes
    tab.js("() => roktEdge('consent', {ads: true})")
    # then the click is persisted at once, and the held page event goes with it
    assert tab.stored()["c"] == "X"
    assert tab.stored()["k"] is True
    assert tab.cookies()["rtid"] == "X"
    (page,) = site.recorder.wait_for(lambda evs: len(evs) == 1)
    assert page["type"] == "page"
    assert page["integrations"][ROKT]["rtid"] == "X"
    assert page["anonymousId"] == tab.stored()["a"]
    # and the decision is remembered on later pages
    tab.goto(site.url("/checkout"))
    tab.page.click("#buy")
    events = site.recorder.wait_for(lambda evs: len(evs) == 3)
    order = next(e for e in events if e["type"] == "track")
    assert order["integrations"][ROKT]["rtid"] == "X"


def test_consent_denied_drops_held_events_and_forgets_the_click(site: Site, tab: Tab) -> None:
    site.shop({"consent": "required"})
    tab.goto(site.url("/landing?rtid=X"))
    tab.js("() => roktEdge('consent', {ads: false})")
    # the held page event is dropped and only the decision is stored
    nothing_sent(site, tab)
    assert tab.stored() == {"k": False}
    assert tab.cookies() == {}
    # later events are not sent either
    tab.goto(site.url("/checkout"))
    tab.page.click("#buy")
    nothing_sent(site, tab)


def test_withdrawing_consent_removes_the_stored_click(site: Site, tab: Tab) -> None:
    # given a shop without a consent requirement, where the click was stored
    site.shop()
    tab.goto(site.url("/landing?rtid=X"))
    site.recorder.wait_for(lambda evs: len(evs) == 1)
    assert tab.stored()["c"] == "X"
    # when the customer withdraws consent for ads
    tab.js("() => roktEdge('consent', {ads: false})")
    # then the click id, cookie, ids and queue are gone; the decision stays
    assert tab.stored() == {"k": False}
    assert "rtid" not in tab.cookies()
    tab.goto(site.url("/checkout"))
    tab.page.click("#buy")
    tab.page.wait_for_timeout(400)
    assert len(site.recorder.posts()) == 1


def test_global_privacy_control_is_honoured(site: Site, new_tab: NewTab) -> None:
    # given a browser that sends the GPC signal
    tab = new_tab(GPC_ON)
    site.shop()
    # when its user lands from a Rokt ad and buys
    tab.goto(site.url("/landing?rtid=X"))
    tab.goto(site.url("/checkout"))
    tab.page.click("#buy")
    # then nothing is stored (the snippet's record is empty: no id, no click) and nothing is sent
    assert tab.js("() => localStorage.getItem('roktEdge')") == "{}"
    assert tab.cookies() == {}
    nothing_sent(site, tab)
    # even when a consent banner says yes: GPC wins
    tab.js("() => roktEdge('consent', {ads: true})")
    tab.js("() => roktEdge('track', 'Order Completed', {order_id: 'o2'})")
    nothing_sent(site, tab)
    assert tab.cookies() == {}
    assert "c" not in tab.stored()
    assert tab.page_errors == []


def test_gpc_with_consent_required_stores_and_sends_nothing_whatever_is_decided(
    site: Site, new_tab: NewTab
) -> None:
    # given a shop that needs consent, and a browser that sends the GPC signal
    tab = new_tab(GPC_ON)
    site.shop({"consent": "required"})
    tab.goto(site.url("/landing?rtid=X"))
    # then, before any decision, nothing is stored or sent
    assert tab.js("() => localStorage.getItem('roktEdge')") is None
    assert tab.cookies() == {}
    nothing_sent(site, tab)
    # and a yes from the banner changes nothing: GPC wins
    tab.js("() => roktEdge('consent', {ads: true})")
    tab.js("() => roktEdge('track', 'Order Completed', {order_id: 'o1'})")
    nothing_sent(site, tab)
    assert tab.cookies() == {}
    assert "c" not in tab.stored()
    assert tab.page_errors == []


def test_gpc_removes_what_was_stored_before_it_was_turned_on(site: Site, browser: Any) -> None:
    site.shop()
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(site.url("/landing?rtid=X"))
        site.recorder.wait_for(lambda evs: len(evs) == 1)
        # when the user turns GPC on
        context.add_init_script(GPC_ON)
        page.goto(site.url("/product"))
        # then the stored click is removed and nothing more is sent
        assert page.evaluate("() => localStorage.getItem('roktEdge')") == "{}"
        assert [c["name"] for c in context.cookies()] == []
        page.wait_for_timeout(400)
        assert len(site.recorder.posts()) == 1
    finally:
        context.close()
