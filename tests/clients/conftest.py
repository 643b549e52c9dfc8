"""Fixtures for the harness's own tests: two Recorders on two loopback origins (the first also
serving analytics.js pages) and Chromium. Tests against the edge use tests/clients/harness.py
directly (SegmentPages wrapped around the edge's app, open_analytics, run_analytics_node)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

from tests.clients.harness import Recorder, SegmentPages, chromium
from tests.live import serve

if TYPE_CHECKING:
    from playwright.sync_api import Browser


@dataclass(frozen=True)
class Loopback:
    """`pages` and `here` share the origin `origin`; `there` is a Recorder on `other_origin`."""

    pages: SegmentPages
    here: Recorder
    origin: str
    there: Recorder
    other_origin: str


@pytest.fixture(scope="module")
def _servers() -> Iterator[Loopback]:
    here, there = Recorder(), Recorder()
    pages = SegmentPages(here)
    with serve(pages) as origin, serve(there) as other_origin:
        yield Loopback(pages, here, origin, there, other_origin)


@pytest.fixture
def loopback(_servers: Loopback) -> Loopback:
    _servers.here.clear()
    _servers.there.clear()
    return _servers


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as browser:
        yield browser
