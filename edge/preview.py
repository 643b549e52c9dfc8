"""`rokt-edge preview`: what the pipeline would send for some events, without sending anything.

Input is one JSON object, a JSON array of them, or JSON lines. Output is one JSON document:
the exact upstream requests (method, URL, body), then each event that produced nothing with the
reason, each invalid event with its error, and each warning (a field left out, and why).

What the pipeline would store, the sender may still not send: the upstream's wire judges each
item at send time (contract A's 30-day data-age limit) and dead-letters it `expired`. Preview
asks the same wire, on its own clock, and lists such an item as skipped with that reason and
the wire's message, not in the requests.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from edge.events import EventError, parse_event
from edge.jsontext import encode
from edge.pipeline.pipeline import Outbound, Outcome, Pipeline
from edge.settings import Settings
from edge.store.outbox import Claims
from edge.store.values import DeadLetter
from edge.upstreams import upstream_for


class UnreadableInput(ValueError):
    """Input that is not JSON, a JSON array or JSON lines; the message says where it broke."""


def read_events(text: str) -> list[Any]:
    """The events in `text`: one object, an array, or one JSON value per line."""
    stripped = text.strip()
    if not stripped:
        return []
    try:
        document = json.loads(stripped)
    except json.JSONDecodeError as whole_error:
        if "\n" not in stripped:
            raise UnreadableInput(f"not JSON: {whole_error}") from None
        return _json_lines(stripped)
    return document if isinstance(document, list) else [document]


def _json_lines(text: str) -> list[Any]:
    events = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise UnreadableInput(f"line {number}: not JSON: {error}") from None
    return events


def preview(
    raw_events: list[Any], pipeline: Pipeline, now: float | None = None
) -> tuple[dict[str, Any], bool]:
    """The preview document, and whether every event was understood. `now` (epoch seconds,
    by default the current time) is the sender's clock for the items it would not send."""
    outcomes: list[tuple[dict[str, Any], Outcome]] = []
    skipped: list[dict[str, Any]] = []
    invalid: list[dict[str, Any]] = []
    warnings: list[dict[str, Any]] = []
    for index, raw in enumerate(raw_events):
        try:
            event = parse_event(raw, index)
        except EventError as error:
            invalid.append({"event": index, "error": str(error)})
            continue
        for outcome in pipeline.process(event):
            where = {"event": index, "messageId": outcome.message_id, "mapping": outcome.mapping}
            warnings.extend({**where, "warning": text} for text in outcome.warnings)
            outcomes.append((where, outcome))
    sendable = [
        (number, outcome)
        for number, (_, outcome) in enumerate(outcomes)
        if isinstance(outcome, Outbound)
    ]
    unsendable = not_sent(sendable, pipeline.settings, time.time() if now is None else now)
    bodies: list[dict[str, Any]] = []
    for number, (where, outcome) in enumerate(outcomes):
        if not isinstance(outcome, Outbound):
            skipped.append({**where, "reason": outcome.reason})
        elif (letter := unsendable.get(number)) is not None:
            skipped.append({**where, "reason": letter.reason, "message": letter.message})
        else:
            bodies.append(outcome.body)
    base = pipeline.settings.upstream_url
    requests = [
        {"method": "POST", "url": base + request.path, "body": request.body}
        for request in pipeline.contract.pack(bodies)
    ]
    document = {
        "upstream": pipeline.settings.upstream,
        "dry_run": pipeline.settings.dry_run,
        "requests": requests,
        "skipped": skipped,
        "invalid": invalid,
        "warnings": warnings,
    }
    return document, not invalid


def not_sent(
    items: Sequence[tuple[int, Outbound]], settings: Settings, now: float
) -> dict[int, DeadLetter]:
    """What the sender would dead-letter instead of sending at `now`, by the given numbers:
    the configured upstream's wire judges the items as it does claimed ones (`Wire.prepare`),
    so preview and sender share one rule."""
    if not items:
        return {}
    claims = Claims.of(
        [number for number, _ in items],
        [encode(item.body).decode("utf-8") for _, item in items],
        [item.timestamp_ms for _, item in items],
    )
    dead, _ = upstream_for(settings).wire(settings, lambda: now).prepare(claims, now)
    return {letter.id: letter for letter in dead}
