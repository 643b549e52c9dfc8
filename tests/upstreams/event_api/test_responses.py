"""Classifying the Event API's answers: what the sender does with each of the reference's
responses, always keeping the trace id; and the same answers from the fake, end to end."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from edge.delivery.verdict import Kind
from edge.upstreams.base import Mapped, UpstreamRequest
from edge.upstreams.event_api.auth import KeyAuth, post_events
from edge.upstreams.event_api.contract import EventApiContract
from edge.upstreams.event_api.responses import classify, retry_after
from tests.fake_event_api import FakeEventApi, Fault

TRACE = {"X-Rokt-Trace-Id": "abc-123"}
EVENTS: list[dict[str, Any]] = [
    {"clientEventId": "ff3bd69c-ca74-4337-af91-4d5d0bd00e38", "eventType": "conversion"},
    {"clientEventId": "fff4deeb-cdee-49ff-9aad-61b1c4256ca6", "eventType": "conversion"},
    {"clientEventId": "e-3", "eventType": "conversion"},
]


def body(document: Any) -> bytes:
    return json.dumps(document).encode()


def unprocessed(*records: tuple[str | None, str, str]) -> bytes:
    return body(
        {
            "data": {
                "unprocessedRecords": [
                    {"error": {"code": code, "message": message}, "record": {"clientEventId": key}}
                    for key, code, message in records
                ]
            }
        }
    )


def test_200_with_nothing_unprocessed_is_delivered() -> None:
    verdict = classify(200, TRACE, body({"data": {"unprocessedRecords": []}}), EVENTS)

    assert verdict.kind is Kind.DELIVERED
    assert verdict.delivered
    assert verdict.trace_id == "abc-123"
    assert verdict.failed == {}


def test_200_with_unprocessed_records_fails_only_those_events() -> None:
    # The reference's 200 error scenario, for the second event of three
    answer = unprocessed((EVENTS[1]["clientEventId"], "ValidationError", "Invalid content"))

    verdict = classify(200, TRACE, answer, EVENTS)

    assert verdict.kind is Kind.PARTIAL
    assert verdict.failed == {1: "ValidationError: Invalid content"}
    assert verdict.delivered  # the others
    assert verdict.trace_id == "abc-123"
    assert verdict.message == "1 of 3 events unprocessed"


def test_unprocessed_records_that_name_no_event_ask_for_a_split() -> None:
    answer = unprocessed((None, "ValidationError", "Invalid content"))

    several = classify(200, TRACE, answer, EVENTS)
    alone = classify(200, TRACE, answer, EVENTS[:1])

    assert several.kind is Kind.REJECTED
    assert several.failed == {}
    assert "split" in several.message
    assert alone.kind is Kind.PARTIAL
    assert alone.failed == {0: "ValidationError: Invalid content"}


@pytest.mark.parametrize(
    "code", ["RequestBodyReadError", "RequestJsonUnmarshalError", "RequestValidationError"]
)
def test_400_rejects_the_request_with_the_code_and_message(code: str) -> None:
    answer = body({"data": {"code": code, "message": "unable to unmarshal request body"}})

    several = classify(400, TRACE, answer, EVENTS)
    alone = classify(400, TRACE, answer, EVENTS[:1])

    reason = f"400 {code}: unable to unmarshal request body"
    assert (several.kind, several.failed, several.message) == (Kind.REJECTED, {}, reason)
    assert (alone.kind, alone.failed) == (Kind.REJECTED, {0: reason})
    assert several.trace_id == "abc-123"
    assert not several.delivered


@pytest.mark.parametrize(
    ("status", "code", "hint"),
    [
        (401, "UnauthorizedError", "check the API key and secret"),
        (403, "Forbidden", "not authorized for this account id"),
        (404, "NotFound", "check ROKT_EDGE_ROKT_URL"),
    ],
)
def test_credentials_and_configuration_problems_pause(status: int, code: str, hint: str) -> None:
    answer = body({"data": {"code": code, "message": "nope"}})

    verdict = classify(status, TRACE, answer, EVENTS)

    assert verdict.kind is Kind.PAUSE
    assert verdict.status == status
    assert verdict.message.startswith(f"{status} {code}: nope; ")
    assert hint in verdict.message
    assert verdict.trace_id == "abc-123"


def test_409_means_already_delivered() -> None:
    verdict = classify(409, TRACE, body({"data": {"code": "Conflict", "message": "seen"}}), EVENTS)
    assert verdict.kind is Kind.ALREADY_DELIVERED
    assert verdict.delivered


def test_429_is_retried_after_the_seconds_it_asks() -> None:
    verdict = classify(429, {**TRACE, "Retry-After": "30"}, b"", EVENTS)

    assert verdict.kind is Kind.RETRY
    assert verdict.retry_after == 30.0
    assert verdict.trace_id == "abc-123"


def test_retry_after_may_be_a_date() -> None:
    now = datetime(2024, 1, 18, 12, 0, 0, tzinfo=UTC)
    later = format_datetime(datetime(2024, 1, 18, 12, 2, 0, tzinfo=UTC), usegmt=True)

    assert retry_after(later, now.timestamp()) == 120.0
    assert retry_after("soon") is None
    assert retry_after("inf") is None
    assert retry_after("-5") == 0.0


@pytest.mark.parametrize(
    ("status", "code"),
    [(500, "InternalServerError"), (502, "BadGateway"), (503, "ServiceUnavailableError")],
)
def test_server_errors_are_retried(status: int, code: str) -> None:
    answer = body({"data": {"code": code, "message": "try later"}})

    verdict = classify(status, {"x-rokt-trace-id": "t-5"}, answer, EVENTS)

    assert verdict.kind is Kind.RETRY
    assert verdict.retry_after is None
    assert verdict.message == f"{status} {code}: try later"
    assert verdict.trace_id == "t-5"


def test_an_unreadable_error_body_is_quoted_briefly() -> None:
    verdict = classify(502, {}, b"<html>" + b"x" * 2000, EVENTS)
    assert verdict.message.startswith("502 <html>xxx")
    assert len(verdict.message) <= 504
    assert verdict.trace_id is None


@pytest.mark.anyio
async def test_end_to_end_a_partial_failure_from_the_fake(event_api: FakeEventApi) -> None:
    # Given the upstream will not process one event of a request of three
    event_api.unprocessed[EVENTS[2]["clientEventId"]] = ("ValidationError", "Invalid content")
    events = [
        {**event, "eventTime": "2024-01-18T12:00:00.000Z", "objectData": []} for event in EVENTS
    ]
    request = UpstreamRequest("/v2/events", {"accountId": "12345", "events": events}, 3)

    # When it is sent and the answer classified
    async with httpx.AsyncClient() as client:
        auth = KeyAuth("rpub-test-1", "rsec-test-1")
        response = await post_events(client, event_api.url, auth, request)
    verdict = classify(response.status_code, response.headers, response.content, events)

    # Then only that event failed, with the upstream's code and message and the trace id
    assert verdict.kind is Kind.PARTIAL
    assert verdict.failed == {2: "ValidationError: Invalid content"}
    assert verdict.trace_id == "trace-1"


@pytest.mark.anyio
async def test_end_to_end_a_scripted_outage_from_the_fake(event_api: FakeEventApi) -> None:
    event_api.faults.append(
        Fault(503, {"data": {"code": "ServiceUnavailableError"}}, {"Retry-After": "7"})
    )
    request = UpstreamRequest("/v2/events", {"accountId": "12345", "events": EVENTS}, 3)

    async with httpx.AsyncClient() as client:
        response = await post_events(client, event_api.url, KeyAuth("k", "s"), request)
    verdict = classify(response.status_code, response.headers, response.content, EVENTS)

    assert (verdict.kind, verdict.retry_after, verdict.trace_id) == (Kind.RETRY, 7.0, "trace-1")


@pytest.mark.anyio
async def test_the_fake_insists_on_the_version_header(event_api: FakeEventApi) -> None:
    # So that the header tests above mean something: without Rokt-Version the fake says 400
    events = [{**EVENTS[0], "eventTime": "2024-01-18T12:00:00.000Z"}]
    async with httpx.AsyncClient() as client:
        headers = await KeyAuth("rpub-test-1", "rsec-test-1").headers({})
        del headers["Rokt-Version"]
        response = await client.post(
            event_api.url + "/v2/events",
            headers=headers,
            json={"accountId": "12345", "events": events},
        )
    verdict = classify(response.status_code, response.headers, response.content, events)
    assert (verdict.kind, verdict.failed) == (
        Kind.REJECTED,
        {0: "400 RequestValidationError: bad Rokt-Version"},
    )


@pytest.mark.anyio
async def test_events_the_contract_builds_pass_the_fakes_validation(
    event_api: FakeEventApi,
) -> None:
    contract = EventApiContract("12345", plain_ids_for="Send", metadata=[("sourceServer", "x")])
    mapped = [
        Mapped(
            mapping="Send" if number % 2 else "Other",
            message_id=f"message-{number:040d}",  # longer than 36: derived ids
            timestamp_ms=int(time.time() * 1000) - number,
            conversion_type="Order Completed",
            email=f"{number}@example.com",
            amount=number,
            user_agent="Mozilla/5.0 (Windows NT 10.0; Win64; x64) Firefox/120.0",
        )
        for number in range(150)
    ]
    requests = contract.pack([contract.build(item) for item in mapped])

    async with httpx.AsyncClient() as client:
        auth = KeyAuth("rpub-test-1", "rsec-test-1")
        for request in requests:
            response = await post_events(client, event_api.url, auth, request)
            verdict = classify(
                response.status_code, response.headers, response.content, request.body["events"]
            )
            assert verdict.kind is Kind.DELIVERED, verdict.message

    assert [len(received.body["events"]) for received in event_api.received] == [100, 50]
