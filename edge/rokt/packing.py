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
    # Sizes first (a loop in C when the texts are ASCII, as they nearly always are); then a
    # window of 100 whose sum fits is one request as it stands, since every shorter prefix of
    # it fits too. Only a window that does not fit is walked batch by batch.
    sizes = list(map(len, texts)) if all(map(str.isascii, texts)) else list(map(byte_size, texts))
    groups: list[slice] = []
    start, count = 0, len(texts)
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


def request(texts: Sequence[str]) -> tuple[str, bytes]:
    """The path and body for these batches: `/events` for one, `/bulkevents` for more."""
    if len(texts) == 1:
        return "/events", texts[0].encode("utf-8")
    return "/bulkevents", ("[" + ",".join(texts) + "]").encode("utf-8")
