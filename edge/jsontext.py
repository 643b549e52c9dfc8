"""Compact JSON as UTF-8 bytes: what the outbox stores and what the upstreams receive.

One encoding for both, so a request's body can be the stored texts joined without decoding
them (`edge.delivery.packing`), and its size measured against the upstreams' limits is the size
sent. It sits at the bottom layer, beside settings and events, so that the store and the
upstreams can both use it without either importing the other.
"""

from __future__ import annotations

import json
from typing import Any


def encode(body: Any) -> bytes:
    """The exact bytes sent upstream (and measured against the size limits)."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
