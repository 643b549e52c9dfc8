"""The retry policy: capped, exponential, jittered; Retry-After read in both of its forms."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from edge.delivery.backoff import MAX_RETRY_AFTER, backoff, retry_after


def http_date(epoch: float) -> str:
    """An HTTP date, as a Retry-After header may carry it."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")


def test_the_delay_doubles_with_each_failure_until_the_cap() -> None:
    longest = [backoff(n, base=1, cap=60, random_fraction=lambda: 1.0) for n in range(1, 9)]
    assert longest == [1, 2, 4, 8, 16, 32, 60, 60]


def test_jitter_keeps_at_least_half_of_the_delay() -> None:
    assert backoff(3, base=1, cap=60, random_fraction=lambda: 0.0) == 2.0
    for _ in range(1000):
        assert 2.0 <= backoff(3, base=1, cap=60) <= 4.0


def test_even_absurd_attempt_numbers_stay_within_the_cap() -> None:
    assert backoff(10_000, base=0.5, cap=300) <= 300
    assert backoff(0, base=0.5, cap=300) <= 0.5


@pytest.mark.parametrize(
    ("header", "expected"),
    [("7", 7.0), (" 2.5 ", 2.5), ("-3", 0.0), ("999999", MAX_RETRY_AFTER), ("soon", None)],
)
def test_retry_after_in_seconds(header: str, expected: float | None) -> None:
    assert retry_after(header, now=0.0) == expected


def test_retry_after_as_an_http_date() -> None:
    now = time.time()
    seconds = retry_after(http_date(now + 30), now)
    assert seconds is not None
    assert 28.0 <= seconds <= 30.0


def test_no_retry_after_header() -> None:
    assert retry_after(None, now=0.0) is None
