"""Intake sheds load rather than grow a backlog without bound, and a flood of wrong write keys
costs the edge next to nothing. Through the running edge, with real sockets."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge.processing import shed
from edge.store.errors import StoreUnavailable
from edge.store.sqlite import SQLiteStore
from edge.store.values import Intake, PutResult
from tests.fake_capi import FakeCapi
from tests.live import LiveEdge, wait_for
from tests.shop import WRITE_KEY, api, basic, order, shop_settings


class StalledProcessing(SQLiteStore):
    """A store that takes requests but cannot settle them while `stalled` (processing fails
    and retries, as with a bug or a sick disk), so they pile up."""

    stalled = True

    async def settle(self, ids: Any, intake: Intake) -> PutResult:
        if self.stalled:
            raise StoreUnavailable("settle stalled (injected)")
        return await super().settle(ids, intake)


def beacon(live: LiveEdge, n: int) -> httpx.Response:
    body = {"type": "track", "userId": f"u-{n}", **order(f"o-{n}")}
    return httpx.post(live.url + "/e", content=json.dumps(body))


def test_the_decision_to_shed() -> None:
    assert not shed(9, 59.0, max_requests=10, max_seconds=60)
    assert not shed(0, None, max_requests=10, max_seconds=60)
    assert shed(10, 1.0, max_requests=10, max_seconds=60)  # too many wait
    assert shed(1, 60.0, max_requests=10, max_seconds=60)  # the oldest waited too long


def test_a_backlog_past_its_bound_is_answered_503_with_retry_after_until_it_drains(
    tmp_path: Path, fake: FakeCapi
) -> None:
    # Given an edge whose processing cannot keep up (here: cannot settle at all), which keeps
    # at most 5 requests waiting
    settings = shop_settings(tmp_path, fake, backlog_max_requests=5, client_rate_limit=0)
    store = StalledProcessing(tmp_path / "edge.db")
    try:
        with LiveEdge(settings, store=store) as live:
            # When beacons keep coming
            answers = [beacon(live, n).status_code for n in range(8)]

            # Then the first five are taken and the rest refused, telling when to come back
            assert answers == [200] * 5 + [503] * 3
            refused = beacon(live, 99)
            assert refused.headers["retry-after"] == "5"
            assert refused.json()["error"]["code"] == "overloaded"
            # (the tracking API too)
            assert api(live, "/v1/track", order("o-api", userId="u")).status_code == 503

            # And once processing catches up, they are taken again and nothing acknowledged is lost
            store.stalled = False
            wait_for(lambda: beacon(live, 100).status_code == 200, timeout=15)
            wait_for(lambda: len(fake.accepted_message_ids()) >= 6, timeout=15)
            live.processed()
    finally:
        store.close()
    refs = {b["events"][0]["data"]["custom_attributes"]["confirmationref"]
            for r in fake.requests() for b in r.accepted}  # fmt: skip
    assert {f"o-{n}" for n in range(5)} | {"o-100"} <= refs


def test_a_backlog_whose_oldest_waited_too_long_is_shed_too(tmp_path: Path, fake: FakeCapi) -> None:
    now = [1_790_000_000.0]
    settings = shop_settings(tmp_path, fake, backlog_max_seconds=60.0, client_rate_limit=0)
    store = StalledProcessing(tmp_path / "edge.db", clock=lambda: now[0])
    try:
        with LiveEdge(settings, store=store, clock=lambda: now[0]) as live:
            assert beacon(live, 1).status_code == 200
            wait_for(lambda: live.edge.processor.oldest is not None)
            now[0] += 61  # a minute passes and the request still waits
            assert beacon(live, 2).status_code == 503
    finally:
        store.close()


# -- wrong write keys ---------------------------------------------------------------------------


@pytest.fixture
def live(tmp_path: Path, fake: FakeCapi) -> Iterator[LiveEdge]:
    with LiveEdge(shop_settings(tmp_path, fake)) as live:
        yield live


def test_a_wrong_basic_key_is_refused_before_the_body_is_read(live: LiveEdge) -> None:
    # Given a request that announces 400 KB but sends only its headers
    port = int(live.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        head = (
            "POST /v1/batch HTTP/1.1\r\nHost: edge\r\nContent-Type: application/json\r\n"
            f"Authorization: {basic('wrong-key')['authorization']}\r\n"
            "Content-Length: 400000\r\n\r\n"
        )
        connection.sendall(head.encode())
        # Then the answer comes at once, without the body
        answer = connection.recv(4096).decode()
    assert answer.startswith("HTTP/1.1 401")


def test_an_address_that_keeps_sending_wrong_keys_is_refused_before_its_bodies(
    live: LiveEdge,
) -> None:
    big = json.dumps({"batch": [{"type": "track", "event": "x" * 1000}] * 300})
    wrong = {"content-type": "application/json", **basic("wrong-key")}
    # Given an address that sent 20 requests with a wrong key
    for _ in range(20):
        assert httpx.post(live.url + "/v1/batch", content=big, headers=wrong).status_code == 401
    # Then its next ones are refused unread, saying when to retry, a right key from it too
    refused = httpx.post(live.url + "/v1/batch", content=big, headers=wrong)
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    assert api(live, "/v1/track", order("o-1", userId="u")).status_code == 429
    # while another address with the right key is served
    other = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.3"))
    with other:
        headers = {"content-type": "application/json", **basic(WRITE_KEY)}
        body = json.dumps(order("o-2", userId="u"))
        assert other.post(live.url + "/v1/track", content=body, headers=headers).status_code == 200
