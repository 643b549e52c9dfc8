"""`rokt-edge preview` with contract B reproduces the reference's sample request.

The sample (`tests/data/rokt-event-api-sample.txt`, from Rokt's Event API reference) posts two
"booking" events with an email and an amount each, and `sourceServer` metaData. A merchant's
equivalent: two track calls named "Booking", a mapping that sends them with the event type
"booking", and the metaData setting. Only the event time differs, and it comes from the input:
the sample's 2020 time is long outside the Event API's 18-month window, so the input uses a
recent one (with the same milliseconds) and the expected request takes it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.conftest import DATA, run_cli

REFERENCE = (DATA / "rokt-event-api-sample.txt").read_text()
MAPPINGS = """
[[mapping]]
name = "Bookings"
trigger = 'type = "track" and event = "Booking"'
event_type = "booking"
"""


def reference_sample() -> dict[str, Any]:
    """The JSON that follows the sample's `POST /v2/events` line."""
    section = REFERENCE[REFERENCE.index("This is a sample Event API call") :]
    start = section.index("{", section.index("POST /v2/events"))
    sample, _ = json.JSONDecoder().raw_decode(section[start:])
    assert isinstance(sample, dict)
    return sample


def booking(message_id: str, email: str, amount: str, timestamp: str) -> dict[str, Any]:
    return {
        "type": "track",
        "event": "Booking",
        "messageId": message_id,
        "timestamp": timestamp,
        "properties": {"email": email, "revenue": amount},
    }


def test_preview_reproduces_the_references_sample_request(tmp_path: Path) -> None:
    # Given the reference's sample, and contract B configured as the sample's account would be
    sample = reference_sample()
    mappings = tmp_path / "mappings.toml"
    mappings.write_text(MAPPINGS)
    env = {
        "ROKT_EDGE_UPSTREAM": "event-api",
        "ROKT_EDGE_ACCOUNT_ID": "12345",
        "ROKT_EDGE_EVENT_API_METADATA": "sourceServer=192.0.0.1",
        "ROKT_EDGE_MAPPINGS": str(mappings),
    }
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    timestamp = an_hour_ago.strftime("%Y-%m-%dT%H:%M:%S.339Z")  # the sample's milliseconds
    events = [
        booking(message_id, email, amount, timestamp)
        for message_id, email, amount in (
            ("ff3bd69c-ca74-4337-af91-4d5d0bd00e38", "email123@emailserver.com", "85.00"),
            ("fff4deeb-cdee-49ff-9aad-61b1c4256ca6", "email456@emailserver.com", "99.99"),
        )
    ]

    # When a merchant previews the equivalent events
    result = run_cli("preview", stdin=json.dumps(events), env=env)

    # Then the one request is the sample, with the input's time
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["skipped"] == []
    assert document["warnings"] == []
    [request] = document["requests"]
    assert request["method"] == "POST"
    assert request["url"] == "https://api.rokt.com/v2/events"
    for event in sample["events"]:
        assert event["eventTime"] == "2020-05-22T10:21:29.339Z"
        event["eventTime"] = timestamp
    assert request["body"] == sample


def test_with_v1_auth_preview_posts_to_v1_events() -> None:
    env = {"ROKT_EDGE_UPSTREAM": "event-api", "ROKT_EDGE_EVENT_API_AUTH": "v1"}
    an_hour_ago = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    order = {
        "type": "track",
        "event": "Order Completed",
        "messageId": "m-1",
        "timestamp": an_hour_ago,
        "context": {"page": {"search": "?rtid=click-1"}},
    }

    result = run_cli("preview", stdin=json.dumps(order), env=env)

    [request] = json.loads(result.stdout)["requests"]
    assert request["url"] == "https://api.rokt.com/v1/events"
    [event] = request["body"]["events"]
    assert event["objectData"] == [
        {"name": "passbackconversiontrackingid", "value": "click-1"},
        {"name": "conversiontype", "value": "Order Completed"},
    ]
