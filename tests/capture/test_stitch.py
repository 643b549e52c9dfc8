"""Identity stitching: a server event borrows what the visitor's browser showed, and says so."""

from __future__ import annotations

from edge.capture.stitch import identity_keys, linked, needs_identity, stitch
from edge.events import parse_event
from edge.store.base import Identity, IdentityUpdate

BROWSER = Identity("CLICK-X", 1_700_000_000.0, "198.51.100.7", "Mozilla/5.0 (browser)", 1.7e9)


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


def test_keys_and_when_a_look_up_is_needed() -> None:
    assert identity_keys(parse_event(order(userId="U"))) == ("a:A", "u:U")
    alias = parse_event({"type": "alias", "userId": "U", "previousId": "A"})
    assert identity_keys(alias) == ("u:U", "a:A", "u:A")
    complete = order(context={"ip": "1.2.3.4", "userAgent": "x"},
                     integrations={"Rokt Conversions API": {"rtid": "R"}})  # fmt: skip
    assert needs_identity(parse_event(complete)) is False
    assert needs_identity(parse_event(order())) is True


def test_an_event_naming_two_ids_links_them() -> None:
    identify = parse_event({"type": "identify", "anonymousId": "A", "userId": "U"})

    assert linked(identify, BROWSER) == IdentityUpdate(
        ("a:A", "u:U"), "CLICK-X", 1_700_000_000.0, "198.51.100.7", "Mozilla/5.0 (browser)"
    )
    assert linked(identify, None) is None
    assert linked(parse_event(order()), BROWSER) is None
