"""The pipeline: every event ends as something to send or a skip with a reason."""

from __future__ import annotations

from collections.abc import Mapping

from edge.events import parse_event
from edge.pipeline.mapping import default_mappings, parse_mappings
from edge.pipeline.pipeline import NOT_TRIGGERED, OPTED_OUT, Outbound, Pipeline, Skipped
from edge.settings import Settings

ORDER = {"type": "track", "event": "Order Completed", "messageId": "m-1", "userId": "u-1"}


def test_an_event_no_trigger_matches_is_skipped_as_not_triggered() -> None:
    pipeline = Pipeline(Settings(), default_mappings())
    assert pipeline.process(parse_event({"type": "page", "messageId": "p"})) == [
        Skipped("p", NOT_TRIGGERED)
    ]


def test_an_event_may_match_several_mappings_and_each_produces_its_own_output() -> None:
    mappings = parse_mappings(
        {
            "mapping": [
                {"name": "Send", "preset": "Send"},
                {
                    "name": "All tracks",
                    "trigger": 'type = "track"',
                    "fields": {"message_id": "$.properties.id"},
                },
                {"name": "Never", "trigger": 'event = "x"'},
            ]
        },
        "t",
    )
    outcomes = Pipeline(Settings(), mappings).process(
        parse_event({**ORDER, "properties": {"id": "alt-1"}})
    )
    assert [(o.mapping, o.message_id, type(o)) for o in outcomes] == [
        ("Send", "m-1", Outbound),
        ("All tracks", "alt-1", Outbound),
    ]
    assert isinstance(outcomes[0], Outbound)
    assert isinstance(outcomes[1], Outbound)
    assert outcomes[0].key != outcomes[1].key


def test_a_matching_event_without_an_identifier_is_skipped_with_the_reason() -> None:
    [outcome] = Pipeline(Settings(), default_mappings()).process(
        parse_event({**ORDER, "userId": None})
    )
    assert isinstance(outcome, Skipped)
    assert outcome.mapping == "Send"
    assert outcome.reason.startswith("At least one of the following is required")


def test_an_identify_without_audience_data_is_skipped_as_nothing_to_send() -> None:
    [outcome] = Pipeline(Settings(), default_mappings()).process(
        parse_event({"type": "identify", "userId": "u", "messageId": "i"})
    )
    assert outcome == Skipped(
        "i", "nothing to send: no conversion type and no audience membership", "Sync Audience"
    )


def test_an_order_whose_event_name_is_over_rokts_limit_is_skipped_saying_why() -> None:
    # Given a mapping that sends every track call, and one whose event name is 5,000 characters
    mappings = parse_mappings({"mapping": [{"name": "All", "trigger": 'type = "track"'}]}, "t")
    event = parse_event({**ORDER, "event": "Order " + "x" * 4994})

    # When it goes through the pipeline
    [outcome] = Pipeline(Settings(), mappings).process(event)

    # Then it is skipped with what is wrong with its conversion type
    assert outcome == Skipped(
        "m-1", "conversion type: 5,000 characters, over Rokt's 4,096-character limit", "All"
    )


def test_an_engage_audience_update_carries_the_click_id_of_the_users_traits() -> None:
    # Given an Engage audience identify with the user's rtid as a trait
    identify = {
        "type": "identify",
        "messageId": "i-1",
        "userId": "u-1",
        "traits": {"vip": True, "rtid": "rt-9"},
        "context": {"personas": {"computation_key": "vip", "computation_class": "audience"}},
    }

    # When it goes through the default mappings
    [outcome] = Pipeline(Settings(), default_mappings()).process(parse_event(identify))

    # Then Sync Audience sends the update with that click id, where Rokt reads it
    assert isinstance(outcome, Outbound)
    assert outcome.mapping == "Sync Audience"
    assert outcome.body["integration_attributes"] == {
        "1277": {"passbackconversiontrackingid": "rt-9"}
    }
    assert outcome.body["user_identities"] == {"customerid": "u-1", "other2": "rt-9"}


def test_outbound_items_carry_what_the_outbox_needs() -> None:
    [outcome] = Pipeline(Settings(), default_mappings()).process(
        parse_event({**ORDER, "timestamp": 1705579200})
    )
    assert isinstance(outcome, Outbound)
    assert outcome.key == "Send\nm-1"
    assert outcome.timestamp_ms == 1705579200000
    assert outcome.body["events"][0]["data"]["source_message_id"] == "m-1"


def test_segments_integrations_object_can_turn_rokt_off() -> None:
    pipeline = Pipeline(Settings(), default_mappings())
    integrations: Mapping[str, object]
    for integrations in ({"Rokt Conversions API": False}, {"All": False}):
        [outcome] = pipeline.process(parse_event({**ORDER, "integrations": integrations}))
        assert outcome == Skipped("m-1", OPTED_OUT)
    for integrations in (
        {"All": False, "Rokt Conversions API": True},
        {"All": False, "Rokt Conversions API": {"rtid": "x"}},
        {"Google Analytics": False},
    ):
        [outcome] = pipeline.process(parse_event({**ORDER, "integrations": integrations}))
        assert isinstance(outcome, Outbound), integrations


def test_each_item_says_whether_it_holds_a_conversion_with_a_click_id_and_an_email() -> None:
    # The attribution figures (conversions sent with a click id, with an email) count these
    pipeline = Pipeline(Settings(), default_mappings())
    order = {"type": "track", "event": "Order Completed", "userId": "u",
             "properties": {"order_id": "o-1", "email": "a@example.com"},
             "integrations": {"Rokt Conversions API": {"rtid": "R"}}}  # fmt: skip
    [sent] = pipeline.process(parse_event(order))
    assert isinstance(sent, Outbound)
    assert (sent.conversion, sent.click_id, sent.email) == (True, True, True)

    # An audience update beside a conversion whose type is too long goes alone: no conversion
    vip = {**order, "event": "x" * 5000, "properties": {"audience_name": "vip",
                                                         "audience_membership": True}}  # fmt: skip
    tracks = parse_mappings({"mapping": [{"name": "Tracks", "trigger": 'type = "track"'}]}, "t")
    [update] = Pipeline(Settings(), tracks).process(parse_event(vip))
    assert isinstance(update, Outbound)
    assert (update.conversion, update.dedup_key) == (False, None)
