"""Upstream-ready items for tests, built the way the pipeline builds them (capi.build_batch).

`Item` has the shape of `edge.rokt.pipeline.Outbound` (what the store accepts); it is spelled out
here so store and sender tests do not need the mapping modules.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from edge.rokt import capi
from edge.rokt.fields import Mapped

MAPPING = "Send"


@dataclass(frozen=True, slots=True)
class Item:
    key: str
    mapping: str
    message_id: str
    timestamp_ms: int
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Skip:
    message_id: str
    reason: str
    mapping: str | None = None


def conversion(n: int, *, age_seconds: float = 60.0, **fields: Any) -> Item:
    """Order n: a conversion with an email and a click id, `age_seconds` old."""
    message_id = f"msg-{n:06d}"
    timestamp_ms = int((time.time() - age_seconds) * 1000)
    mapped = Mapped(
        mapping=MAPPING,
        message_id=message_id,
        timestamp_ms=timestamp_ms,
        conversion_type="Order Completed",
        confirmation_ref=f"order-{n}",
        amount=10.0 + n,
        currency="USD",
        email=f"buyer{n}@example.com",
        click_id=f"rtid-{n}",
        **fields,
    )
    body = capi.build_batch(mapped)
    assert body["source_request_id"]
    return Item(f"{MAPPING}\n{message_id}", MAPPING, message_id, timestamp_ms, body)


def conversions(count: int, start: int = 0, **fields: Any) -> list[Item]:
    return [conversion(n, **fields) for n in range(start, start + count)]


def message_ids(batches: list[dict[str, Any]]) -> list[str]:
    return [event["data"]["source_message_id"] for batch in batches for event in batch["events"]]
