"""Enrichment: the edge adds the client IP, user agent and the click id it knows."""

from __future__ import annotations

from typing import Any

from edge.capture.cookies import Visitor
from edge.capture.enrich import Enriched, Known, cookie_click, enrich
from edge.events import parse_event

DAY = 86400.0
WINDOW = 900.0  # seconds: small, so that the tests' clicks can outlive it


NOBODY = Visitor()


def enriched(
    body: dict[str, Any], visitor: Visitor = NOBODY, known: Known | None = None
) -> Enriched:
    event = parse_event({"type": "track", "event": "Order Completed", "messageId": "m", **body})
    return enrich(
        event, ip="203.0.113.5", user_agent="UA/1", visitor=visitor, known=known, now=1000.0,
        window=WINDOW,
    )  # fmt: skip


def test_ip_and_user_agent_come_from_the_request_and_override_the_body() -> None:
    result = enriched({"context": {"ip": "6.6.6.6", "userAgent": "spoofed"}})
    assert result.event.body["context"]["ip"] == "203.0.113.5"
    assert result.event.body["context"]["userAgent"] == "UA/1"


def test_the_events_own_click_id_is_kept_and_dated_now() -> None:
    result = enriched({"context": {"page": {"search": "?rtid=X"}}})
    assert (result.click_id, result.click_seen_at) == ("X", 1000.0)
    assert result.event.body["context"]["rokt_edge"]["clickId"] == "event"


def test_a_known_click_fills_an_event_without_one() -> None:
    result = enriched({}, known=Known("X", 500.0, "cookie"))
    assert result.event.body["integrations"]["Rokt Conversions API"]["rtid"] == "X"
    assert (result.click_id, result.click_seen_at) == ("X", 500.0)
    assert result.event.body["context"]["rokt_edge"] == {
        "ip": "request",
        "userAgent": "request",
        "clickId": "cookie",
    }


def test_the_same_click_seen_again_keeps_its_first_sighting() -> None:
    result = enriched(
        {"context": {"page": {"search": "?rtid=X"}}}, known=Known("X", 500.0, "cookie")
    )
    assert result.click_seen_at == 500.0


def test_a_newer_click_replaces_the_known_one() -> None:
    result = enriched(
        {"context": {"page": {"search": "?rtid=NEW"}}}, known=Known("OLD", 5.0, "cookie")
    )
    assert (result.click_id, result.click_seen_at) == ("NEW", 1000.0)


def test_the_cookies_anonymous_id_fills_an_event_without_one() -> None:
    result = enriched({}, visitor=Visitor(anonymous_id="anon-c"))
    assert result.event.body["anonymousId"] == "anon-c"
    assert enriched({"anonymousId": "mine"}, Visitor("anon-c")).event.body["anonymousId"] == "mine"


def test_the_original_event_is_not_changed() -> None:
    event = parse_event({"type": "page", "integrations": {"Rokt Conversions API": True}})
    result = enrich(
        event,
        ip="1.2.3.4",
        user_agent=None,
        visitor=Visitor(),
        known=Known("X", 1, "identity"),
        now=2,
        window=DAY,
    )
    assert event.body["integrations"] == {"Rokt Conversions API": True}
    assert result.event.body["integrations"]["Rokt Conversions API"] == {"rtid": "X"}


def test_the_cookies_click_is_known_whatever_its_age() -> None:
    # The window is judged where the click is used (`click_of`), from its first sighting
    assert cookie_click(Visitor("a", "from-cookie", 900)) == Known("from-cookie", 900.0, "cookie")
    assert cookie_click(Visitor("a", "c", None)) is None
    assert cookie_click(Visitor("a")) is None


def test_a_known_click_counts_only_within_the_window_from_its_first_sighting() -> None:
    assert enriched({}, known=Known("X", 1000.0 - WINDOW, "cookie")).click_id == "X"

    late = enriched({}, known=Known("X", 999.0 - WINDOW, "cookie"))
    assert (late.click_id, late.click_seen_at) == (None, None)
    assert "integrations" not in late.event.body
    assert "clickId" not in late.event.body["context"]["rokt_edge"]


def test_the_events_own_click_past_the_window_from_its_first_sighting_is_taken_out() -> None:
    # Given a click first seen longer ago than the window, which the event carries again (the
    # snippet attaches its stored click to every event, and the landing URL may be revisited)
    page = {"url": "https://shop.example/p?utm=a&rtid=X#top", "search": "?utm=a&rtid=X"}
    result = enriched(
        {"integrations": {"Rokt Conversions API": {"rtid": "X", "keep": 1}},
         "context": {"page": page}},
        known=Known("X", 999.0 - WINDOW, "cookie"),
    )  # fmt: skip

    # Then the event carries no click id any more, nowhere a mapping would read one
    assert (result.click_id, result.click_seen_at) == (None, None)
    body = result.event.body
    assert body["integrations"]["Rokt Conversions API"] == {"keep": 1}
    assert body["context"]["page"] == {
        "url": "https://shop.example/p?utm=a#top",
        "search": "?utm=a",
    }
    assert body["context"]["rokt_edge"]["clickId"] == "expired"


def test_a_click_id_that_is_not_a_value_is_no_click_id() -> None:
    # An object where the plugin's rtid belongs must not become the click id "{'bad': 1}",
    # remembered in the cookie and the identity store and sent with the visitor's next events.
    result = enriched(
        {"integrations": {"Rokt Conversions API": {"rtid": {"bad": 1}}}},
        known=Known("X", 500.0, "cookie"),
    )
    assert (result.click_id, result.click_seen_at) == ("X", 500.0)
    assert result.event.body["integrations"]["Rokt Conversions API"]["rtid"] == "X"

    alone = enriched({"integrations": {"Rokt Conversions API": {"rtid": ["bad"]}}})
    assert (alone.click_id, alone.click_seen_at) == (None, None)
