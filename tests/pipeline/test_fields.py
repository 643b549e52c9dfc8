"""Field resolution: Segment's defaults, and each ★ improvement of spec/mapping.md."""

from __future__ import annotations

from typing import Any

import pytest

from edge.events import parse_event
from edge.pipeline.fields import resolve
from edge.pipeline.mapping import PRESETS, Mapping, parse_mappings
from edge.upstreams.base import Mapped

SEND = PRESETS["Send"]


def mapped(body: dict[str, Any], mapping: Mapping = SEND, region: str = "US") -> Mapped:
    event = {"type": "track", "event": "Order Completed", "messageId": "m-1", **body}
    return resolve(parse_event(event), mapping, region)


def custom(**tables: Any) -> Mapping:
    """The Send preset with some tables of a mappings file set."""
    [mapping] = parse_mappings({"mapping": [{"name": "M", "preset": "Send", **tables}]}, "t")
    return mapping


def test_segment_defaults() -> None:
    result = mapped(
        {
            "userId": "u-1",
            "properties": {"order_id": "o-1", "revenue": 9.5, "currency": "usd"},
            "context": {"ip": "203.0.113.9", "userAgent": "UA/1"},
        }
    )
    assert (result.conversion_type, result.confirmation_ref) == ("Order Completed", "o-1")
    assert (result.amount, result.currency) == (9.5, "USD")
    assert (result.customer_id, result.ip, result.user_agent) == ("u-1", "203.0.113.9", "UA/1")
    assert result.message_id == "m-1"


def test_star_amount_zero_is_kept() -> None:
    assert mapped({"properties": {"revenue": 0}}).amount == 0


def test_star_amount_falls_back_to_total() -> None:
    assert mapped({"properties": {"total": 12.25}}).amount == 12.25
    assert mapped({"properties": {"revenue": 3, "total": 12.25}}).amount == 3


def test_amount_as_numeric_text_becomes_a_number_and_junk_is_left_out_with_a_warning() -> None:
    assert mapped({"properties": {"revenue": " 19.90 "}}).amount == 19.9
    assert mapped({"properties": {"revenue": "20"}}).amount == 20
    result = mapped({"properties": {"revenue": "twenty"}})
    assert result.amount is None
    assert result.warnings == ["amount: 'twenty' is not a number; left out"]


def test_currency_is_upper_cased_and_must_be_three_letters() -> None:
    assert mapped({"properties": {"currency": " eur "}}).currency == "EUR"
    result = mapped({"properties": {"currency": "dollars"}})
    assert result.currency is None
    assert result.warnings == ["currency: 'dollars' is not an ISO 4217 code; left out"]


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        ("2024-01-18T12:00:00.000Z", 1705579200000),
        (1705579200, 1705579200000),  # ★ epoch seconds (Segment emits null)
        (1705579200000, 1705579200000),  # ★ epoch milliseconds
    ],
)
def test_star_timestamps_as_iso_or_epoch(timestamp: Any, expected: int) -> None:
    assert mapped({"timestamp": timestamp}).timestamp_ms == expected


def test_star_generated_message_id_is_used_when_the_event_has_none() -> None:
    event = parse_event({"type": "track", "event": "Order Completed"}, new_id=lambda: "gen-7")
    assert resolve(event, SEND, "US").message_id == "gen-7"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("male", "m"), ("Female", "f"), ("M", "m"), (" f ", "f"), ("WOMAN", "f"), ("Man", "m")],
)
def test_star_gender_is_normalized(value: str, expected: str) -> None:
    assert mapped({"properties": {"gender": value}}).user_attributes["gender"] == expected


def test_star_unknown_gender_is_dropped_with_a_warning_and_the_event_still_goes() -> None:
    result = mapped({"userId": "u", "properties": {"gender": "nonbinary"}})
    assert "gender" not in result.user_attributes
    assert result.warnings == ["gender: 'nonbinary' is neither male nor female; left out"]
    assert result.conversion_type == "Order Completed"


@pytest.mark.parametrize(
    "value", ["1990-05-15", "1990-05-15T08:30:00Z", "1990-05-15T08:30:00+10:00", "19900515"]
)
def test_star_dob_accepts_dates_and_datetimes(value: str) -> None:
    assert mapped({"traits": {"birthday": value}}).user_attributes["dob"] == "19900515"


