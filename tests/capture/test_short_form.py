"""The snippet's short form expands to the Segment-shaped event the old snippet sent."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.capture.short_form import _plain_split, expand
from edge.events import EventError, parse_event
from edge.settings import Settings
from tests.live import LiveEdge

ROKT = "Rokt Conversions API"
PAGE = {"l": "https://shop.example/checkout?step=2#pay", "r": "https://shop.example/cart"}


def short(**fields: Any) -> dict[str, Any]:
    """A short-form event as the snippet sends it: ids, time and page around the given fields."""
    return {
        "a": "anon-1",
        "m": "msg-1",
        "s": 1738324800123,
        "h": "Checkout",
        **PAGE,
        **fields,
    }


def test_an_order_expands_to_segment_s_shape_with_the_click_for_rokt() -> None:
    # given the conversion the snippet sends on a checkout page
    raw = short(t="track", n="Order Completed", p={"order_id": "o1", "revenue": 10}, u="u1", c="X")
    # when the edge expands it
    event = expand(raw)
    # then it is the event analytics.js would have sent, path and search taken from the URL
    assert event == {
        "type": "track",
        "event": "Order Completed",
        "properties": {"order_id": "o1", "revenue": 10},
        "userId": "u1",
        "anonymousId": "anon-1",
        "messageId": "msg-1",
        "timestamp": "2025-01-31T12:00:00.123Z",
        "context": {
            "page": {
                "url": "https://shop.example/checkout?step=2#pay",
                "path": "/checkout",
                "search": "?step=2",
                "referrer": "https://shop.example/cart",
                "title": "Checkout",
            }
        },
        "integrations": {ROKT: {"rtid": "X"}},
    }
    # and the pipeline accepts it as it is
    assert parse_event(event).body == event


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"t": "page"}, {}),
        ({"t": "page", "n": "Home", "p": {"a": 1}}, {"name": "Home", "properties": {"a": 1}}),
        ({"t": "page", "n": {"a": 1}}, {"properties": {"a": 1}}),
        ({"t": "screen", "n": "Home"}, {"name": "Home"}),
        ({"t": "track", "n": "Signed Up"}, {"event": "Signed Up"}),
        (
            {"t": "group", "n": "acme", "p": {"plan": "pro"}},
            {"groupId": "acme", "traits": {"plan": "pro"}},
        ),
        # identify and alias: the call's id is the userId; u is the one known until now
        ({"t": "identify", "n": "u2", "u": "u1"}, {"userId": "u2"}),
        (
            {"t": "identify", "n": {"plan": "pro"}, "u": "u1"},
            {"userId": "u1", "traits": {"plan": "pro"}},
        ),
        ({"t": "alias", "n": "u2", "u": "u1"}, {"userId": "u2", "previousId": "u1"}),
        ({"t": "alias", "n": "u2"}, {"userId": "u2", "previousId": "anon-1"}),
        ({"t": "alias", "n": "u2", "p": "old", "u": "u1"}, {"userId": "u2", "previousId": "old"}),
    ],
)
def test_each_call_s_arguments_land_in_segment_s_fields(
    fields: dict[str, Any], expected: dict[str, Any]
) -> None:
    event = expand({"a": "anon-1", **fields})
    named = {k: v for k, v in event.items() if k not in ("type", "anonymousId")}
    assert event["type"] == fields["t"]
    assert named == expected


def test_absent_and_null_fields_are_left_out() -> None:
    # given a page event without a click, a user, a referrer, or a name (null)
    event = expand({"t": "page", "n": None, "a": "anon-1", "l": "https://shop.example"})
    # then only what was there is set; a bare origin has the path "/"
    assert event == {
        "type": "page",
        "anonymousId": "anon-1",
        "context": {"page": {"url": "https://shop.example", "path": "/", "search": ""}},
    }


@pytest.mark.parametrize(
    "raw",
    [
        {"type": "track", "event": "Order Completed", "t": "kept as a property of its own"},
        {"type": "page", "properties": {"t": 1}},
        {"event": "Order Completed"},
        [{"t": "page"}],
        "t",
        None,
    ],
)
def test_anything_but_the_short_form_passes_through_untouched(raw: Any) -> None:
    assert expand(raw) is raw


@pytest.mark.parametrize(
    ("raw", "field", "words"),
    [
        ({"t": "page", "x": 1, "type_": 2}, "", "unknown keys ['type_', 'x']"),
        ({"t": "page", "s": "2025-01-31T12:00:00Z"}, "timestamp", "epoch milliseconds"),
        ({"t": "page", "s": True}, "timestamp", "epoch milliseconds"),
        ({"t": "page", "s": -1}, "timestamp", "epoch milliseconds"),
        ({"t": "page", "s": 1e300}, "timestamp", "epoch milliseconds"),
        ({"t": "page", "l": 5}, "context.page.url", "must be a string"),
        ({"t": "page", "l": "http://["}, "context.page.url", "not a URL"),
    ],
)
def test_what_the_short_form_forbids_is_an_error_naming_the_event_and_field(
    raw: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(EventError) as caught:
        expand(raw, 3)
    assert caught.value.field == field
    assert caught.value.index == 3
    assert str(caught.value).startswith("event 3: ")
    assert words in str(caught.value)


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"t": "click"}, "type"),
        ({"t": None}, "type"),
        ({"t": "track"}, "event"),
        ({"t": "page", "a": {"id": 1}}, "anonymousId"),
        ({"t": "identify", "n": True}, "userId"),
        ({"t": "alias", "n": "u2", "p": ["x"]}, "previousId"),
        ({"t": "track", "n": "E", "p": "not an object"}, "properties"),
    ],
)
def test_everything_else_is_checked_by_parse_event_naming_the_segment_field(
    raw: dict[str, Any], field: str
) -> None:
    # given a short-form event the expander accepts but whose values are wrong
    event = expand(raw, 1)
    # then the pipeline's own check refuses it and names the Segment field
    with pytest.raises(EventError) as caught:
        parse_event(event, 1)
    assert caught.value.field == field


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


@given(st.dictionaries(st.sampled_from([*"tnpuacmslrh", "x"]), JSON))
def test_any_short_form_input_expands_or_is_refused_with_an_event_error(
    raw: dict[str, Any],
) -> None:
    raw["t"] = raw.get("t", "page")
    with contextlib.suppress(EventError):  # a refusal is fine; any other exception fails
        parse_event(expand(raw, 0), 0)


def test_the_beacon_takes_short_form_and_segment_events_side_by_side(tmp_path: Path) -> None:
    # given a running edge (dry run: no Rokt credentials)
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'edge.db'}", poll_interval=0.05)
    with LiveEdge(settings) as live:
        # when one body mixes a short-form event, a Segment event and a bad short-form event
        body = [
            short(t="track", n="Order Completed", p={"order_id": "o1"}, c="X"),
            {"type": "page", "anonymousId": "anon-2"},
            short(t="page", s="yesterday"),
        ]
        response = httpx.post(
            live.url + "/e", content=json.dumps(body), headers={"content-type": "text/plain"}
        )
    # then both good events are stored, and the bad one is named by index and Segment field
    assert response.status_code == 200
    assert response.json()["accepted"] == 2
    [problem] = response.json()["errors"]
    assert problem["event"] == 2
    assert problem["field"] == "timestamp"
    assert "epoch milliseconds" in problem["message"]


@given(
    scheme=st.sampled_from(["https://", "http://"]),
    rest=st.text(st.sampled_from(list("ab/?#:.=&%@x1")), max_size=24),
)
def test_the_quick_url_split_agrees_with_urlsplit(scheme: str, rest: str) -> None:
    # given a page URL of the characters that matter to splitting
    url = scheme + rest
    try:
        parts = urlsplit(url)
    except ValueError:
        return  # not a URL: the slow path reports it
    # then the quick split, when it takes the URL, finds the path and query urlsplit finds
    quick = _plain_split(url)
    if quick is not None:
        assert quick == {
            "path": parts.path or "/",
            "search": f"?{parts.query}" if parts.query else "",
        }
