"""Packing stored batch texts into requests by count and bytes (contract A: ≤ 100, ≤ 256 KB)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from edge.delivery import packing
from edge.jsontext import encode
from edge.store.outbox import Claims
from edge.upstreams.capi import contract as capi
from edge.upstreams.capi.contract import MAX_BATCHES_PER_REQUEST, MAX_BODY_BYTES
from edge.upstreams.capi.wire import path_and_body


def batch(n: int, padding: int) -> dict[str, Any]:
    return {"source_request_id": f"r{n}", "events": [{"pad": "é" * (padding % 7) + "x" * padding}]}


def as_claims(batches: list[dict[str, Any]]) -> Claims:
    """The batches as a claim from the outbox would hold them."""
    texts = [encode(b).decode() for b in batches]
    return Claims.of(range(len(texts)), texts, [0] * len(texts))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=60_000), max_size=250))
def test_each_request_is_as_full_as_the_limits_allow(paddings: list[int]) -> None:
    batches = [batch(n, padding) for n, padding in enumerate(paddings)]
    claims = as_claims(batches)

    groups = packing.pack(claims.sizes, MAX_BATCHES_PER_REQUEST, MAX_BODY_BYTES)

    assert [n for group in groups for n in range(group.start, group.stop)] == list(
        range(len(batches))
    )
    for group in groups:
        count = group.stop - group.start
        body = encode(batches[group] if count > 1 else batches[group.start])
        assert path_and_body(claims[group]) == (capi.path_for(count), body)
        assert count <= MAX_BATCHES_PER_REQUEST
        assert len(body) <= MAX_BODY_BYTES or count == 1
        if group.stop < len(batches) and count < MAX_BATCHES_PER_REQUEST:
            assert len(encode(batches[group.start : group.stop + 1])) > MAX_BODY_BYTES


def test_a_hundred_small_batches_make_one_request_and_the_next_starts_another() -> None:
    claims = as_claims([batch(n, 10) for n in range(101)])
    groups = packing.pack(claims.sizes, MAX_BATCHES_PER_REQUEST, MAX_BODY_BYTES)
    assert groups == [slice(0, 100), slice(100, 101)]
    assert path_and_body(claims[100:])[0] == "/events"


def test_nothing_to_pack() -> None:
    assert packing.pack([], MAX_BATCHES_PER_REQUEST, MAX_BODY_BYTES) == []
