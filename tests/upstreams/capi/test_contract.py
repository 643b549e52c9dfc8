"""Contract A batches: keys, limits, advertising ids, required identifiers; request packing."""

from __future__ import annotations

import json
from typing import Any

import pytest

from edge.jsontext import encode
from edge.upstreams.base import Mapped, Refused
from edge.upstreams.capi.contract import (
    MAX_BATCH_BYTES,
    MAX_BODY_BYTES,
    REQUIRED_IDENTIFIER,
    build_batch,
    pack,
    source_request_id,
)

IDFA = "6d92078a-8246-4ba4-ae5b-76104861e7dc"


def conversion(**values: Any) -> Mapped:
    base: dict[str, Any] = {
        "mapping": "Send",
        "message_id": "m-1",
        "timestamp_ms": 1705579200000,
        "conversion_type": "Order Completed",
        "customer_id": "u-1",
    }
    return Mapped(**{**base, **values})


def test_a_conversion_batch() -> None:
    batch = build_batch(
        conversion(
            click_id="rt-1",
            email="a@x.com",
            amount=0,
            currency="USD",
            confirmation_ref="o-1",
            ip="2001:db8::1",
            user_agent="UA/1",
            user_attributes={"firstname": "Ada"},
        )
    )
    assert batch == {
        "environment": "production",
        "source_request_id": source_request_id("Send", "m-1"),
        "user_identities": {"email": "a@x.com", "customerid": "u-1", "other2": "rt-1"},
        "user_attributes": {"firstname": "Ada"},
        "device_info": {"http_header_user_agent": "UA/1"},
        "ip": "2001:db8::1",
        "integration_attributes": {"1277": {"passbackconversiontrackingid": "rt-1"}},
        "events": [
            {
                "event_type": "custom_event",
                "data": {
                    "custom_event_type": "transaction",
                    "event_name": "conversion",
                    "source_message_id": "m-1",
                    "timestamp_unixtime_ms": 1705579200000,
                    "custom_attributes": {
                        "conversiontype": "Order Completed",
                        "confirmationref": "o-1",
                        "amount": 0,
                        "currency": "USD",
                    },
                },
            }
        ],
    }


def test_the_other2_copy_of_the_click_id_can_be_turned_off() -> None:
    batch = build_batch(conversion(click_id="rt-1"), click_id_in_other2=False)
    assert batch["user_identities"] == {"customerid": "u-1"}
    assert batch["integration_attributes"]["1277"]["passbackconversiontrackingid"] == "rt-1"


def test_hashed_email_goes_to_other() -> None:
    batch = build_batch(conversion(email_sha256="ab" * 32))
    assert batch["user_identities"]["other"] == "ab" * 32
    assert "email" not in batch["user_identities"]


def test_source_request_ids_differ_by_mapping_and_event() -> None:
    ids = {source_request_id(m, e) for m in ("A", "B") for e in ("1", "2")}
    assert len(ids) == 4


def test_audience_event_first_then_conversion_with_distinct_message_ids() -> None:
    batch = build_batch(conversion(audience_name="vip", audience_member=False))
    first, second = batch["events"]
    assert first["data"]["source_message_id"] == "aud_m-1"
    assert first["data"]["custom_attributes"] == {"audience_name": "vip", "status": "drop"}
    assert first["data"]["custom_event_type"] == "other"
    assert first["data"]["event_name"] == "audiencemembershipupdate"
    assert second["data"]["source_message_id"] == "m-1"
    assert batch["user_attributes"] == {"segment_vip": False}


def test_nothing_to_send_is_refused_with_a_reason() -> None:
    with pytest.raises(Refused, match="nothing to send: no conversion type and no audience"):
        build_batch(conversion(conversion_type=None))


