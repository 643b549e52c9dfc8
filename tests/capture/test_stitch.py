"""Identity stitching: a server event borrows what the visitor's browser showed, and says so."""

from __future__ import annotations

from edge.capture.enrich import Enriched
from edge.capture.stitch import identity_keys
from edge.capture.stitch import stitch as stitch_at
from edge.events import Event, parse_event
from edge.store.values import Identity

SEEN = 1_700_000_000.0
BROWSER = Identity("CLICK-X", SEEN, "198.51.100.7", "Mozilla/5.0 (browser)", SEEN)
WINDOW = 30 * 86400.0


def stitch(event: Event, identity: Identity | None, now: float = SEEN + 60) -> Event:
    return stitch_at(event, identity, now, WINDOW).event


def order(**fields: object) -> dict[str, object]:
    return {"type": "track", "event": "Order Completed", "anonymousId": "A", **fields}


def test_what_the_event_lacks_comes_from_the_identity_store_and_is_recorded() -> None:
    stitched = stitch(parse_event(order()), BROWSER).body

    assert stitched["integrations"]["Rokt Conversions API"]["rtid"] == "CLICK-X"
    assert stitched["context"]["ip"] == "198.51.100.7"
    assert stitched["context"]["userAgent"] == "Mozilla/5.0 (browser)"
    assert stitched["context"]["rokt_edge"] == {
        "clickId": "identity", "ip": "identity", "userAgent": "identity"
    }  # fmt: skip


def test_what_the_event_carries_wins() -> None:
    own = order(
        context={"ip": "203.0.113.9", "page": {"url": "https://shop.example/?rtid=OWN"}},
    )
    stitched = stitch(parse_event(own), BROWSER).body

    assert "integrations" not in stitched
    assert stitched["context"]["ip"] == "203.0.113.9"
    assert stitched["context"]["rokt_edge"] == {
        "clickId": "event", "ip": "event", "userAgent": "identity"
    }  # fmt: skip


def test_an_unknown_visitor_gets_nothing_and_a_client_cannot_forge_the_record() -> None:
    forged = order(context={"rokt_edge": {"clickId": "identity"}})
    stitched = stitch(parse_event(forged), None).body

    assert stitched["context"] == {"rokt_edge": {}}


def test_the_original_event_is_left_as_it_came() -> None:
    event = parse_event(order())
    stitch(event, BROWSER)
    assert "integrations" not in event.body
    assert "ip" not in event.body.get("context", {})


def test_keys_of_an_events_ids() -> None:
    assert identity_keys(parse_event(order(userId="U"))) == ("a:A", "u:U")
    alias = parse_event({"type": "alias", "userId": "U", "previousId": "A"})
    assert identity_keys(alias) == ("u:U", "a:A", "u:A")


def test_the_browsers_click_counts_within_the_window_from_its_first_sighting() -> None:
    within = stitch_at(parse_event(order()), BROWSER, SEEN + WINDOW, WINDOW)
    assert within == Enriched(within.event, "CLICK-X", SEEN)

    late = stitch_at(parse_event(order()), BROWSER, SEEN + WINDOW + 1, WINDOW)
    assert (late.click_id, late.click_seen_at) == (None, None)
    assert "integrations" not in late.event.body


def test_the_events_own_click_past_the_window_from_its_first_sighting_is_taken_out() -> None:
    # Given a backend that kept the click id and sends it with an order long after the click
    own = order(integrations={"Rokt Conversions API": {"rtid": "CLICK-X"}})

    # When the browser showed that click more than the window ago
    late = stitch_at(parse_event(own), BROWSER, SEEN + WINDOW + 1, WINDOW)

    # Then the order carries no click id, and says why
    assert late.click_id is None
    assert late.event.body["integrations"]["Rokt Conversions API"] == {}
    assert late.event.body["context"]["rokt_edge"]["clickId"] == "expired"
