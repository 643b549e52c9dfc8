"""A shop that already runs Segment's analytics.js points its `apiHost` at the edge: the real
library (installed from npm by `make browser-setup`) in a real Chromium, through the shop's proxy
to the running edge, delivering to the fake Rokt. The shopper lands from a Rokt ad with `?rtid`,
and converts on a later page whose URL has none."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.clients.harness import Batching, SegmentPages, chromium, open_analytics
from tests.fake_capi import FakeCapi
from tests.live import LiveEdge, serve, wait_for
from tests.shop import SHOPPER_IP, WRITE_KEY, database, delivered, shop_settings

if TYPE_CHECKING:
    from playwright.sync_api import Browser

pytestmark = pytest.mark.browser

ORDER = {"order_id": "o-ajs", "revenue": 12.5, "currency": "USD"}


class ShopProxy:
    """The shop's reverse proxy in front of the edge: it says whom the request came from."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            forwarded = (b"x-forwarded-for", SHOPPER_IP.encode())
            scope = {**scope, "headers": [*scope["headers"], forwarded]}
        await self.app(scope, receive, send)


@pytest.fixture(scope="module")
def chrome() -> Iterator[Browser]:
    with chromium() as browser:
        yield browser


def settings_for(tmp_path: Path, fake: FakeCapi, **values: Any) -> Any:
    # The proxy (on loopback, in this process) is trusted; a test's browser is one fast client.
    proxy = (ipaddress.ip_network("127.0.0.1/32"),)
    return shop_settings(tmp_path, fake, trusted_proxies=proxy, client_rate_limit=0, **values)


def clicked(settings: Any, click_id: str) -> bool:
    """The edge has processed the landing page's call: its identity store knows the click."""
    with database(settings) as db:
        rows = db.execute("SELECT 1 FROM identities WHERE click_id = ?", (click_id,)).fetchall()
    return bool(rows)


def test_analytics_js_under_the_shops_own_origin_carries_the_click_to_rokt(
    chrome: Browser, tmp_path: Path, fake: FakeCapi
) -> None:
    settings = settings_for(tmp_path, fake)
    pages = SegmentPages()

    def wrap(app: Any) -> SegmentPages:
        pages.app = ShopProxy(app)
        return pages

    with LiveEdge(settings, wrap=wrap) as live:
        # Given a shop whose pages run analytics.js with apiHost = this origin + /v1
        api = live.url + "/v1"
        pages.page("/landing", write_key=WRITE_KEY, api=api, page_view=True)
        pages.page("/checkout", write_key=WRITE_KEY, api=api)

        # When a shopper lands from a Rokt ad and orders on a later page
        with open_analytics(chrome, live.url + "/landing?rtid=CLICK-AJS") as tab:
            wait_for(lambda: clicked(settings, "CLICK-AJS"))
            tab.goto(live.url + "/checkout")
            tab.call("track", "Order Completed", ORDER)
            wait_for(lambda: delivered(fake))
            user_agent = tab.js("() => navigator.userAgent")
            cookies = {cookie["name"] for cookie in tab.context.cookies()}

    # Then Rokt receives the order with the click, the shopper's forwarded IP address and the
    # browser's user agent; and the edge's own visitor cookie was set (first party)
    [batch] = delivered(fake)
    assert batch["integration_attributes"]["1277"]["passbackconversiontrackingid"] == "CLICK-AJS"
    assert batch["ip"] == SHOPPER_IP
    assert batch["device_info"]["http_header_user_agent"] == user_agent
    assert batch["events"][0]["data"]["custom_attributes"]["confirmationref"] == "o-ajs"
    assert settings.cookie_name in cookies


@pytest.mark.parametrize("batching", [None, Batching(size=10, timeout_ms=300)])
def test_analytics_js_on_another_origin_carries_the_click_to_rokt(
    chrome: Browser, tmp_path: Path, fake: FakeCapi, batching: Batching | None
) -> None:
    pages = SegmentPages()
    with serve(pages) as shop:
        # Given an edge on its own origin that allows the shop's, behind the shop's proxy
        settings = settings_for(tmp_path, fake, allowed_origins=(shop,))
        with LiveEdge(settings, wrap=ShopProxy) as live:
            api = live.url + "/v1"
            pages.page("/landing", write_key=WRITE_KEY, api=api, batching=batching, page_view=True)
            pages.page("/checkout", write_key=WRITE_KEY, api=api, batching=batching)

            # When a shopper lands from a Rokt ad and orders on a later page
            with open_analytics(chrome, shop + "/landing?rtid=CLICK-X-ORIGIN") as tab:
                wait_for(lambda: clicked(settings, "CLICK-X-ORIGIN"))
                tab.goto(shop + "/checkout")
                tab.call("track", "Order Completed", ORDER)
                wait_for(lambda: delivered(fake))
                user_agent = tab.js("() => navigator.userAgent")
                cookies = {cookie["name"] for cookie in tab.context.cookies()}

    # Then the order reaches Rokt with the click (found by analytics.js's anonymous id), the
    # forwarded IP address and the user agent; no cookie of the edge's was set on the shop
    [batch] = delivered(fake)
    assert batch["integration_attributes"]["1277"]["passbackconversiontrackingid"] == (
        "CLICK-X-ORIGIN"
    )
    assert batch["ip"] == SHOPPER_IP
    assert batch["device_info"]["http_header_user_agent"] == user_agent
    assert settings.cookie_name not in cookies


def test_an_origin_the_edge_does_not_allow_gets_no_cors_answer_and_stores_nothing(
    chrome: Browser, tmp_path: Path, fake: FakeCapi
) -> None:
    pages = SegmentPages()
    with serve(pages) as shop:
        settings = settings_for(tmp_path, fake, allowed_origins=("https://other.example",))
        with LiveEdge(settings) as live:
            pages.page("/landing", write_key=WRITE_KEY, api=live.url + "/v1", page_view=True)
            with open_analytics(chrome, shop + "/landing?rtid=CLICK-NO") as tab:
                refused = tab.js(
                    """async (url) => {
                        try { await fetch(url, {method: 'POST', body: '{}',
                                                headers: {authorization: 'Basic eDo='}}) }
                        catch (e) { return 'blocked' }
                        return 'answered' }""",
                    live.url + "/v1/t",
                )
            live.processed()
    assert refused == "blocked"
    assert not clicked(settings, "CLICK-NO")
