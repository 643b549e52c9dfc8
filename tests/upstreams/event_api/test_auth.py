"""Event API authentication against the fake server: v2 keys, v1 tokens (cached, renewed before
they expire and once after a 401, one refresh for many callers) and v1 idempotency keys."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from edge.delivery.verdict import Kind
from edge.settings import SettingsError, load_settings
from edge.upstreams.base import UpstreamRequest
from edge.upstreams.event_api.auth import (
    CredentialsRejected,
    KeyAuth,
    TokenAuth,
    TokenSource,
    TokenUnavailable,
    auth_for,
    idempotency_key,
    post_events,
)
from edge.upstreams.event_api.responses import classify
from tests.fake_event_api import FakeEventApi, Fault

pytestmark = pytest.mark.anyio

APP_ID = "40svbin0d194subpohl079rhck"
APP_SECRET = "1dimhvr1v6skae9uhvtgs3chs2astnjf0469df6ul9hurubtoovn"
EVENT: dict[str, Any] = {
    "clientEventId": "ff3bd69c-ca74-4337-af91-4d5d0bd00e38",
    "eventType": "conversion",
    "eventTime": "2020-05-22T10:21:29.339Z",  # the fake does not check the window
    "objectData": [{"name": "email", "value": "email123@emailserver.com"}],
}


def request(*events: dict[str, Any], path: str = "/v1/events") -> UpstreamRequest:
    chosen = list(events) or [EVENT]
    return UpstreamRequest(path, {"accountId": "12345", "events": chosen}, len(chosen))


class Clock:
    """Monotonic seconds that a test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def token_auth(client: httpx.AsyncClient, fake: FakeEventApi, clock: Clock) -> TokenAuth:
    return TokenAuth(TokenSource(client, fake.url, APP_ID, APP_SECRET, clock=clock))


async def test_v2_headers_are_exactly_the_references() -> None:
    headers = await KeyAuth("rpub-test-1", "rsec-test-1").headers({"events": [EVENT]})

    assert headers == {
        "Content-Type": "application/json",
        "Charset": "utf-8",
        "Rokt-Version": "2020-05-21",
        "Authorization": "Basic cnB1Yi10ZXN0LTE6cnNlYy10ZXN0LTE=",  # rpub-test-1:rsec-test-1
    }


async def test_v2_delivers_to_the_fake(event_api: FakeEventApi) -> None:
    async with httpx.AsyncClient() as client:
        response = await post_events(
            client, event_api.url, KeyAuth("rpub-test-1", "rsec-test-1"), request(path="/v2/events")
        )

    verdict = classify(response.status_code, response.headers, response.content, [EVENT])
    assert verdict.kind is Kind.DELIVERED
    assert verdict.trace_id == "trace-1"
    [received] = event_api.received
    assert received.body == {"accountId": "12345", "events": [EVENT]}
    assert "idempotency-key" not in received.headers  # a v1 header


async def test_v2_with_a_wrong_secret_pauses_without_retrying(event_api: FakeEventApi) -> None:
    async with httpx.AsyncClient() as client:
        wrong = KeyAuth("rpub-test-1", "rsec-wrong")
        response = await post_events(client, event_api.url, wrong, request(path="/v2/events"))

    verdict = classify(response.status_code, response.headers, response.content, [EVENT])
    assert verdict.kind is Kind.PAUSE
    assert verdict.message.startswith("401 UnauthorizedError: invalid authentication; check")
    assert len(event_api.received) == 1


async def test_a_v1_token_is_fetched_once_and_reused(event_api: FakeEventApi) -> None:
    async with httpx.AsyncClient() as client:
        auth = token_auth(client, event_api, Clock())
        for number in range(3):
            event = {**EVENT, "clientEventId": f"e-{number}"}
            response = await post_events(client, event_api.url, auth, request(event))
            assert response.status_code == 200

    [token_request] = event_api.token_requests
    assert token_request.body == {"grant_type": "client_credentials"}
    assert token_request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert token_request.headers["authorization"] == event_api.app_authorization
    assert {received.headers["authorization"] for received in event_api.received} == {
        "Bearer token-1"
    }


async def test_a_v1_token_is_renewed_five_minutes_before_it_expires(
    event_api: FakeEventApi,
) -> None:
    clock = Clock()
    async with httpx.AsyncClient() as client:
        tokens = TokenSource(client, event_api.url, APP_ID, APP_SECRET, clock=clock)
        first = await tokens.token()
        clock.now += 3600 - 300 - 1  # expires_in 3600: still well within its life
        assert await tokens.token() == first
        clock.now += 2  # less than five minutes left
        assert await tokens.token() == "token-2"


async def test_a_short_lived_token_is_renewed_at_nine_tenths_of_its_life(
    event_api: FakeEventApi,
) -> None:
    event_api.token_life = 100
    clock = Clock()
    async with httpx.AsyncClient() as client:
        tokens = TokenSource(client, event_api.url, APP_ID, APP_SECRET, clock=clock)
        await tokens.token()
        clock.now += 89
        assert await tokens.token() == "token-1"
        clock.now += 2
        assert await tokens.token() == "token-2"


async def test_a_401_renews_the_token_once_and_sends_again(event_api: FakeEventApi) -> None:
    async with httpx.AsyncClient() as client:
        auth = token_auth(client, event_api, Clock())
        await auth.tokens.token()
        # Given the upstream has forgotten the token we hold
        event_api.revoke_tokens()

        response = await post_events(client, event_api.url, auth, request())

    assert response.status_code == 200
    assert [received.headers["authorization"] for received in event_api.received] == [
        "Bearer token-1",
        "Bearer token-2",
    ]