def test_an_unreadable_dob_is_left_out_with_a_warning() -> None:
    result = mapped({"traits": {"birthday": "last spring"}})
    assert "dob" not in result.user_attributes
    assert result.warnings == ["dob: 'last spring' is not a date; left out"]


def test_star_context_traits_are_the_last_fallback_for_personal_data() -> None:
    context_traits = {
        "email": "Ctx@Example.com",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "phone": "555-0100",
        "address": {"postal_code": "02139"},
    }
    result = mapped({"context": {"traits": context_traits}})
    assert result.email == "ctx@example.com"
    assert result.user_attributes == {
        "firstname": "Ada",
        "lastname": "Lovelace",
        "mobile": "555-0100",
        "billingzipcode": "02139",
    }


def test_traits_win_over_properties_which_win_over_context_traits() -> None:
    result = mapped(
        {
            "traits": {"email": "a@x.com"},
            "properties": {"email": "b@x.com"},
            "context": {"traits": {"email": "c@x.com"}},
        }
    )
    assert result.email == "a@x.com"
    without_traits = {"properties": {"email": "b@x.com"}, "context": {"traits": {"email": "c"}}}
    assert mapped(without_traits).email == "b@x.com"


@pytest.mark.parametrize(
    ("page", "click_id"),
    [
        ({"search": "?utm_source=x&rtid=abc&other=1"}, "abc"),
        ({"search": "rtid=abc"}, "abc"),
        ({"search": "?rtid=a%2Bb%3D%3D"}, "a+b=="),  # ★ URL-decoded
        ({"search": "?rclid=via-rclid"}, "via-rclid"),  # rclid is another name for rtid
        ({"url": "https://shop.example/land?rtid=from%20url#top"}, "from url"),
        ({"url": "https://shop.example/land", "search": ""}, None),
        ({"search": "?rtid="}, None),
    ],
)
def test_star_click_id_from_the_page_query_properly_decoded(
    page: dict[str, str], click_id: str | None
) -> None:
    assert mapped({"context": {"page": page}}).click_id == click_id


def test_click_id_from_integrations_wins_over_the_page() -> None:
    result = mapped(
        {
            "integrations": {"Rokt Conversions API": {"rtid": "from-plugin"}},
            "context": {"page": {"search": "?rtid=from-page"}},
        }
    )
    assert result.click_id == "from-plugin"


def test_values_are_trimmed_and_blanks_omitted() -> None:
    result = mapped({"userId": "  ", "properties": {"order_id": "  o-9 ", "email": " "}})
    assert result.customer_id is None
    assert result.email is None
    assert result.confirmation_ref == "o-9"


def test_device_ids_follow_the_device_type() -> None:
    ios = mapped({"context": {"device": {"type": "iOS", "advertisingId": "A", "id": "V"}}})
    assert (ios.idfa, ios.idfv, ios.gaid, ios.android_uuid) == ("A", "V", None, None)
    android = mapped({"context": {"device": {"type": "android", "advertisingId": "G", "id": "U"}}})
    assert (android.gaid, android.android_uuid, android.idfa) == ("G", "U", None)
    web = mapped({"context": {"device": {"advertisingId": "A", "id": "V"}}})
    assert (web.idfa, web.gaid) == (None, None)


def test_hashing_switches_hash_only_the_chosen_fields() -> None:
    mapping = custom(hashing={"email": True, "mobile": True})
    result = mapped(
        {"traits": {"email": "Test@Example.com", "phone": "+1 323 867 5309", "first_name": "Jo"}},
        mapping,
    )
    assert result.email is None
    assert result.email_sha256 == (
        "973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b"
    )
    assert result.user_attributes == {
        "firstname": "Jo",
        "mobilesha256": "d3d2ab878af46f2dae0bc9179c5ee11e590b64c8a151171a10cace70de9baae7",
    }


def test_pre_hashed_values_go_to_the_hashed_key_even_with_hashing_off() -> None:
    digest = "973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b"
    result = mapped({"traits": {"email": digest.upper(), "first_name": digest}})
    assert result.email_sha256 == digest
    assert result.user_attributes == {"firstnamesha256": digest}


