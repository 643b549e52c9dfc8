"""Requests built from stored batches without decoding them.

The outbox keeps each batch as the exact JSON text `capi.encode` made of it, so a `/bulkevents`
body is those texts joined: `[a,b,c]` is, byte for byte, `capi.encode([A, B, C])`. `pack` groups
them by `capi.pack`'s rules (≤ 100 batches, ≤ 256 KB; a test holds the two equal), which spares
the delivery path a JSON decode and two encodes per batch. Both work on a claim's columns
(`edge.store.outbox.Claims`): the bodies' sizes in bytes, and the bodies as one bytes object.
"""

from __future__ import annotations

from collections.abc import Sequence

from edge.rokt.capi import (
    BULK_EVENTS_PATH,
    EVENTS_PATH,
    MAX_BATCHES_PER_REQUEST,
    MAX_BODY_BYTES,
)
from edge.store.outbox import Claims


def pack(sizes: Sequence[int]) -> list[slice]:
    """Consecutive slices of the batches whose UTF-8 sizes are `sizes`, one per request,
    exactly as `capi.pack` would group them."""
    # A window of 100 whose sum fits is one request as it stands, since every shorter prefix of
    # it fits too. Only a window that does not fit is walked batch by batch.
    groups: list[slice] = []
    start, count = 0, len(sizes)
    while start < count:
        end = min(start + MAX_BATCHES_PER_REQUEST, count)
        # Each batch takes its size and one comma or bracket; the closing bracket one more.
        if sum(sizes[start:end]) + (end - start) + 1 > MAX_BODY_BYTES:
            index, size = start, 0
            while index < end and (index == start or size + sizes[index] + 2 <= MAX_BODY_BYTES):
                size += sizes[index] + 1
                index += 1
            end = index
        groups.append(slice(start, end))
        start = end
    return groups


def request(claims: Claims) -> tuple[str, bytes]:
    """The path and body for these batches: `/events` for one, `/bulkevents` for more."""
    if len(claims) == 1:
        return EVENTS_PATH, bytes(claims.blob)
    return BULK_EVENTS_PATH, claims.between(b"[", b"]")
