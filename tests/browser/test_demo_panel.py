"""The demo as a newcomer walks it in Chromium, on a dry-run edge: the inspect panel says what
each event was, a phone reads every page without scrolling sideways, and no page asks the edge
for something it does not serve (the browser's icon included)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from edge.demo import mask
from tests.browser.conftest import WATCH_ERRORS, RealEdge, Tab
from tests.live import wait_for

pytestmark = pytest.mark.browser

Start = Callable[..., RealEdge]
NewTab = Callable[..., Tab]
PHONE: Any = {"width": 390, "height": 844}  # an iPhone 12 to 15's screen, in CSS pixels
COLUMNS = ["When", "Source", "Type", "Name", "Click id", "Outcome", "Message id"]
# The rows of the panel's events table, each as {column: text}
ROWS = """() => {
  const columns = Array.from(document.querySelectorAll('#events th'), th => th.textContent);
  return Array.from(document.querySelectorAll('#events tbody tr'), row =>
    Object.fromEntries(Array.from(row.cells, (td, i) => [columns[i], td.textContent])));
}"""


@pytest.fixture
def phone_tab(browser: Any) -> Iterator[Tab]:
    """A tab in a phone's browser: 390 CSS pixels wide, touch, the page's viewport tag obeyed."""
    context = browser.new_context(
        viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True
    )
    context.add_init_script(WATCH_ERRORS)
    tab = Tab(context.new_page())
    tab.page.set_default_timeout(10_000)
    try:
        yield tab
        assert tab.page_errors == [], f"uncaught errors on the page: {tab.page_errors}"
    finally:
        context.close()


def walk(
    tab: Tab, edge: RealEdge, shown: Callable[[str], None] = lambda name: None
) -> tuple[str, str]:
    """The walk-through the landing page offers: a sample Rokt ad click, the product, an order
    with an email, then the panel. Returns the click id and the order id. `shown(name)` is
    called on each page as it is shown (a test looks at each)."""

    def arrive(path: str, action: Callable[[], None]) -> None:
        with tab.page.expect_navigation(url=f"**{path}", wait_until="load"):
            action()
        shown(path.strip("/*?").replace("/", "-").replace("?rtid=DEMO-", "-click"))

    tab.goto(edge.url + "/demo")
    shown("demo")
    arrive("/demo?rtid=DEMO-*", lambda: tab.page.click("#sample"))
    rtid = str(tab.js("() => new URLSearchParams(location.search).get('rtid')"))
    arrive("/demo/product", lambda: tab.page.click("#to-product"))
    arrive("/demo/checkout", lambda: tab.page.click("#to-checkout"))
    tab.page.fill("#email", "shopper@example.com")
    order_id = tab.page.input_value("#order-id")
    arrive("/demo/inspect", lambda: tab.page.click("#buy"))
    return rtid, order_id


RECORDED = "recorded in dry run (not sent) (mapping Send)"


def rows_once_ordered(tab: Tab) -> list[dict[str, str]]:
    """The panel's rows, once they show the order recorded as the request Rokt would get (the
    panel polls every second; the sender records the order a moment after it is received)."""
    tab.page.wait_for_selector(f"#events td:text-is('{RECORDED}')", timeout=10_000)
    return list(tab.js(ROWS))


def test_the_panel_says_what_each_event_was_where_it_came_from_and_its_click(
    start_edge: Start, edge_tab: NewTab
) -> None:
    # Given a dry-run edge, and a newcomer who walks the demo from a sample ad click to an order
    edge = start_edge(api_key=None, api_secret=None)
    tab = edge_tab()
    rtid, _ = walk(tab, edge)

    # Then the panel's events table has a column for each thing a newcomer asks of an event
    headers = tab.js(
        "() => Array.from(document.querySelectorAll('#events th'), th => th.textContent)"
    )
    assert headers == COLUMNS
    rows = rows_once_ordered(tab)
    click = mask(rtid, "click_id")

    # and each row says what the event was: a page view by its page, a track call by its name,
    # all from the snippet's beacon, each with the sample click (masked, as the panel shows it)
    def row(kind: str, name: str) -> dict[str, str]:
        [found] = [r for r in rows if (r["Type"], r["Name"], r["Click id"]) == (kind, name, click)]
        return found

    product_viewed = row("track", "Product Viewed")
    order = row("track", "Order Completed")
    for event in (row("page", "/demo"), row("page", "/demo/product"), product_viewed, order):
        assert event["Source"] == "beacon"
        assert event["Click id"] == click
    assert product_viewed["Outcome"].startswith("skipped: not triggered")
    assert order["Outcome"] == RECORDED

    # And the message id is folded into a detail a curious newcomer can open
    first = tab.page.locator("#events tbody tr details").first
    assert first.evaluate("details => details.open") is False
    first.locator("summary").click()
    message_id = first.locator("code").text_content()
    assert message_id is not None
    assert len(message_id) == 36  # the snippet's UUID
    assert first.locator("summary").text_content() == message_id[:8] + "…"


def test_a_phone_reads_every_demo_page_without_scrolling_sideways(
    start_edge: Start, phone_tab: Tab, tmp_path: Path
) -> None:
    # Given a dry-run edge, and a newcomer on a phone 390 CSS pixels wide
    edge = start_edge(api_key=None, api_secret=None)

    # When they walk the demo to the panel, which fills with what the edge received (each page
    # looked at, and photographed, as it is shown)
    def fits(name: str) -> None:
        width = phone_tab.js("() => document.documentElement.scrollWidth")
        assert width <= PHONE["width"], f"{phone_tab.page.url} is {width} px wide"
        phone_tab.page.screenshot(path=tmp_path / f"{name}.png", full_page=True)

    walk(phone_tab, edge, fits)
    rows = rows_once_ordered(phone_tab)
    wait_for(lambda: phone_tab.page.text_content("#requests"))
    fits("demo-inspect-filled")

    # Then no page was wider than the screen (above), and the panel's rows are stacked as
    # cards, each line headed by its column's name
    assert len(rows) >= 5
    assert (
        phone_tab.js("() => getComputedStyle(document.querySelector('#events thead')).display")
        == "none"
    )
    label = "() => getComputedStyle(document.querySelector('#events td'), '::before').content"
    assert phone_tab.js(label) == '"When"'

    # And the edge's own page fits the phone too
    phone_tab.goto(edge.url + "/")
    fits("home")


def test_no_demo_page_asks_the_edge_for_what_it_does_not_serve(
    start_edge: Start, edge_tab: NewTab
) -> None:
    # Given a dry-run edge, and a newcomer who walks the demo
    edge = start_edge(api_key=None, api_secret=None)
    tab = edge_tab()
    walk(tab, edge)
    rows_once_ordered(tab)

    # Then every request the pages made was answered (no 404 for an icon or anything else)
    failed = [seen for seen in edge.log.seen if seen.status >= 400]
    assert failed == []

    # And the icon a browser shows in the tab is one Chromium can draw
    size = tab.js(
        """() => new Promise(done => {
          const icon = new Image();
          icon.onload = () => done([icon.naturalWidth, icon.naturalHeight]);
          icon.onerror = () => done(null);
          icon.src = '/favicon.ico';
        })"""
    )
    assert size == [16, 16]