async def test_a_second_401_is_returned_for_the_sender_to_pause(event_api: FakeEventApi) -> None:
    unauthorized = Fault(401, {"data": {"code": "UnauthorizedError", "message": "no"}})
    event_api.faults.extend([unauthorized, unauthorized])
    async with httpx.AsyncClient() as client:
        response = await post_events(
            client, event_api.url, token_auth(client, event_api, Clock()), request()
        )

    assert response.status_code == 401
    assert len(event_api.received) == 2  # renewed once, not in a loop
    assert len(event_api.token_requests) == 2


async def test_concurrent_senders_share_one_token_refresh(event_api: FakeEventApi) -> None:
    async with httpx.AsyncClient() as client:
        tokens = TokenSource(client, event_api.url, APP_ID, APP_SECRET, clock=Clock())

        got = await asyncio.gather(*(tokens.token() for _ in range(20)))

        assert set(got) == {"token-1"}
        # Twenty requests that failed with the same token renew it once
        for _ in range(20):
            tokens.invalidate("token-1")
        again = await asyncio.gather(*(tokens.token() for _ in range(20)))
    assert set(again) == {"token-2"}
    assert len(event_api.token_requests) == 2


async def test_wrong_app_credentials_are_rejected(event_api: FakeEventApi) -> None:
    async with httpx.AsyncClient() as client:
        tokens = TokenSource(client, event_api.url, APP_ID, "not-the-secret")
        with pytest.raises(CredentialsRejected) as error:
            await tokens.token()
    assert "401" in str(error.value)
    assert "not-the-secret" not in str(error.value)


async def test_a_token_endpoint_outage_is_worth_retrying(event_api: FakeEventApi) -> None:
    event_api.token_faults.append(Fault(503, {"message": "down"}))
    async with httpx.AsyncClient() as client:
        tokens = TokenSource(client, event_api.url, APP_ID, APP_SECRET)
        with pytest.raises(TokenUnavailable, match="503"):
            await tokens.token()
        assert await tokens.token() == "token-2"  # the next attempt works


async def test_an_answer_without_a_token_is_worth_retrying(event_api: FakeEventApi) -> None:
    event_api.token_faults.append(Fault(200, {"token_type": "Bearer"}))
    async with httpx.AsyncClient() as client:
        with pytest.raises(TokenUnavailable, match="without access_token"):
            await TokenSource(client, event_api.url, APP_ID, APP_SECRET).token()


@pytest.mark.parametrize("life", [10**400, "1e999x", [1]], ids=["huge", "text", "list"])
async def test_an_unusable_expires_in_is_worth_retrying(event_api: FakeEventApi, life: Any) -> None:
    # 10**400 is valid JSON that float() cannot hold (OverflowError, which stopped delivery).
    event_api.token_faults.append(Fault(200, {"access_token": "t", "expires_in": life}))
    async with httpx.AsyncClient() as client:
        with pytest.raises(TokenUnavailable):
            await TokenSource(client, event_api.url, APP_ID, APP_SECRET).token()


async def test_v1_sends_an_idempotency_key_and_a_repeat_is_already_delivered(
    event_api: FakeEventApi,
) -> None:
    async with httpx.AsyncClient() as client:
        auth = token_auth(client, event_api, Clock())
        first = await post_events(client, event_api.url, auth, request())
        # The sender did not see the answer (say, a timeout) and sends the request again
        again = await post_events(client, event_api.url, auth, request())

    assert first.status_code == 200
    keys = [received.headers["idempotency-key"] for received in event_api.received]
    assert keys == [idempotency_key([EVENT])] * 2
    verdict = classify(again.status_code, again.headers, again.content, [EVENT])
    assert verdict.kind is Kind.ALREADY_DELIVERED
    assert verdict.delivered


def test_idempotency_keys_follow_the_events() -> None:
    other = {**EVENT, "clientEventId": "other"}
    assert idempotency_key([EVENT, other]) == idempotency_key([EVENT, other])
    assert idempotency_key([EVENT, other]) != idempotency_key([other, EVENT])
    assert idempotency_key([EVENT]) != idempotency_key([EVENT, other])


async def test_auth_follows_the_settings() -> None:
    credentials = {"ROKT_EDGE_API_KEY": "id", "ROKT_EDGE_API_SECRET": "secret"}
    base = {"ROKT_EDGE_UPSTREAM": "event-api", "ROKT_EDGE_ACCOUNT_ID": "1", **credentials}
    async with httpx.AsyncClient() as client:
        assert isinstance(auth_for(load_settings(base), client), KeyAuth)
        v1 = auth_for(load_settings({**base, "ROKT_EDGE_EVENT_API_AUTH": "v1"}), client)
        assert isinstance(v1, TokenAuth)
        assert "secret" not in repr(v1.tokens)
        with pytest.raises(SettingsError, match="needs ROKT_EDGE_API_KEY"):
            auth_for(load_settings({"ROKT_EDGE_UPSTREAM": "event-api"}), client)


async def test_an_unreachable_token_endpoint_is_worth_retrying() -> None:
    async with httpx.AsyncClient() as client:
        tokens = TokenSource(client, "http://127.0.0.1:1", APP_ID, APP_SECRET)
        with pytest.raises(TokenUnavailable, match="ConnectError"):
            await tokens.token()
