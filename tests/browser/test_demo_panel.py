"""The demo as a newcomer walks it in Chromium, on a dry-run edge: the inspect panel says what
each event was, and no page asks the edge for something it does not serve (the browser's icon
included)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from edge.demo import mask
from tests.browser.conftest import RealEdge, Tab

pytestmark = pytest.mark.browser

Start = Callable[..., RealEdge]
NewTab = Callable[..., Tab]
COLUMNS = ["When", "Source", "Type", "Name", "Click id", "Outcome", "Message id"]
# The rows of the panel's events table, each as {column: text}
ROWS = """() => {
  const columns = Array.from(document.querySelectorAll('#events th'), th => th.textContent);
  return Array.from(document.querySelectorAll('#events tbody tr'), row =>
    Object.fromEntries(Array.from(row.cells, (td, i) => [columns[i], td.textContent])));
}"""


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
