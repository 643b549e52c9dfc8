"""Requests built from stored batches without decoding them.

The outbox keeps each batch as the exact JSON text `capi.encode` made of it, so a `/bulkevents`
body is those texts joined: `[a,b,c]` is, byte for byte, `capi.encode([A, B, C])`. `pack` groups
them by `capi.pack`'s rules (≤ 100 batches, ≤ 256 KB; a test holds the two equal), which spares
the delivery path a JSON decode and two encodes per batch.
"""

from __future__ import annotations

from collections.abc import Sequence

from edge.rokt.capi import MAX_BATCHES_PER_REQUEST, MAX_BODY_BYTES


def byte_size(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8"))


def pack(texts: Sequence[str]) -> list[slice]:
    """Consecutive slices of `texts`, one per request, exactly as `capi.pack` would group them."""
    groups: list[slice] = []
    start, size = 0, 0
    for index, text in enumerate(texts):
        batch_size = byte_size(text) + 1  # the comma or bracket that joins it
        if index > start and (
            index - start >= MAX_BATCHES_PER_REQUEST or size + batch_size + 1 > MAX_BODY_BYTES
        ):
            groups.append(slice(start, index))
            start, size = index, 0
        size += batch_size
    if texts:
        groups.append(slice(start, len(texts)))
    return groups


def request(texts: Sequence[str]) -> tuple[str, bytes]:
    """The path and body for these batches: `/events` for one, `/bulkevents` for more."""
    if len(texts) == 1:
        return "/events", texts[0].encode("utf-8")
    return "/bulkevents", ("[" + ",".join(texts) + "]").encode("utf-8")