def test_the_phone_region_setting_reads_local_numbers() -> None:
    mapping = custom(hashing={"mobile": True})
    local_uk = mapped({"traits": {"phone": "020 7946 0958"}}, mapping, region="GB")
    international = mapped({"traits": {"phone": "+44 20 7946 0958"}}, mapping, region="US")
    assert local_uk.user_attributes == international.user_attributes


@pytest.mark.parametrize("phone", ["n/a", "-", "x", "1"])
@pytest.mark.parametrize("hash_it", [True, False])
def test_a_phone_field_with_no_plausible_number_leaves_the_mobile_out(
    phone: str, hash_it: bool
) -> None:
    # Given a customer whose phone field holds a placeholder or a stray digit
    mapping = custom(hashing={"mobile": hash_it})

    # When the conversion is mapped, with mobile hashing on or off
    result = mapped({"userId": "u-1", "traits": {"phone": phone}}, mapping)

    # Then no mobile is sent (a hash of "" or "1" would match every such customer to each
    # other), the operator is told which field and why, without the value, and the
    # conversion still goes
    assert result.user_attributes == {}
    assert result.warnings == ["mobile: not a plausible phone number; left out"]
    assert result.conversion_type == "Order Completed"


def test_a_pre_hashed_mobile_is_kept_as_it_is() -> None:
    # Given a mobile the shop hashed itself
    digest = "d3d2ab878af46f2dae0bc9179c5ee11e590b64c8a151171a10cace70de9baae7"

    # When it is mapped, with hashing off
    result = mapped({"traits": {"phone": digest.upper()}})

    # Then it is no phone number, but it goes to the hashed key unchanged, without a warning
    assert result.user_attributes == {"mobilesha256": digest}
    assert result.warnings == []


def test_overrides_with_fallbacks_and_literals() -> None:
    mapping = custom(
        fields={
            "confirmation_ref": ["$.properties.checkout_id", "$.properties.order_id"],
            "currency": {"value": "AUD"},
            "conversion_type": "purchase",
        }
    )
    result = mapped({"properties": {"order_id": "o-1", "currency": "USD"}}, mapping)
    assert result.confirmation_ref == "o-1"
    assert result.currency == "AUD"
    assert result.conversion_type == "purchase"


def test_extra_attributes_are_scalars_only() -> None:
    mapping = custom(
        custom_attributes={"coupon": "$.properties.coupon", "items": "$.properties.products"},
        user_attributes={"city": "$.traits.address.city", "tier": {"value": "gold"}},
    )
    result = mapped(
        {
            "traits": {"address": {"city": "Sydney"}},
            "properties": {"coupon": "SAVE10", "products": [{"sku": "1"}]},
        },
        mapping,
    )
    assert result.custom_attributes == {"coupon": "SAVE10"}
    assert result.user_attributes == {"city": "Sydney", "tier": "gold"}
    assert result.warnings == [
        "custom attribute 'items': only scalar values can be sent, not list; left out"
    ]


def test_a_user_attribute_list_of_strings_is_sent_as_a_list() -> None:
    # Given a mapping that sends the customer's interests, a list in the traits
    mapping = custom(user_attributes={"interests": "$.traits.interests"})

    # When an order from a customer with interests (one padded, one blank, one null) is mapped
    result = mapped({"traits": {"interests": [" golf ", "", "wine", None]}}, mapping)

    # Then the interests go as a list, as user attributes may be: trimmed, blanks dropped
    assert result.user_attributes == {"interests": ["golf", "wine"]}
    assert result.warnings == []


def test_a_user_attribute_list_of_blanks_is_omitted_like_a_blank_value() -> None:
    mapping = custom(user_attributes={"interests": "$.traits.interests"})

    result = mapped({"traits": {"interests": [" ", ""]}}, mapping)

    assert result.user_attributes == {}
    assert result.warnings == []


@pytest.mark.parametrize(
    ("value", "warning"),
    [
        (
            ["golf", 3],
            "user attribute 'interests': a list is sent only when its items are strings, "
            "not int; left out",
        ),
        (
            ["golf", ["wine"]],
            "user attribute 'interests': a list is sent only when its items are strings, "
            "not list; left out",
        ),
        (
            {"golf": True},
            "user attribute 'interests': only scalars and lists of strings can be sent, "
            "not dict; left out",
        ),
    ],
)
def test_a_user_attribute_that_is_an_object_or_a_mixed_list_is_left_out(
    value: Any, warning: str
) -> None:
    # Given a mapping that sends the customer's interests
    mapping = custom(user_attributes={"interests": "$.traits.interests"})

    # When the interests hold something else than strings
    result = mapped({"userId": "u-1", "traits": {"interests": value}}, mapping)

    # Then they are left out with a warning saying why, and the conversion still goes
    assert result.user_attributes == {}
    assert result.warnings == [warning]
    assert result.conversion_type == "Order Completed"


