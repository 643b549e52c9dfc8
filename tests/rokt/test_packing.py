"""Packing stored batch texts gives the very requests capi.pack gives for the batches."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from edge.rokt import capi, packing
from edge.store.outbox import Claims


def batch(n: int, padding: int) -> dict[str, Any]:
    return {"source_request_id": f"r{n}", "events": [{"pad": "é" * (padding % 7) + "x" * padding}]}


def as_claims(batches: list[dict[str, Any]]) -> Claims:
    """The batches as a claim from the outbox would hold them."""
    texts = [capi.encode(b).decode() for b in batches]
    return Claims.of(range(len(texts)), texts, [0] * len(texts))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=60_000), max_size=250))
def test_the_same_requests_as_capi_pack(paddings: list[int]) -> None:
    batches = [batch(n, padding) for n, padding in enumerate(paddings)]
    claims = as_claims(batches)

    ours = [packing.request(claims[group]) for group in packing.pack(claims.sizes)]
    theirs = [(r.path, capi.encode(r.body)) for r in capi.pack(batches)]

    assert ours == theirs


def test_a_hundred_small_batches_make_one_request_and_the_next_starts_another() -> None:
    claims = as_claims([batch(n, 10) for n in range(101)])
    assert packing.pack(claims.sizes) == [slice(0, 100), slice(100, 101)]
    assert packing.request(claims[100:])[0] == "/events"


def test_nothing_to_pack() -> None:
    assert packing.pack([]) == []
