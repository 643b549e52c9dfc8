"""Contract A's wire: the URLs it sends to, whatever form the upstream URL setting takes."""

from __future__ import annotations

import time

import httpx
import pytest

from edge.settings import Settings
from edge.upstreams.capi.contract import BULK_EVENTS_PATH, EVENTS_PATH
from edge.upstreams.capi.wire import CapiWire


@pytest.mark.parametrize(
    ("base", "expected"),
    [
        ("http://127.0.0.1:9000", "http://127.0.0.1:9000"),  # a bare host: no path of its own
        ("https://inbound.mparticle.com/s2s/v2", "https://inbound.mparticle.com/s2s/v2"),
    ],
)
def test_each_path_is_joined_to_the_upstream_url(base: str, expected: str) -> None:
    wire = CapiWire(Settings(rokt_url=base), time.time)
    wire.bind(httpx.AsyncClient(base_url=base))
    assert {path: str(url) for path, url in wire._urls.items()} == {
        EVENTS_PATH: f"{expected}/events",
        BULK_EVENTS_PATH: f"{expected}/bulkevents",
    }
