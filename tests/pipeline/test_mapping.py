"""Mappings files: presets, overrides, and errors that name the file, the mapping and the key."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from edge.pipeline.mapping import (
    DEFAULT_FIELDS,
    MAX_MAPPINGS,
    PRESETS,
    MappingConfigError,
    default_mappings,
    load_mappings,
    parse_mappings,
)
from edge.pipeline.paths import parse_path


def test_without_a_file_the_presets_apply() -> None:
    assert load_mappings(None) == default_mappings()
    send, audience = default_mappings()
    assert (send.name, send.trigger.text) == (
        "Send",
        'type = "track" and event = "Order Completed"',
    )
    assert (audience.name, audience.trigger.text) == ("Sync Audience", 'type = "identify"')
    assert send.fields is DEFAULT_FIELDS


def test_a_file_replaces_the_presets(tmp_path: Path) -> None:
    path = tmp_path / "mappings.toml"
    path.write_text(
        """
[[mapping]]
name = "Signups"
trigger = 'type = "track" and event = "Signed Up"'
[mapping.fields]
conversion_type = "signup"
confirmation_ref = ["$.properties.signup_id", "$.messageId"]
[mapping.hashing]
email = true
[mapping.custom_attributes]
plan = "$.properties.plan"

[[mapping]]
name = "Purchases"
preset = "Send"
"""
    )
    signups, purchases = load_mappings(path)
    assert signups.name == "Signups"
    assert signups.trigger.matches({"type": "track", "event": "Signed Up"})
    assert signups.fields["confirmation_ref"] == (
        parse_path("$.properties.signup_id"),
        parse_path("$.messageId"),
    )
    assert signups.hashing == {"email": True}
    assert set(signups.custom_attributes) == {"plan"}
    assert purchases.trigger is PRESETS["Send"].trigger


def mapping_error(table: dict[str, Any]) -> str:
    with pytest.raises(MappingConfigError) as raised:
        parse_mappings({"mapping": [table]}, "m.toml")
    return str(raised.value)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({}, "m.toml: mapping 1: name: required, a non-empty string"),
        ({"name": "A"}, "m.toml: mapping 1 ('A'): trigger: required (or name a preset)"),
        ({"name": "A", "preset": "Buy"}, "m.toml: mapping 1 ('A'): preset: 'Buy' is not a preset"),
        ({"name": "A", "trigger": 3}, "m.toml: mapping 1 ('A'): trigger: must be a string"),
        (
            {"name": "A", "trigger": 'type = "track" or'},
            "m.toml: mapping 1 ('A'): trigger: column 18: expected a condition after 'or'",
        ),
        (
            {"name": "A", "preset": "Send", "event_type": "x" * 129},
            "m.toml: mapping 1 ('A'): event_type: must be a string of 1 to 128 characters",
        ),
        (
            {"name": "A", "preset": "Send", "event_type": 7},
            "m.toml: mapping 1 ('A'): event_type: must be a string of 1 to 128 characters",
        ),
        (
            {"name": "A", "preset": "Send", "colour": "red"},
            "m.toml: mapping 1 ('A'): colour: unknown key",
        ),
        (
            {"name": "A", "preset": "Send", "fields": {"revenue": "$.x"}},
            "m.toml: mapping 1 ('A'): fields.revenue: unknown field; fields are conversion_type",
        ),
        (
            {"name": "A", "preset": "Send", "fields": {"amount": "$.properties..x"}},
            "m.toml: mapping 1 ('A'): fields.amount: path '$.properties..x': column 14: expected "
            "a field name after '.'",
        ),
        (
            {"name": "A", "preset": "Send", "fields": {"amount": []}},
            "m.toml: mapping 1 ('A'): fields.amount: an empty list",
        ),
        (
            {"name": "A", "preset": "Send", "fields": {"amount": {"path": "$.x"}}},
            "m.toml: mapping 1 ('A'): fields.amount: a literal is written { value = ... }",
        ),
        (
            {"name": "A", "preset": "Send", "fields": {"audience_name": "$.traits.list"}},
            "m.toml: mapping 1 ('A'): fields: audience_name and audience_membership are set "
            "together",
        ),
        (
            {"name": "A", "preset": "Send", "hashing": {"customer_id": True}},
            "m.toml: mapping 1 ('A'): hashing.customer_id: not hashable; hashable fields are "
            "email, first_name, last_name, mobile, billing_zip",
        ),
        (
            {"name": "A", "preset": "Send", "hashing": {"email": "yes"}},
            "m.toml: mapping 1 ('A'): hashing.email: must be true or false",
        ),
        (
            {"name": "A", "preset": "Send", "custom_attributes": {"amount": "$.x"}},
            "m.toml: mapping 1 ('A'): custom_attributes.amount: set by a standard field",
        ),
        (
            {"name": "A", "preset": "Send", "user_attributes": {"x" * 257: "$.x"}},
            "m.toml: mapping 1 ('A'): user_attributes.xxxxxxxx",
        ),
        (
            {"name": "A", "preset": "Send", "hashing": []},
            "m.toml: mapping 1 ('A'): hashing: must be a table",
        ),
    ],
)
def test_config_errors_name_the_file_the_mapping_and_the_key(
    table: dict[str, Any], message: str
) -> None:
    assert mapping_error(table).startswith(message)


def test_a_trigger_error_shows_a_caret_under_the_column() -> None:
    message = mapping_error({"name": "A", "trigger": 'type = "track" or'})
    assert message.endswith('type = "track" or\n                 ^')


def test_at_most_fifty_mappings() -> None:
    tables = [{"name": f"M{n}", "preset": "Send"} for n in range(MAX_MAPPINGS)]
    assert len(parse_mappings({"mapping": tables}, "m.toml")) == MAX_MAPPINGS
    with pytest.raises(MappingConfigError, match="51 mappings; at most 50 are allowed"):
        parse_mappings({"mapping": [*tables, {"name": "one more", "preset": "Send"}]}, "m.toml")


def test_names_are_unique() -> None:
    tables = [{"name": "A", "preset": "Send"}, {"name": "A", "preset": "Sync Audience"}]
    with pytest.raises(
        MappingConfigError, match=re.escape("mapping 2 ('A'): name: used by an earlier mapping")
    ):
        parse_mappings({"mapping": tables}, "m.toml")


def test_file_level_errors(tmp_path: Path) -> None:
    with pytest.raises(MappingConfigError, match="mappings file not found"):
        load_mappings(tmp_path / "absent.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[[mapping]\n")
    with pytest.raises(MappingConfigError, match=re.escape(f"{broken}: not valid TOML")):
        load_mappings(broken)
    with pytest.raises(MappingConfigError, match="no \\[\\[mapping\\]\\] tables"):
        parse_mappings({}, "m.toml")
    with pytest.raises(MappingConfigError, match="unknown key 'mappings'"):
        parse_mappings({"mappings": []}, "m.toml")


def test_a_mapping_may_choose_the_event_api_event_type() -> None:
    chosen, default = parse_mappings(
        {
            "mapping": [
                {"name": "Bookings", "preset": "Send", "event_type": " booking "},
                {"name": "Orders", "preset": "Send"},
            ]
        },
        "m.toml",
    )
    assert chosen.event_type == "booking"
    assert default.event_type is None  # the contract's default, "conversion"
