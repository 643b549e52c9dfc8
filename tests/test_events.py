"""The canonical event: what is accepted, what is refused (and how it is said), what is added."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from edge.events import ArrivalDefaults, EventError, parse_event, parse_timestamp


def test_a_minimal_track_gets_a_message_id_and_a_timestamp() -> None:
    event = parse_event(
        {"type": "track", "event": "Signup"},
        now=lambda: datetime(2024, 1, 18, 12, 0, tzinfo=UTC),
        new_id=lambda: "generated-1",
    )
    assert event.message_id == "generated-1"
    assert event.body["timestamp"] == "2024-01-18T12:00:00.000Z"
    assert event.timestamp_ms == 1705579200000


def test_generated_message_ids_are_unique() -> None:
    first = parse_event({"type": "page"})
    second = parse_event({"type": "page"})
    assert first.message_id != second.message_id


def test_a_given_message_id_is_kept_and_ids_given_as_numbers_become_text() -> None:
    event = parse_event({"type": "identify", "messageId": "m-1", "userId": 42})
    assert event.message_id == "m-1"
    assert event.body["userId"] == "42"


def test_the_callers_data_is_not_changed() -> None:
    raw: dict[str, Any] = {"type": "page", "context": {"page": None}}
    parse_event(raw)
    assert raw == {"type": "page", "context": {"page": None}}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([], "event 3: must be a JSON object, got an array"),
        (
            {},
            "event 3: type: must be one of track, identify, page, screen, group, alias; "
            "found missing",
        ),
        (
            {"type": "click"},
            "event 3: type: must be one of track, identify, page, screen, "
            "group, alias; found 'click'",
        ),
        ({"type": "track"}, "event 3: event: a track call needs a non-empty event name"),
        ({"type": "track", "event": "  "}, "event 3: event: a track call needs a non-empty"),
        (
            {"type": "page", "properties": "x"},
            "event 3: properties: must be an object, got a string",
        ),
        (
            {"type": "page", "context": {"page": []}},
            "event 3: context.page: must be an object, got an array",
        ),
        ({"type": "page", "userId": {"a": 1}}, "event 3: userId: must be a string, got an object"),
        (
            {"type": "page", "timestamp": "yesterday"},
            "event 3: timestamp: 'yesterday' is neither "
            "an ISO 8601 time nor epoch seconds or milliseconds",
        ),
    ],
)
def test_a_bad_event_names_the_event_and_the_field(raw: Any, message: str) -> None:
    with pytest.raises(EventError) as raised:
        parse_event(raw, 3)
    assert str(raised.value).startswith(message)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-01-18T12:00:00.000Z", 1705579200000),
        ("2024-01-18T14:00:00+02:00", 1705579200000),
        ("2024-01-18T12:00:00", 1705579200000),  # naive times are UTC
        ("2024-01-18", 1705536000000),
        (1705579200, 1705579200000),  # epoch seconds
        (1705579200.5, 1705579200500),
        (1705579200000, 1705579200000),  # epoch milliseconds
        ("1705579200000", 1705579200000),
        ("1705579200", 1705579200000),
        ("soon", None),
        (True, None),
        (-5, None),
        (float("nan"), None),
        (1e300, None),  # past any date: would overflow the store's 64-bit integer
        ("1e30", None),
        ("1.0e-5", 0),  # a number, though shaped like the start of a date
        (10**20, None),
    ],
)
def test_timestamps_are_iso_or_epoch_seconds_or_milliseconds(value: Any, expected: int) -> None:
    assert parse_timestamp(value) == expected


# The edge received these events at 2024-01-18T12:00:00.000Z.
RECEIVED = datetime(2024, 1, 18, 12, tzinfo=UTC).timestamp()


def arrived(raw: dict[str, Any], sent_at: Any = None) -> dict[str, Any]:
    return ArrivalDefaults(RECEIVED, b"{}", sent_at).parse(raw, 0).body


def test_a_senders_clock_is_put_right_by_its_sent_at_as_segment_does() -> None:
    # a phone an hour ahead: it says the order was at 13:05 and sent at 13:10
    order = {"type": "track", "event": "Order Completed", "timestamp": "2024-01-18T13:05:00.000Z"}

    body = arrived(order, sent_at="2024-01-18T13:10:00.000Z")

    assert body["timestamp"] == "2024-01-18T11:55:00.000Z"  # received - (sent - timestamp)
    assert body["originalTimestamp"] == "2024-01-18T13:05:00.000Z"
    # an event's own sentAt (analytics.js sends one per event) wins over the request's
    own = arrived({**order, "sentAt": 1705583700000}, sent_at="2024-01-18T13:10:00.000Z")
    assert own["timestamp"] == "2024-01-18T11:50:00.000Z"  # it says sent at 13:15 (epoch ms)


def test_without_sent_at_only_a_time_after_arrival_is_put_right() -> None:
    ahead = arrived({"type": "page", "timestamp": "2024-01-18T12:07:00.000Z"})
    behind = arrived({"type": "page", "timestamp": "2024-01-18T11:00:00.000Z"})

    assert ahead["timestamp"] == "2024-01-18T12:00:00.000Z"  # the edge received it then
    assert ahead["originalTimestamp"] == "2024-01-18T12:07:00.000Z"
    assert behind["timestamp"] == "2024-01-18T11:00:00.000Z"  # perhaps queued: left as sent
    assert "originalTimestamp" not in behind


def test_an_event_without_a_time_takes_its_arrival_whatever_the_sent_at() -> None:
    body = arrived({"type": "page"}, sent_at="2024-01-18T15:00:00.000Z")

    assert body["timestamp"] == "2024-01-18T12:00:00.000Z"
    assert "originalTimestamp" not in body


def test_an_unreadable_sent_at_is_ignored() -> None:
    body = arrived({"type": "page", "timestamp": "2024-01-18T11:00:00.000Z"}, sent_at="soon")

    assert body["timestamp"] == "2024-01-18T11:00:00.000Z"
