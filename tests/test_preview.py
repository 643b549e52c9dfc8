"""`rokt-edge preview` as a merchant's engineer uses it: files, stdin, and what goes wrong."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from edge.pipeline.mapping import default_mappings
from edge.pipeline.pipeline import Pipeline
from edge.preview import preview
from edge.settings import load_settings
from tests.conftest import run_cli


def _ago(delta: timedelta) -> str:
    return (datetime.now(UTC) - delta).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _an_hour_ago() -> str:
    return _ago(timedelta(hours=1))


ORDER: dict[str, Any] = {
    "type": "track",
    "event": "Order Completed",
    "messageId": "m-1",
    "timestamp": _an_hour_ago(),  # within the upstream's 30-day data-age limit
    "userId": "u-1",
    "properties": {"order_id": "o-1", "revenue": 10},
}
EXPIRED_MESSAGE = "older than 30 days, the upstream's data-age limit"


def test_a_file_holding_a_json_array_is_read(tmp_path: Path) -> None:
    events = tmp_path / "events.json"
    events.write_text(json.dumps([ORDER, {**ORDER, "messageId": "m-2"}]))

    result = run_cli("preview", str(events))

    assert result.returncode == 0, result.stderr
    [request] = json.loads(result.stdout)["requests"]
    assert [batch["events"][0]["data"]["source_message_id"] for batch in request["body"]] == [
        "m-1",
        "m-2",
    ]


def test_one_event_goes_to_the_single_batch_endpoint() -> None:
    result = run_cli("preview", "-", stdin=json.dumps(ORDER))

    [request] = json.loads(result.stdout)["requests"]
    assert request["method"] == "POST"
    assert request["url"] == "https://inbound.mparticle.com/s2s/v2/events"
    assert request["body"]["events"][0]["data"]["custom_attributes"]["amount"] == 10


def test_the_upstream_url_setting_is_used() -> None:
    env = {"ROKT_EDGE_ROKT_URL": "https://s2s.eu1.mparticle.com/v2/"}
    result = run_cli("preview", stdin=json.dumps(ORDER), env=env)

    [request] = json.loads(result.stdout)["requests"]
    assert request["url"] == "https://s2s.eu1.mparticle.com/v2/events"


def test_unreadable_input_exits_2_and_says_where() -> None:
    result = run_cli("preview", stdin='{"type": "track"}\n{"type": oops}\n')

    assert result.returncode == 2
    assert "line 2" in result.stderr
    assert result.stdout == ""


def test_a_missing_file_exits_2(tmp_path: Path) -> None:
    result = run_cli("preview", str(tmp_path / "nope.json"))

    assert result.returncode == 2
    assert "nope.json" in result.stderr


def test_an_invalid_event_is_reported_by_index_and_field_and_the_rest_still_previewed() -> None:
    bad = {"type": "track", "properties": {}}
    result = run_cli("preview", stdin=json.dumps([ORDER, bad]))

    assert result.returncode == 1
    document = json.loads(result.stdout)
    assert document["invalid"] == [
        {"event": 1, "error": "event 1: event: a track call needs a non-empty event name"}
    ]
    assert len(document["requests"]) == 1


def test_each_event_that_produces_nothing_says_why() -> None:
    page = {"type": "page", "name": "Home", "messageId": "p-1"}
    result = run_cli("preview", stdin=json.dumps(page))

    assert result.returncode == 0
    assert json.loads(result.stdout)["skipped"] == [
        {
            "event": 0,
            "messageId": "p-1",
            "mapping": None,
            "reason": "not triggered: no mapping's trigger matches this event",
        }
    ]


def test_warnings_name_the_field_left_out() -> None:
    event = {**ORDER, "properties": {**ORDER["properties"], "gender": "unknown"}}
    result = run_cli("preview", stdin=json.dumps(event))

    [warning] = json.loads(result.stdout)["warnings"]
    assert warning["mapping"] == "Send"
    assert warning["warning"] == "gender: 'unknown' is neither male nor female; left out"


def test_a_bad_setting_stops_with_the_setting_and_value_named() -> None:
    result = run_cli("preview", stdin="{}", env={"ROKT_EDGE_UPSTREAM": "kafka"})

    assert result.returncode == 2
    assert "ROKT_EDGE_UPSTREAM = 'kafka': must be capi or event-api" in result.stderr


def test_a_bad_mappings_file_stops_with_file_mapping_and_key_named(tmp_path: Path) -> None:
    mappings = tmp_path / "m.toml"
    mappings.write_text('[[mapping]]\nname = "Buy"\ntrigger = \'event = "x" and\'\n')

    result = run_cli("preview", stdin="{}", env={"ROKT_EDGE_MAPPINGS": str(mappings)})

    assert result.returncode == 2
    assert (
        f"{mappings}: mapping 1 ('Buy'): trigger: column 16: expected a condition after 'and'"
        in result.stderr
    )


def test_settings_from_a_config_file(tmp_path: Path) -> None:
    config = tmp_path / "edge.toml"
    config.write_text('rokt_url = "https://s2s.au1.mparticle.com/v2"\n')

    result = run_cli("preview", "--config", str(config), stdin=json.dumps(ORDER))

    [request] = json.loads(result.stdout)["requests"]
    assert request["url"].startswith("https://s2s.au1.mparticle.com/v2/")


def test_event_api_without_an_account_id_previews_with_the_gap_marked() -> None:
    # Given contract B, no credentials (a dry run) and no account id yet
    env = {"ROKT_EDGE_UPSTREAM": "event-api"}
    order = {**ORDER, "traits": {"email": "a@example.com"}}
    future = {**order, "messageId": "m-2", "timestamp": "2099-01-01T00:00:00Z"}

    # When a merchant previews an order, and one from far in the future
    events = [{**order, "timestamp": _an_hour_ago()}, future]
    result = run_cli("preview", stdin=json.dumps(events), env=env)

    # Then the request shows where the account id goes, and the future event is refused
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    [request] = document["requests"]
    assert request["url"] == "https://api.rokt.com/v2/events"
    assert request["body"]["accountId"] == "(unset: ROKT_EDGE_ACCOUNT_ID)"
    [skipped] = document["skipped"]
    assert "more than 5 minutes in the future" in skipped["reason"]


def test_an_order_older_than_the_upstreams_30_day_limit_is_shown_as_expired() -> None:
    # Given an order from last week and one from 31 days ago
    old = {**ORDER, "messageId": "m-old", "timestamp": _ago(timedelta(days=31))}
    events = [ORDER, old]

    # When a merchant previews them
    result = run_cli("preview", stdin=json.dumps(events))

    # Then the old one is not in the request: it is skipped as expired, as the sender would
    # dead-letter it, with the upstream's limit named
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    [request] = document["requests"]
    assert request["url"] == "https://inbound.mparticle.com/s2s/v2/events"  # one batch
    assert request["body"]["events"][0]["data"]["source_message_id"] == "m-1"
    assert document["skipped"] == [
        {
            "event": 1,
            "messageId": "m-old",
            "mapping": "Send",
            "reason": "expired",
            "message": EXPIRED_MESSAGE,
        }
    ]


def test_preview_applies_the_senders_age_rule_on_its_clock() -> None:
    # Given an order, and a pipeline for contract A
    stamp_ms = 1705579200000  # 2024-01-18T12:00:00Z
    order = {**ORDER, "timestamp": stamp_ms}
    pipeline = Pipeline(load_settings({}), default_mappings())
    thirty_days_later = stamp_ms / 1000 + 30 * 86400

    # When it is previewed exactly 30 days later, and a millisecond after that
    on_the_day, _ = preview([order], pipeline, now=thirty_days_later)
    a_moment_late, _ = preview([order], pipeline, now=thirty_days_later + 0.001)

    # Then it would still be sent on the day, and is expired after
    assert len(on_the_day["requests"]) == 1
    assert on_the_day["skipped"] == []
    assert a_moment_late["requests"] == []
    assert [(skip["reason"], skip["message"]) for skip in a_moment_late["skipped"]] == [
        ("expired", EXPIRED_MESSAGE)
    ]


def test_with_the_event_api_an_order_older_than_30_days_is_still_sent() -> None:
    # Given contract B, whose window reaches 18 months back, and an order from 31 days ago
    env = {"ROKT_EDGE_UPSTREAM": "event-api"}
    order = {**ORDER, "traits": {"email": "a@example.com"}, "timestamp": _ago(timedelta(days=31))}

    # When a merchant previews it
    result = run_cli("preview", stdin=json.dumps(order), env=env)

    # Then it is in the request: the 30-day limit is contract A's
    document = json.loads(result.stdout)
    assert document["skipped"] == []
    assert len(document["requests"][0]["body"]["events"]) == 1
