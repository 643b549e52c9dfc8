"""Log lines that repeat once per request are throttled, so an outage cannot flood the log."""

from __future__ import annotations

import logging

import pytest

from edge.logs import Throttled


def test_a_repeated_line_is_written_once_per_interval_with_how_many_it_held(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    line = Throttled(logging.getLogger("rokt_edge.test"), logging.ERROR, 10.0, lambda: now[0])
    with caplog.at_level(logging.ERROR, "rokt_edge.test"):
        # Given a store outage refusing 1,000 requests over 25 s
        for step in range(1000):
            now[0] = 100.0 + step * 0.025
            line.log("the store could not write: %s", "disk full")

    # Then three lines say so, and how many more there were
    assert [record.getMessage() for record in caplog.records] == [
        "the store could not write: disk full",
        "the store could not write: disk full (and 399 more like it in the last 10 s)",
        "the store could not write: disk full (and 399 more like it in the last 10 s)",
    ]