@pytest.mark.parametrize(
    "identifier",
    [
        {"email": "a@x.com"},
        {"email_sha256": "ab" * 32},
        {"customer_id": "u-1"},
        {"click_id": "rt-1"},
        {"idfa": IDFA},
        {"gaid": IDFA},
        {"idfv": IDFA},
        {"android_uuid": "any-text"},
    ],
)
def test_any_one_identifier_is_enough(identifier: dict[str, str]) -> None:
    values = {"customer_id": None, **identifier}
    assert build_batch(conversion(**values))["events"]


def test_ip_and_user_agent_alone_are_refused_with_segments_message() -> None:
    with pytest.raises(Refused) as raised:
        build_batch(conversion(customer_id=None, ip="1.2.3.4", user_agent="UA"))
    assert raised.value.reason == REQUIRED_IDENTIFIER
    assert REQUIRED_IDENTIFIER == (
        "At least one of the following is required: iOS Advertising ID, Android Advertising ID, "
        "iOS ID for Vendor, Android UUID, Email, Customer ID, RTID."
    )


def test_the_click_id_counts_even_when_the_other2_copy_is_off() -> None:
    batch = build_batch(conversion(customer_id=None, click_id="rt"), click_id_in_other2=False)
    assert batch["user_identities"] == {}


@pytest.mark.parametrize(
    ("field", "key"),
    [("idfa", "ios_advertising_id"), ("gaid", "android_advertising_id"), ("idfv", "ios_idfv")],
)
def test_advertising_ids_that_are_not_uuids_are_dropped_with_a_warning(
    field: str, key: str
) -> None:
    mapped = conversion(**{field: "not-a-uuid"})
    batch = build_batch(mapped)
    assert "device_info" not in batch
    assert mapped.warnings == [f"device_info.{key}: 'not-a-uuid' is not a UUID; left out"]


def test_an_event_identified_only_by_a_bad_advertising_id_is_refused() -> None:
    with pytest.raises(Refused, match="At least one of the following is required"):
        build_batch(conversion(customer_id=None, idfa="00000000"))


def test_over_long_values_and_names_are_dropped_with_warnings() -> None:
    mapped = conversion(
        custom_attributes={"note": "x" * 4097, "ok": "x" * 4096, "n" * 257: 1},
        user_attributes={"city": "y" * 5000},
    )
    batch = build_batch(mapped)
    attributes = batch["events"][0]["data"]["custom_attributes"]
    assert set(attributes) == {"conversiontype", "ok"}
    assert "user_attributes" not in batch
    assert mapped.warnings == [
        "user attribute 'city': value over 4096 chars",
        "custom attribute 'note': value over 4096 chars",
        "custom attribute 'nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn'…: name over 256 chars",
    ]


def test_a_user_attribute_list_of_strings_goes_as_a_list() -> None:
    # Given a customer whose interests the mapping resolved to a list of strings
    mapped = conversion(user_attributes={"interests": ["golf", "wine"]})

    # When the batch is built
    batch = build_batch(mapped)

    # Then the list is sent as it is: contract A's user attributes take lists of strings
    assert batch["user_attributes"] == {"interests": ["golf", "wine"]}
    assert mapped.warnings == []


def test_a_user_attribute_list_with_an_over_long_string_is_dropped_with_a_warning() -> None:
    # Given a list one of whose strings is over the 4096-character value limit
    mapped = conversion(user_attributes={"interests": ["golf", "x" * 4097], "city": "Paris"})

    # When the batch is built
    batch = build_batch(mapped)

    # Then the list is left out (the upstream would reject the batch), the rest goes
    assert batch["user_attributes"] == {"city": "Paris"}
    assert mapped.warnings == ["user attribute 'interests': value over 4096 chars"]


def test_a_conversion_type_over_rokts_value_limit_is_refused_saying_so() -> None:
    # Given a conversion whose type is 5,000 characters long (a mapping reading the wrong path)
    mapped = conversion(conversion_type="x" * 5000)

    # When the batch is built
    with pytest.raises(Refused) as refusal:
        build_batch(mapped)

    # Then it is refused with what is wrong, not as if there were no conversion type
    assert refusal.value.reason == (
        "conversion type: 5,000 characters, over Rokt's 4,096-character limit"
    )


