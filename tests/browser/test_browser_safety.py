"""The snippet never breaks its host page, and lives beside Segment's analytics.js."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from tests.browser.conftest import ROKT, STUB, Site, Tab

pytestmark = pytest.mark.browser

NewTab = Callable[..., Tab]

# Safari's private mode and sandboxed frames: storage and cookies throw on access.
HOSTILE_STORAGE = """
(() => {
  const boom = () => { throw new DOMException('storage is off', 'SecurityError') };
  Object.defineProperty(window, 'localStorage', {get: boom, configurable: true});
  Object.defineProperty(Document.prototype, 'cookie', {get: boom, set: boom, configurable: true});
})();
"""

EVERY_CALL = """() => {
  roktEdge('page');
  roktEdge('page', 'Home', {a: 1});
  roktEdge('track', 'Order Completed', {order_id: 'o1', revenue: 10});
  roktEdge('identify', 'u1', {email: 'a@example.com'});
  roktEdge('group', 'g1', {plan: 'pro'});
  roktEdge('alias', 'u2');
  roktEdge('consent', {ads: true});
  roktEdge('consent', {ads: false});
  roktEdge('consent', {ads: true});
  roktEdge('consent');
  roktEdge('consent', null);
  roktEdge('unknown', 1, 2);
  roktEdge();
  roktEdge(null, undefined, {});
  dispatchEvent(new PageTransitionEvent('pagehide'));
  return window.__errors;
}"""


def test_throwing_storage_never_reaches_the_page(site: Site, new_tab: NewTab) -> None:
    # given a browser where localStorage and document.cookie throw
    tab = new_tab(HOSTILE_STORAGE)
    site.shop()
    # when the snippet loads and every API is called
    tab.goto(site.url("/landing?rtid=X"))
    assert tab.js("() => { try { localStorage; return false } catch (e) { return true } }")
    assert tab.js("() => { try { document.cookie; return false } catch (e) { return true } }")
    errors = tab.js(EVERY_CALL)
    # then the page's own error handlers saw nothing, and no error went uncaught
    assert errors == []
    assert tab.page_errors == []
    # and events still go out, with the click id and an anonymous id kept in memory
    events = site.recorder.wait_for(lambda evs: len(evs) >= 7)
    assert {e["integrations"][ROKT]["rtid"] for e in events} == {"X"}
    assert len({e["anonymousId"] for e in events}) == 1


def test_every_call_on_a_normal_page_raises_nothing(site: Site, tab: Tab) -> None:
    site.shop({"consent": "required"})
    tab.goto(site.url("/landing?rtid=X"))
    assert tab.js(EVERY_CALL) == []


def test_ids_fall_back_when_crypto_random_uuid_is_missing(site: Site, new_tab: NewTab) -> None:
    # crypto.randomUUID exists only in secure contexts: plain-http shops lack it
    tab = new_tab("delete Crypto.prototype.randomUUID")
    site.shop()
    tab.goto(site.url("/landing?rtid=X"))
    (event,) = site.recorder.wait_for(lambda evs: len(evs) == 1)
    uuid4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
    assert uuid4.match(event["messageId"])
    assert uuid4.match(event["anonymousId"])
    assert event["messageId"] != event["anonymousId"]


def test_no_global_is_added_but_roktedge(site: Site, tab: Tab) -> None:
    # given a page without the snippet
    tab.page.route("**/bare", lambda route: route.fulfill(body="<!doctype html><p>bare</p>"))
    tab.goto(site.url("/bare"))
    before = tab.js("() => Object.getOwnPropertyNames(window)")
    # when the merchant installs it: the stub, then the script
    tab.js(
        """(stub) => new Promise((resolve, reject) => {
        document.head.insertAdjacentHTML('beforeend', stub);
        eval(document.head.lastElementChild.textContent);
        const s = document.createElement('script');
        s.src = '/rokt-edge.js';
        s.onload = resolve;
        s.onerror = reject;
        document.head.appendChild(s);
        })""",
        STUB,
    )
    site.recorder.wait_for(lambda evs: len(evs) == 1)
    # then roktEdge is the only new global
    after = tab.js("() => Object.getOwnPropertyNames(window)")
    assert set(after) - set(before) == {"roktEdge"}


FAKE_SEGMENT = """
window.analytics = {
  sent: [],
  middlewares: [],
  addSourceMiddleware(fn) { this.middlewares.push(fn) },
  track(event, integrations) {
    const chain = this.middlewares.slice();
    const next = (payload) => {
      const mw = chain.shift();
      if (mw) mw({payload, next, integrations: {}});
      else this.sent.push(payload.obj);
    };
    next({obj: {type: 'track', event, integrations: integrations || {}}});
  },
};
"""


def test_segment_events_get_the_click_id(site: Site, tab: Tab) -> None:
    # given Segment's analytics.js on the page before the snippet
    site.page("/landing", head=f"<script>{FAKE_SEGMENT}</script>")
    tab.goto(site.url("/landing?rtid=X"))
    # when the page tracks through Segment
    sent = tab.js(
        """() => {
        analytics.track('Order Completed');
        analytics.track('Opted Out', {'Rokt Conversions API': false});
        analytics.track('Configured', {'Rokt Conversions API': {other: 1}});
        return analytics.sent;
        }"""
    )
    # then the middleware adds the click id, as Segment's Rokt browser plugin does
    assert sent[0]["integrations"] == {ROKT: {"rtid": "X"}}
    # and leaves an event that turns Rokt off alone, and keeps other settings
    assert sent[1]["integrations"] == {ROKT: False}
    assert sent[2]["integrations"] == {ROKT: {"other": 1, "rtid": "X"}}


def test_segment_loaded_after_the_snippet_is_hooked_when_ready(site: Site, tab: Tab) -> None:
    # given a Segment stub with ready() only: analytics.js arrives later
    stub = "<script>window.analytics = {ready(cb) { this.cb = cb }}</script>"
    site.page("/landing", head=stub)
    tab.goto(site.url("/landing?rtid=X"))
    # when analytics.js loads and calls its ready callbacks
    sent = tab.js(
        """(segment) => {
        const cb = analytics.cb;
        window.analytics = undefined;
        eval(segment);
        cb();
        analytics.track('Order Completed');
        return analytics.sent;
        }""",
        FAKE_SEGMENT,
    )
    assert sent[0]["integrations"] == {ROKT: {"rtid": "X"}}


def test_segment_events_get_no_click_id_without_consent(site: Site, tab: Tab) -> None:
    site.page("/landing", attrs={"consent": "required"}, head=f"<script>{FAKE_SEGMENT}</script>")
    tab.goto(site.url("/landing?rtid=X"))
    sent = tab.js("() => { analytics.track('Order Completed'); return analytics.sent }")
    assert sent[0]["integrations"] == {}
