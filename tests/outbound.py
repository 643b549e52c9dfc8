"""Upstream-ready items for tests, built the way the pipeline builds them (capi.build_batch)."""

from __future__ import annotations

import time
from typing import Any

from edge.pipeline.pipeline import Outbound, Skipped
from edge.upstreams.base import Mapped
from edge.upstreams.capi import contract as capi

MAPPING = "Send"


def mapped_order(n: int, *, age_seconds: float = 60.0, **fields: Any) -> Mapped:
    """Order n as a mapping resolves it: an email and a click id, `age_seconds` old."""
    return Mapped(
        mapping=MAPPING,
        message_id=f"msg-{n:06d}",
        timestamp_ms=int((time.time() - age_seconds) * 1000),
        conversion_type="Order Completed",
        confirmation_ref=f"order-{n}",
        amount=10.0 + n,
        currency="USD",
        email=f"buyer{n}@example.com",
        click_id=f"rtid-{n}",
        **fields,
    )


def conversion(n: int, *, age_seconds: float = 60.0, **fields: Any) -> Outbound:
    """Order n as the pipeline stores it for contract A."""
    mapped = mapped_order(n, age_seconds=age_seconds, **fields)
    body = capi.build_batch(mapped)
    assert body["source_request_id"]
    key = f"{MAPPING}\n{mapped.message_id}"
    return Outbound(key, MAPPING, mapped.message_id, mapped.timestamp_ms, body)


def skipped(n: int, reason: str = "not triggered") -> Skipped:
    return Skipped(f"skip-{n:06d}", reason)


def conversions(count: int, start: int = 0, **fields: Any) -> list[Outbound]:
    return [conversion(n, **fields) for n in range(start, start + count)]


def message_ids(batches: list[dict[str, Any]]) -> list[str]:
    return [event["data"]["source_message_id"] for batch in batches for event in batch["events"]]
