"""`rokt-edge preview`: what the pipeline would send for some events, without sending anything.

Input is one JSON object, a JSON array of them, or JSON lines. Output is one JSON document:
the exact upstream requests (method, URL, body), then each event that produced nothing with the
reason, each invalid event with its error, and each warning (a field left out, and why).
"""

from __future__ import annotations

import json
from typing import Any

from edge.events import EventError, parse_event
from edge.rokt.pipeline import Outbound, Pipeline


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


def preview(raw_events: list[Any], pipeline: Pipeline) -> tuple[dict[str, Any], bool]:
    """The preview document, and whether every event was understood."""
    bodies: list[dict[str, Any]] = []
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
            if isinstance(outcome, Outbound):
                bodies.append(outcome.body)
            else:
                skipped.append({**where, "reason": outcome.reason})
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
