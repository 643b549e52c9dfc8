"""Contract B events: objectData names and values, ids, times, local refusals, request packing."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from edge.events import parse_event
from edge.pipeline.mapping import default_mappings, parse_mappings
from edge.pipeline.pipeline import Outbound, Pipeline, Skipped
from edge.settings import load_settings
from edge.upstreams.base import Mapped, Refused
from edge.upstreams.event_api.contract import (
    ACCOUNT_ID_UNSET,
    AUDIENCE_NEEDS_CAPI,
    REQUIRED_IDENTIFIER,
    EventApiContract,
    client_event_id,
    event_time,
    outside_time_window,
)

STAMP_MS = 1705579200339  # 2024-01-18T12:00:00.339Z
NOW = STAMP_MS / 1000 + 3600  # an hour later
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1"
)


def contract(**options: Any) -> EventApiContract:
    settings: dict[str, Any] = {"plain_ids_for": "Send", "clock": lambda: NOW}
    return EventApiContract("12345", **{**settings, **options})


def conversion(**values: Any) -> Mapped:
    base: dict[str, Any] = {
        "mapping": "Send",
        "message_id": "m-1",
        "timestamp_ms": STAMP_MS,
        "conversion_type": "Order Completed",
        "email": "a@example.com",
    }
    return Mapped(**{**base, **values})


def object_data(event: dict[str, Any]) -> dict[str, str]:
    return {entry["name"]: entry["value"] for entry in event["objectData"]}


def test_a_conversion_event_with_every_standard_field() -> None:
    mapped = conversion(
        click_id="rt-1",
        amount=99.99,
        currency="USD",
        confirmation_ref="order-1",
        custom_attributes={"transactionid": "T-9", "quantity": 2},
        user_attributes={
            "firstname": "Ann",
            "lastnamesha256": "b" * 64,
            "mobile": "+1 323 867 5309",
            "billingzipcode": "90210",
            "dob": "19851220",
            "gender": "f",
            "city": "Los Angeles",
        },
        ip="203.0.113.9",
        user_agent=IPHONE,
        customer_id="u-1",
    )

    event = contract().build(mapped)

    assert event["clientEventId"] == "m-1"
    assert event["eventType"] == "conversion"
    assert event["eventTime"] == "2024-01-18T12:00:00.339Z"
    assert "metaData" not in event
    assert event["objectData"] == [
        {"name": "email", "value": "a@example.com"},
        {"name": "passbackconversiontrackingid", "value": "rt-1"},
        {"name": "amount", "value": "99.99"},
        {"name": "currency", "value": "USD"},
        {"name": "conversiontype", "value": "Order Completed"},
        {"name": "confirmationref", "value": "order-1"},
        {"name": "transactionid", "value": "T-9"},
        {"name": "quantity", "value": "2"},
        {"name": "firstname", "value": "Ann"},
        {"name": "lastnamesha256", "value": "b" * 64},
        {"name": "mobile", "value": "+1 323 867 5309"},
        {"name": "zipcode", "value": "90210"},
        {"name": "dob", "value": "19851220"},
        {"name": "gender", "value": "F"},
        {"name": "city", "value": "Los Angeles"},
        {"name": "ipaddress", "value": "203.0.113.9"},
        {"name": "useragent", "value": IPHONE},
        {"name": "DeviceType", "value": "Mobile"},
        {"name": "os", "value": "iOS"},
        {"name": "osversion", "value": "17.2"},
        {"name": "browser", "value": "Mobile Safari"},
        {"name": "browserversion", "value": "17.2"},
    ]
    # The Event API has no customer id field; only a mapping extra could send it.
    assert mapped.warnings == []


def test_a_hashed_email_goes_to_emailsha256() -> None:
    event = contract().build(conversion(email=None, email_sha256="c" * 64))
    assert object_data(event) == {"emailsha256": "c" * 64, "conversiontype": "Order Completed"}


@pytest.mark.parametrize(
    ("amount", "text"),
    [(85, "85.00"), (85.0, "85.00"), (99.99, "99.99"), (100.255, "100.255"), (0, "0.00")],
)
def test_amounts_are_money_with_at_least_two_decimals(amount: int | float, text: str) -> None:
    assert object_data(contract().build(conversion(amount=amount)))["amount"] == text


def test_another_event_type_leaves_conversiontype_out() -> None:
    # Given a mapping that chose the event type "booking"
    event = contract().build(conversion(event_type="booking"))

    # Then the reference's note applies: conversiontype is for the conversion type only
    assert event["eventType"] == "booking"
    assert "conversiontype" not in object_data(event)


def test_metadata_from_the_settings_goes_with_every_event() -> None:
    event = contract(metadata=[("sourceServer", "192.0.0.1")]).build(conversion())
    assert event["metaData"] == [{"name": "sourceServer", "value": "192.0.0.1"}]


def test_a_hashed_zip_cannot_be_sent_and_says_so() -> None:
    mapped = conversion(user_attributes={"billingzipsha256": "d" * 64})

    event = contract().build(mapped)

    assert "zipcode" not in object_data(event)
    assert mapped.warnings == [
        "billing zip: the Event API has no hashed zip code (zipcode is plain text); left out"
    ]


def test_an_extra_named_like_a_standard_field_is_left_out() -> None:
    mapped = conversion(custom_attributes={"Email": "other@example.com"})

    event = contract().build(mapped)

    assert object_data(event)["email"] == "a@example.com"
    assert mapped.warnings == ["custom attribute 'Email': a standard field has this name; left out"]


def test_an_extra_set_both_as_custom_and_user_attribute_is_sent_once() -> None:
    mapped = conversion(custom_attributes={"city": "Paris"}, user_attributes={"city": "Lyon"})

    event = contract().build(mapped)

    assert [entry for entry in event["objectData"] if entry["name"] == "city"] == [
        {"name": "city", "value": "Paris"}
    ]
    assert mapped.warnings == ["city: set twice by the mapping; the first value is sent"]


def test_an_over_long_value_is_left_out_with_a_warning() -> None:
    mapped = conversion(custom_attributes={"note": "x" * 65537, "sku": "s-1"})

    event = contract().build(mapped)

    assert object_data(event)["sku"] == "s-1"
    assert "note" not in object_data(event)
    assert mapped.warnings == ["note: value over 65,536 characters; left out"]


def test_a_user_attribute_list_cannot_be_sent_and_says_so() -> None:
    # Given a customer whose interests the mapping resolved to a list of strings
    mapped = conversion(user_attributes={"interests": ["golf", "wine"], "city": "Paris"})

    # When the Event API event is built
    event = contract().build(mapped)

    # Then the list is left out, with a warning: every objectData value is one string, and
    # the reference gives no way to join several; the rest goes
    assert object_data(event)["city"] == "Paris"
    assert "interests" not in object_data(event)
    assert mapped.warnings == [
        "user attribute 'interests': a list; the Event API sends single string values only "
        "(contract A sends lists); left out"
    ]


def test_a_conversion_type_over_4096_characters_fits_the_event_apis_limit() -> None:
    # Given a conversion type over contract A's 4,096-character limit
    mapped = conversion(conversion_type="x" * 5000)

    # When the Event API event is built
    event = contract().build(mapped)

    # Then it is sent: the Event API takes values of up to 65,536 characters
    assert object_data(event)["conversiontype"] == "x" * 5000


def test_a_conversion_type_over_the_event_apis_limit_is_refused_saying_so() -> None:
    # Given a conversion type over the Event API's 65,536-character value limit
    mapped = conversion(conversion_type="x" * 70000)

    # When the Event API event is built
    with pytest.raises(Refused) as refusal:
        contract().build(mapped)

    # Then it is refused with what is wrong, rather than sent as a conversion without its type
    assert refusal.value.reason == (
        "conversion type: 70,000 characters, over the Event API's 65,536-character limit"
    )


def test_an_audience_update_alone_is_refused() -> None:
    mapped = conversion(conversion_type=None, audience_name="vip", audience_member=True)
    with pytest.raises(Refused) as refusal:
        contract().build(mapped)
    assert refusal.value.reason == AUDIENCE_NEEDS_CAPI


def test_a_conversion_with_audience_data_sends_the_conversion_and_warns() -> None:
    mapped = conversion(audience_name="vip", audience_member=True)

    event = contract().build(mapped)

    assert object_data(event)["conversiontype"] == "Order Completed"
    assert mapped.warnings == [f"audience 'vip': not sent; {AUDIENCE_NEEDS_CAPI}"]


def test_without_email_hashed_email_or_click_id_rokt_cannot_attribute() -> None:
    # A customer id and an IDFA are enough for contract A, not for the Event API
    mapped = conversion(email=None, customer_id="u-1", idfa=str(uuid.uuid4()))
    with pytest.raises(Refused) as refusal:
        contract().build(mapped)
    assert refusal.value.reason == REQUIRED_IDENTIFIER


def test_an_identifier_too_long_to_send_leaves_the_event_unattributable() -> None:
    mapped = conversion(email="a" * 65537)
    with pytest.raises(Refused, match="needs at least one of"):
        contract().build(mapped)
    assert mapped.warnings == ["email: value over 65,536 characters; left out"]


def test_the_reserved_rokt_prefix_refuses_the_event() -> None:
    mapped = conversion(user_attributes={"Rokt.segment": "x"})
    with pytest.raises(Refused, match=r"the rokt\. name prefix is reserved"):
        contract().build(mapped)


def test_an_event_type_over_128_characters_is_refused() -> None:
    with pytest.raises(Refused, match="over 128 characters"):
        contract().build(conversion(event_type="x" * 129))


@pytest.mark.parametrize(
    ("offset_seconds", "refusal"),
    [
        # 18 months before 2024-01-18T13:00Z is 2022-07-18T13:00Z, 549 days back
        (-(549 * 86400) - 1, "older than 18 months"),
        (-(549 * 86400) + 1, None),
        (299, None),
        (301, "more than 5 minutes in the future"),
    ],
)
def test_the_time_window(offset_seconds: int, refusal: str | None) -> None:
    mapped = conversion(timestamp_ms=int((NOW + offset_seconds) * 1000))
    if refusal is None:
        contract().build(mapped)
    else:
        with pytest.raises(Refused, match=refusal):
            contract().build(mapped)


def test_the_sender_can_check_the_window_again_at_send_time() -> None:
    event = contract().build(conversion())

    assert outside_time_window(event, NOW) is None
    two_years_later = NOW + 2 * 365 * 86400
    assert "older than 18 months" in str(outside_time_window(event, two_years_later))
    assert "not an RFC 3339 time" in str(outside_time_window({"eventTime": "soon"}, NOW))


def test_event_times_are_utc_with_milliseconds() -> None:
    assert event_time(1590142889339) == "2020-05-22T10:21:29.339Z"
    assert event_time(1590142889000) == "2020-05-22T10:21:29.000Z"


def test_client_event_ids_fit_36_characters_and_never_collide_across_mappings() -> None:
    long_id = "segment-" + "x" * 60

    first = client_event_id("Send", long_id, plain=True)
    other = client_event_id("Signups", "m-1", plain=False)

    assert client_event_id("Send", "m-1", plain=True) == "m-1"
    assert len(first) == 36
    assert first == client_event_id("Send", long_id, plain=True)  # stable across retries
    assert len(other) == 36
    assert other != client_event_id("Other", "m-1", plain=False)


def test_pack_puts_at_most_100_events_in_a_request() -> None:
    events = [{"clientEventId": str(number)} for number in range(250)]

    requests = contract().pack(events)

    assert [request.batches for request in requests] == [100, 100, 50]
    assert {request.path for request in requests} == {"/v2/events"}
    assert requests[0].body == {"accountId": "12345", "events": events[:100]}
    assert requests[2].body["events"] == events[200:]


def test_v1_requests_go_to_v1_events_and_an_unset_account_id_is_marked() -> None:
    [request] = EventApiContract(None, auth="v1").pack([{"clientEventId": "a"}])
    assert request.path == "/v1/events"
    assert request.body["accountId"] == ACCOUNT_ID_UNSET


def test_through_the_pipeline_the_first_mapping_keeps_plain_ids() -> None:
    # Given contract B and two mappings that both match an order
    settings = load_settings({"ROKT_EDGE_UPSTREAM": "event-api", "ROKT_EDGE_ACCOUNT_ID": "12345"})
    mappings = parse_mappings(
        {
            "mapping": [
                {"name": "Orders", "trigger": 'event = "Order Completed"'},
                {
                    "name": "Bookings",
                    "trigger": 'event = "Order Completed"',
                    "event_type": "booking",
                },
            ]
        },
        "test",
    )
    event = parse_event(
        {
            "type": "track",
            "event": "Order Completed",
            "messageId": "m-7",
            "traits": {"email": "a@example.com"},
        },
        0,
    )

    # When the event goes through the pipeline
    orders, bookings = Pipeline(settings, mappings).process(event)

    # Then each mapping yields its own event, with its own id and event type
    assert isinstance(orders, Outbound)
    assert isinstance(bookings, Outbound)
    assert (orders.body["clientEventId"], orders.body["eventType"]) == ("m-7", "conversion")
    assert bookings.body["eventType"] == "booking"
    assert bookings.body["clientEventId"] == client_event_id("Bookings", "m-7", plain=False)


def test_through_the_pipeline_a_refusal_is_a_skip_with_the_reason() -> None:
    settings = load_settings({"ROKT_EDGE_UPSTREAM": "event-api"})
    traits = {"email": "a@example.com", "audience_name": "vip", "audience_membership": True}
    identify = parse_event({"type": "identify", "userId": "u-1", "traits": traits}, 0)

    [outcome] = Pipeline(settings, default_mappings()).process(identify)

    assert isinstance(outcome, Skipped)
    assert outcome.reason == AUDIENCE_NEEDS_CAPI


def test_an_over_long_user_agent_is_neither_sent_nor_parsed() -> None:
    mapped = conversion(user_agent="Mozilla/5.0 " + "x" * 65536)

    names = object_data(contract().build(mapped))

    assert not names.keys() & {"useragent", "DeviceType", "os", "browser"}
    assert mapped.warnings == ["useragent: value over 65,536 characters; left out"]
