"""Packing bodies into requests within an upstream's limits, from their sizes alone.

The outbox keeps each body as the exact JSON text `edge.jsontext.encode` made of it, so a JSON
array of bodies is those texts joined: `[a,b,c]` is, byte for byte, `encode([A, B, C])`, and its
size is known from theirs. `pack` groups them by count and bytes (contract A: ≤ 100 batches,
≤ 256 KB), which spares the delivery path a JSON decode and two encodes per batch; a contract
packing bodies it holds as objects measures their encoded sizes and packs them by the same rule.
"""

from __future__ import annotations

from collections.abc import Sequence


def pack(sizes: Sequence[int], max_items: int, max_bytes: int) -> list[slice]:
    """Consecutive slices of the bodies whose UTF-8 sizes are `sizes`, in order, each a JSON
    array of at most `max_items` bodies and `max_bytes` bytes (a body larger than that alone is
    a request of its own)."""
    # A window of `max_items` whose sum fits is one request as it stands, since every shorter
    # prefix of it fits too. Only a window that does not fit is walked body by body.
    groups: list[slice] = []
    start, count = 0, len(sizes)
    while start < count:
        end = min(start + max_items, count)
        # Each body takes its size and one comma or bracket; the closing bracket one more.
        if sum(sizes[start:end]) + (end - start) + 1 > max_bytes:
            index, size = start, 0
            while index < end and (index == start or size + sizes[index] + 2 <= max_bytes):
                size += sizes[index] + 1
                index += 1
            end = index
        groups.append(slice(start, end))
        start = end
    return groups
