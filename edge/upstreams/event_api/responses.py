"""The Event API's answers, classified into `Verdict`s (see `edge.delivery.verdict`) for the sender.

    200  {"data": {"unprocessedRecords": []}}         DELIVERED
    200  with unprocessedRecords                      PARTIAL: each record's event (found by its
                                                      clientEventId) fails with "<code>: <message>"
    409  (a repeated v1 Idempotency-Key)              ALREADY_DELIVERED
    400  RequestBodyReadError, RequestJsonUnmarshal-  REJECTED, with data.code and data.message
         Error, RequestValidationError; other 4xx
    401  UnauthorizedError, 403 Forbidden, 404, 3xx   PAUSE (credentials or URL)
    408, 429, 5xx                                     RETRY, after Retry-After when given

A 200 whose unprocessed records cannot all be matched to events is REJECTED when the request
held several events: splitting it finds the failed ones (events sent again carry the same
clientEventId, so the upstream can tell them apart from new ones).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from email.utils import parsedate_to_datetime
from typing import Any, Final

from edge.delivery.verdict import Kind, Verdict

TRACE_HEADER: Final = "x-rokt-trace-id"
MAX_MESSAGE_CHARS: Final = 500  # of an unreadable answer, quoted in messages
PAUSE_HINTS: Final[Mapping[int, str]] = {
    401: "check the API key and secret (rpub/rsec for v2, app id and secret for v1)",
    403: "the credentials are not authorized for this account id",
    404: "check ROKT_EDGE_ROKT_URL",
    405: "check ROKT_EDGE_ROKT_URL",
}


def classify(
    status: int,
    headers: Mapping[str, str],
    body: bytes | str,
    events: Sequence[Mapping[str, Any]],
    *,
    now: float | None = None,
) -> Verdict:
    """The verdict on a request of `events` (in request order) answered with `status`,
    `headers` and `body`; `now` (epoch seconds) reads a Retry-After given as a date."""
    lowered = {name.lower(): value for name, value in headers.items()}
    trace_id = lowered.get(TRACE_HEADER)
    document = _json(body)
    if 200 <= status < 300:
        return _accepted(status, document, events, trace_id)
    error = _error(document, body)
    if status == 409:
        return Verdict(
            Kind.ALREADY_DELIVERED, status, trace_id=trace_id, message=f"409 {error}".strip()
        )
    if status in PAUSE_HINTS or 300 <= status < 400:
        hint = PAUSE_HINTS.get(status, "a redirect; set ROKT_EDGE_ROKT_URL to its target")
        return Verdict(Kind.PAUSE, status, trace_id=trace_id, message=f"{status} {error}; {hint}")
    if status in (408, 429) or status >= 500:
        return Verdict(
            Kind.RETRY,
            status,
            retry_after=retry_after(lowered.get("retry-after"), now),
            trace_id=trace_id,
            message=f"{status} {error}".strip(),
        )
    if 400 <= status < 500:
        message = f"{status} {error}".strip()
        failed = {0: message} if len(events) == 1 else {}
        return Verdict(Kind.REJECTED, status, failed, trace_id=trace_id, message=message)
    return Verdict(Kind.RETRY, status, trace_id=trace_id, message=f"unexpected status {status}")


def _accepted(
    status: int, document: Any, events: Sequence[Mapping[str, Any]], trace_id: str | None
) -> Verdict:
    data = document.get("data") if isinstance(document, dict) else None
    records = data.get("unprocessedRecords") if isinstance(data, dict) else None
    if not isinstance(records, list) or not records:
        return Verdict(Kind.DELIVERED, status, trace_id=trace_id)
    positions: dict[str, list[int]] = {}
    for index, event in enumerate(events):
        positions.setdefault(str(event.get("clientEventId")), []).append(index)
    failed: dict[int, str] = {}
    unmatched: list[str] = []
    for record in records:
        reason = _record_reason(record)
        original = record.get("record") if isinstance(record, dict) else None
        key = original.get("clientEventId") if isinstance(original, dict) else None
        indices = positions.get(str(key)) if key is not None else None
        if indices:
            failed.update(dict.fromkeys(indices, reason))
        else:
            unmatched.append(reason)
    if unmatched and len(events) == 1:
        failed[0] = unmatched[0]
    elif unmatched:
        return Verdict(
            Kind.REJECTED,
            status,
            trace_id=trace_id,
            message=f"{len(unmatched)} unprocessed record(s) name no event of the request "
            f"(first: {unmatched[0]}); split to find them",
        )
    return Verdict(
        Kind.PARTIAL,
        status,
        failed,
        trace_id=trace_id,
        message=f"{len(failed)} of {len(events)} events unprocessed",
    )


def _record_reason(record: Any) -> str:
    error = record.get("error") if isinstance(record, dict) else None
    if not isinstance(error, dict):
        return "unprocessed (no error given)"
    return f"{error.get('code', 'Error')}: {error.get('message', '')}".rstrip(": ")


def _error(document: Any, body: bytes | str) -> str:
    """`<code>: <message>` from `{"data": {"code", "message"}}`, else the body's first chars."""
    data = document.get("data") if isinstance(document, dict) else None
    if isinstance(data, dict) and ("code" in data or "message" in data):
        return f"{data.get('code', 'Error')}: {data.get('message', '')}".rstrip(": ")
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    return text.strip()[:MAX_MESSAGE_CHARS]


def _json(body: bytes | str) -> Any:
    try:
        return json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError):
        return None


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta seconds, or an HTTP date."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        return None
    current = time.time() if now is None else now
    return max(0.0, moment.timestamp() - current)