def test_a_conversion_type_at_the_limit_is_sent() -> None:
    batch = build_batch(conversion(conversion_type="x" * 4096))
    assert batch["events"][0]["data"]["custom_attributes"]["conversiontype"] == "x" * 4096


def test_an_over_long_conversion_type_beside_an_audience_update_leaves_only_the_update() -> None:
    # Given an event carrying an audience update and a conversion with an over-long type
    mapped = conversion(conversion_type="x" * 5000, audience_name="vip", audience_member=True)

    # When the batch is built
    batch = build_batch(mapped)

    # Then the audience update goes alone, and a warning says why the conversion does not
    assert [event["data"]["event_name"] for event in batch["events"]] == [
        "audiencemembershipupdate"
    ]
    assert mapped.warnings == [
        "conversion type: 5,000 characters, over Rokt's 4,096-character limit; "
        "the conversion is left out, the audience update is sent"
    ]


def test_at_most_100_attributes_of_each_kind() -> None:
    extras = {f"x{n}": n for n in range(120)}
    mapped = conversion(custom_attributes=dict(extras), user_attributes=dict(extras))
    batch = build_batch(mapped)
    custom = batch["events"][0]["data"]["custom_attributes"]
    assert len(custom) == 100
    assert "conversiontype" in custom  # the standard attributes come first and are kept
    assert len(batch["user_attributes"]) == 100
    assert len(mapped.warnings) == 2


def test_a_batch_over_128_kb_is_refused() -> None:
    extras = {f"x{n}": "v" * 4000 for n in range(40)}
    with pytest.raises(Refused, match=r"the batch is [\d,]+ bytes, over the 131,072-byte limit"):
        build_batch(conversion(custom_attributes=extras))


def test_encode_is_compact_utf8() -> None:
    assert encode({"a": "é", "b": [1, 2]}) == '{"a":"é","b":[1,2]}'.encode()


def batch_of_size(size: int, number: int) -> dict[str, Any]:
    body = {"n": number, "pad": ""}
    body["pad"] = "p" * (size - len(encode(body)))
    return body


def test_pack_one_batch_goes_to_events_and_many_to_bulkevents() -> None:
    assert [(r.path, r.batches) for r in pack([{"n": 1}])] == [("/events", 1)]
    [request] = pack([{"n": 1}, {"n": 2}])
    assert (request.path, request.body) == ("/bulkevents", [{"n": 1}, {"n": 2}])
    assert pack([]) == []


def test_pack_at_most_100_batches_per_request() -> None:
    requests = pack([{"n": n} for n in range(250)])
    assert [r.batches for r in requests] == [100, 100, 50]
    assert [b["n"] for r in requests for b in r.body] == list(range(250))


def test_pack_at_most_256_kb_per_request() -> None:
    batches = [batch_of_size(60_000, n) for n in range(10)]
    requests = pack(batches)
    assert [r.batches for r in requests] == [4, 4, 2]
    for request in requests:
        assert len(encode(request.body)) <= MAX_BODY_BYTES
    assert len(encode(batch_of_size(MAX_BATCH_BYTES, 0))) == MAX_BATCH_BYTES
    assert json.loads(encode(requests[0].body))[0]["n"] == 0


def test_the_size_bound_never_underestimates() -> None:
    from edge.upstreams.capi.contract import _size_bound

    samples: list[Any] = [
        {"a": "\x00" * 50, "é": ["\u2028", 1.5e300, True, None, -(10**20), 10**200]},
        build_batch(conversion(custom_attributes={"k": "🎉" * 1000})),
        [{"x": ""}, {}, []],
    ]
    for sample in samples:
        assert _size_bound(sample) >= len(encode(sample))