def test_a_custom_attribute_stays_scalar_only_even_for_a_list_of_strings() -> None:
    # Given a mapping that sends the order's coupons on the conversion
    mapping = custom(custom_attributes={"coupons": "$.properties.coupons"})

    # When the coupons are a list of strings
    result = mapped({"properties": {"coupons": ["SAVE10", "FREESHIP"]}}, mapping)

    # Then they are left out: the conversion's custom attributes take scalars only
    assert result.custom_attributes == {}
    assert result.warnings == [
        "custom attribute 'coupons': only scalar values can be sent, not list; left out"
    ]


def test_audience_from_custom_properties_or_star_traits() -> None:
    from_properties = mapped({"properties": {"audience_name": "vip", "audience_membership": True}})
    assert (from_properties.audience_name, from_properties.audience_member) == ("vip", True)
    from_traits = mapped({"traits": {"audience_name": "vip", "audience_membership": "false"}})
    assert (from_traits.audience_name, from_traits.audience_member) == ("vip", False)


def test_engage_audience_reads_the_computation_key() -> None:
    event = {
        "type": "identify",
        "traits": {"cart_abandoners": True},
        "context": {
            "personas": {"computation_key": "cart_abandoners", "computation_class": "audience"}
        },
    }
    result = resolve(parse_event(event), PRESETS["Sync Audience"], "US")
    assert (result.audience_name, result.audience_member) == ("cart_abandoners", True)


def test_engage_computed_traits_are_not_audiences() -> None:
    event = {
        "type": "identify",
        "traits": {"ltv": 100},
        "context": {"personas": {"computation_key": "ltv", "computation_class": "trait"}},
    }
    assert resolve(parse_event(event), PRESETS["Sync Audience"], "US").audience_name is None


ENGAGE_AUDIENCE = {
    "type": "identify",
    "userId": "u-1",
    "traits": {"cart_abandoners": True, "rtid": "from-traits"},
    "context": {
        "personas": {"computation_key": "cart_abandoners", "computation_class": "audience"}
    },
}


def test_sync_audience_reads_the_click_id_from_the_traits_as_segments_preset_does() -> None:
    # Given an Engage audience identify whose only click id is the user's rtid trait
    event = parse_event(ENGAGE_AUDIENCE)

    # When the Sync Audience preset maps it
    result = resolve(event, PRESETS["Sync Audience"], "US")

    # Then the audience update carries that click id
    assert (result.audience_name, result.click_id) == ("cart_abandoners", "from-traits")


@pytest.mark.parametrize(
    ("more", "click_id"),
    [
        ({"integrations": {"Rokt Conversions API": {"rtid": "from-plugin"}}}, "from-plugin"),
        ({"context": {"page": {"search": "?rtid=from-page"}}}, "from-page"),
    ],
)
def test_sync_audience_reads_the_traits_click_id_after_the_default_sources(
    more: dict[str, Any], click_id: str
) -> None:
    # Given an identify with a click id from the browser plugin or this page, and an rtid trait
    # (which may have been kept from an earlier visit)
    event = parse_event({**ENGAGE_AUDIENCE, **more})

    # When the Sync Audience preset maps it
    result = resolve(event, PRESETS["Sync Audience"], "US")

    # Then the default sources win, as in every other mapping
    assert result.click_id == click_id


def test_the_send_preset_does_not_read_the_traits_click_id() -> None:
    assert mapped({"traits": {"rtid": "from-traits"}}).click_id is None


def test_an_audience_without_a_boolean_membership_is_not_sent_and_says_why() -> None:
    result = mapped({"properties": {"audience_name": "vip", "audience_membership": "maybe"}})
    assert result.audience_name is None
    assert result.warnings == [
        "audience 'vip': membership 'maybe' is not true or false; no update sent"
    ]
