"""Contract B items and settings for tests: orders built the way the pipeline builds them
for the Event API (`EventApiContract`), settings pointing the sender at the fake Event API, and a
transport that records (or loses) what crosses the network."""

from __future__ import annotations

from typing import Any

import httpx

from edge.pipeline.pipeline import Outbound
from edge.settings import Settings
from edge.store.sqlite import SQLiteStore
from edge.upstreams.event_api.contract import EventApiContract
from tests.fake_event_api import FakeEventApi
from tests.outbound import MAPPING, mapped_order
from tests.sending import quick_settings

ACCOUNT = "12345"
PUBLIC_KEY, SECRET_KEY = "rpub-test-1", "rsec-test-1"
APP_ID = "40svbin0d194subpohl079rhck"
APP_SECRET = "1dimhvr1v6skae9uhvtgs3chs2astnjf0469df6ul9hurubtoovn"
MONTH = 31 * 24 * 3600


def order(n: int, *, age_seconds: float = 60.0) -> Outbound:
    """Order n as the pipeline stores it for contract B, built when it happened (so an old
    order was inside the Event API's window then); its clientEventId is `msg-n`."""
    mapped = mapped_order(n, age_seconds=age_seconds)
    stamp = mapped.timestamp_ms
    contract = EventApiContract(ACCOUNT, plain_ids_for=MAPPING, clock=lambda: stamp / 1000)
    body = contract.build(mapped)
    return Outbound(f"{MAPPING}\n{mapped.message_id}", MAPPING, mapped.message_id, stamp, body)


def orders(count: int) -> list[Outbound]:
    return [order(n) for n in range(count)]


def ids(items: list[Outbound]) -> list[str]:
    return [item.message_id for item in items]


def make_settings(fake: FakeEventApi, **overrides: Any) -> Settings:
    """Contract B with v2 keys at the fake, for a delivery loop under test."""
    values: dict[str, Any] = {
        "upstream": "event-api",
        "account_id": ACCOUNT,
        "api_key": PUBLIC_KEY,
        "api_secret": SECRET_KEY,
        "rokt_url": fake.url,
    }
    return quick_settings(**{**values, **overrides})


def v1(fake: FakeEventApi, **overrides: Any) -> Settings:
    return make_settings(
        fake, event_api_auth="v1", api_key=APP_ID, api_secret=APP_SECRET, **overrides
    )


async def delivered(store: SQLiteStore, count: int) -> bool:
    return (await store.stats()).delivered == count


class Recording(httpx.AsyncBaseTransport):
    """The network, recording each Event API request's exact bytes; it can lose the answer
    to the first one (the upstream got it, the sender never hears back)."""

    def __init__(self, *, lose_first_answer: bool = False) -> None:
        self.real = httpx.AsyncHTTPTransport()
        self.bodies: list[bytes] = []
        self.lose = lose_first_answer

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.real.handle_async_request(request)
        if request.url.path.endswith("/events"):
            self.bodies.append(request.content)
            if self.lose:
                self.lose = False
                await response.aclose()
                raise httpx.ReadTimeout("the answer was lost", request=request)
        return response

    async def aclose(self) -> None:
        await self.real.aclose()
