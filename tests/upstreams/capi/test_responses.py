"""Contract A's answers read as Verdicts, one for each response class of spec/capi-wire.md."""

from __future__ import annotations

from typing import Any

import httpx

from edge.delivery.verdict import Kind
from edge.upstreams.capi.responses import classify

NOW = 1_700_000_000.0


def answer(status: int, body: Any = None, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


def errors(*messages: str) -> dict[str, Any]:
    return {"errors": [{"code": "BAD_REQUEST", "message": message} for message in messages]}


def test_a_202_without_errors_delivers_everything() -> None:
    verdict = classify(answer(202, {}), 3, now=NOW)
    assert (verdict.kind, verdict.status, dict(verdict.failed)) == (Kind.DELIVERED, 202, {})


def test_a_202_naming_batches_fails_only_those() -> None:
    body = errors("Bad value &quot;x&quot;. Path '[2].device_info'", "Path '[0].events'")
    verdict = classify(answer(202, body), 3, now=NOW)
    assert verdict.kind is Kind.PARTIAL
    assert dict(verdict.failed) == {
        2: "Bad value \"x\". Path '[2].device_info'",
        0: "Path '[0].events'",
    }


def test_a_202_error_naming_no_batch_rejects_the_request_to_split_it() -> None:
    verdict = classify(answer(202, errors("something is wrong")), 4, now=NOW)
    assert (verdict.kind, dict(verdict.failed)) == (Kind.REJECTED, {})


def test_a_400_for_a_lone_batch_fails_it_with_the_upstreams_message() -> None:
    verdict = classify(answer(400, errors('"event_type" is missing')), 1, now=NOW)
    assert (verdict.kind, dict(verdict.failed)) == (Kind.REJECTED, {0: '"event_type" is missing'})


def test_a_413_for_several_batches_is_split() -> None:
    verdict = classify(httpx.Response(413, text="Request Entity Too Large"), 2, now=NOW)
    assert (verdict.kind, verdict.message) == (Kind.REJECTED, "Request Entity Too Large")


def test_401_and_403_pause() -> None:
    assert classify(answer(401, errors("no auth")), 2, now=NOW).kind is Kind.PAUSE
    assert classify(httpx.Response(403, text="Forbidden"), 2, now=NOW).message == "Forbidden"


def test_429_is_retried_after_retry_after() -> None:
    verdict = classify(answer(429, headers={"Retry-After": "7"}), 2, now=NOW)
    assert (verdict.kind, verdict.retry_after) == (Kind.RETRY, 7.0)
    assert classify(answer(429), 2, now=NOW).retry_after is None


def test_5xx_and_unnamed_statuses_are_retried() -> None:
    for status in (500, 502, 503, 404, 302):
        verdict = classify(httpx.Response(status, text="Service Unavailable"), 2, now=NOW)
        assert (verdict.kind, verdict.status) == (Kind.RETRY, status)
