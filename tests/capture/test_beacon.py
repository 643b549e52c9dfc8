"""The beacon, `POST /e`, served by a real uvicorn server, delivering to a fake Rokt on loopback."""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from edge.events import NOT_TEXT
from edge.settings import Settings
from edge.store.errors import StoreUnavailable
from edge.store.sqlite import SQLiteStore
from tests.fake_capi import FakeCapi, Reply
from tests.live import FailingStore, LiveEdge, wait_for

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
BROWSER = {"content-type": "text/plain", "user-agent": CHROME}


def landing(rtid: str = "CLICK-X", anonymous_id: str = "anon-1") -> dict[str, Any]:
    return {
        "type": "page",
        "anonymousId": anonymous_id,
        "context": {"page": {"url": f"https://shop.example/landing?rtid={rtid}"}},
    }


def order(order_id: str = "o-1", **fields: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "event": "Order Completed",
        "properties": {"order_id": order_id, "revenue": 42},
        **fields,
    }


@pytest.fixture
def settings(tmp_path: Path, fake: FakeCapi) -> Settings:
    return Settings(
        api_key=fake.api_key,
        api_secret=fake.api_secret,
        rokt_url=fake.url,
        database_url=f"sqlite:///{tmp_path / 'edge.db'}",
        poll_interval=0.05,
        backoff_base=0.05,
        pause_retry=0.2,
    )


@pytest.fixture
def live(settings: Settings) -> Iterator[LiveEdge]:
    with LiveEdge(settings) as live:
        yield live


def post(live: LiveEdge, body: Any, **options: Any) -> httpx.Response:
    headers = {**BROWSER, **options.pop("headers", {})}
    content = body if isinstance(body, bytes | str) else json.dumps(body)
    with httpx.Client(**options) as client:
        return client.post(live.url + "/e", content=content, headers=headers)


def delivered(fake: FakeCapi) -> list[dict[str, Any]]:
    """The batches the fake Rokt accepted, in order."""
    return [batch for request in fake.requests() for batch in request.accepted]


def database(settings: Settings) -> sqlite3.Connection:
    return sqlite3.connect(settings.database_url.removeprefix("sqlite:///"))


def test_a_click_remembered_by_cookie_reaches_rokt_with_the_conversion(
    live: LiveEdge, fake: FakeCapi
) -> None:
    # Given a shopper who lands from a Rokt ad with ?rtid=CLICK-X
    landed = post(live, landing("CLICK-X"))
    assert landed.status_code == 200
    cookie = landed.headers["set-cookie"]
    assert cookie.startswith("rokt_edge=")
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # plain http here

    # When the same browser later completes an order, with no click id in the event itself
    converted = post(live, order(), cookies={"rokt_edge": landed.cookies["rokt_edge"]})
    assert converted.status_code == 200

    # Then Rokt receives the conversion with the click id, the client IP and the user agent
    wait_for(lambda: delivered(fake))
    [batch] = delivered(fake)
    assert batch["integration_attributes"]["1277"]["passbackconversiontrackingid"] == "CLICK-X"
    assert batch["user_identities"]["other2"] == "CLICK-X"
    assert batch["ip"] == "127.0.0.1"
    assert batch["device_info"]["http_header_user_agent"] == CHROME
    assert batch["events"][0]["data"]["custom_attributes"]["confirmationref"] == "o-1"


def test_the_identity_store_finds_the_click_for_a_user_on_another_device(
    live: LiveEdge, fake: FakeCapi
) -> None:
    # Given a click seen for anonymous visitor A, who then identifies as user U
    post(live, landing("CLICK-Y", anonymous_id="A"))
    post(live, {"type": "identify", "anonymousId": "A", "userId": "U"})

    # When user U orders from a browser without the cookie
    post(live, order(userId="U"))

    # Then the conversion carries the click id that U's identity links to
    wait_for(lambda: delivered(fake))
    [batch] = delivered(fake)
    assert batch["integration_attributes"]["1277"]["passbackconversiontrackingid"] == "CLICK-Y"
    assert batch["user_identities"]["customerid"] == "U"


def test_a_tampered_cookie_is_ignored_never_an_error(live: LiveEdge, fake: FakeCapi) -> None:
    landed = post(live, landing("CLICK-X"))
    forged = landed.cookies["rokt_edge"][:-4] + "AAAA"

    response = post(live, order(userId="u-1"), cookies={"rokt_edge": forged})

    assert response.status_code == 200
    assert response.headers["set-cookie"].startswith("rokt_edge=")  # a fresh, valid cookie
    wait_for(lambda: delivered(fake))
    assert "integration_attributes" not in delivered(fake)[0]


def test_gpc_is_acknowledged_but_not_forwarded_and_nothing_personal_is_stored(
    live: LiveEdge, fake: FakeCapi, settings: Settings
) -> None:
    response = post(live, {"batch": [landing(), order(userId="u-1")]}, headers={"Sec-GPC": "1"})

    assert response.status_code == 200
    assert "set-cookie" not in response.headers
    live.processed()
    with database(settings) as db:
        assert db.execute("SELECT reason, count(*) FROM skipped GROUP BY reason").fetchall() == [
            ("gpc", 2)
        ]
        assert db.execute("SELECT count(*) FROM identities").fetchone() == (0,)
        assert db.execute("SELECT count(*) FROM outbox").fetchone() == (0,)
    assert fake.requests() == []


def test_a_consent_denial_is_skipped_as_no_consent(live: LiveEdge, settings: Settings) -> None:
    denied = order(
        userId="u-1", context={"consent": {"categoryPreferences": {"Advertising": False}}}
    )

    assert post(live, denied).status_code == 200

    live.processed()
    with database(settings) as db:
        assert db.execute("SELECT reason FROM skipped").fetchall() == [("no-consent",)]
        assert db.execute("SELECT count(*) FROM outbox").fetchone() == (0,)


def test_bots_are_skipped(live: LiveEdge, settings: Settings) -> None:
    assert post(live, order(userId="u"), headers={"user-agent": GOOGLEBOT}).status_code == 200

    live.processed()
    with database(settings) as db:
        assert db.execute("SELECT reason FROM skipped").fetchall() == [("bot",)]


@pytest.mark.parametrize(
    ("content_type", "body", "status", "code"),
    [
        ("application/x-www-form-urlencoded", "a=b", 415, "unsupported_media_type"),
        ("text/plain", "{not json", 400, "invalid_json"),
        ("text/plain", "[" * 30_000, 400, "invalid_json"),
        ("text/plain", "42", 400, "invalid_body"),
        ("text/plain", '{"type": "launch"}', 400, "invalid_event"),
        ("text/plain", "x" * 70_000, 413, "too_large"),
        ("text/plain", json.dumps({"batch": [{"type": "page"}] * 101}), 413, "too_many_events"),
    ],
)
def test_bad_requests_get_json_errors(
    live: LiveEdge, content_type: str, body: str, status: int, code: str
) -> None:
    response = post(live, body, headers={"content-type": content_type})

    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"]


def test_a_body_without_a_declared_length_is_read_in_chunks_up_to_the_limit(
    live: LiveEdge,
) -> None:
    text = json.dumps(order(userId="u")).encode()

    def chunked(body: bytes, size: int) -> Iterator[bytes]:  # no Content-Length: chunked
        yield from (body[start : start + size] for start in range(0, len(body), size))

    with httpx.Client() as client:
        fits = client.post(live.url + "/e", content=chunked(text, 16), headers=BROWSER)
        over = client.post(live.url + "/e", content=chunked(b" " * 70_000, 4096), headers=BROWSER)

    assert fits.json() == {"success": True, "accepted": 1}
    assert over.status_code == 413
    assert over.json()["error"]["code"] == "too_large"


def test_a_body_cut_short_by_the_client_going_away_is_not_stored(
    live: LiveEdge, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    # The part that came is a whole order, but the request said more would follow.
    part = json.dumps(order("o-cut", userId="u")).encode()
    head = "POST /e HTTP/1.1\r\nHost: shop.example\r\nContent-Type: text/plain\r\n"
    head += f"Content-Length: {len(part) + 100}\r\n\r\n"
    url = httpx.URL(live.url)
    with socket.create_connection((url.host, url.port)) as connection:
        connection.sendall(head.encode() + part)

    assert post(live, order("o-whole", userId="u")).status_code == 200
    live.processed()
    with database(settings) as db:
        assert db.execute("SELECT count(*) FROM outbox").fetchone() == (1,)
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]


def test_an_invalid_event_is_named_and_the_valid_ones_are_kept(
    live: LiveEdge, settings: Settings
) -> None:
    response = post(live, {"batch": [landing(), {"type": "track"}]})

    assert response.status_code == 200
    assert response.json()["accepted"] == 1
    assert response.json()["errors"] == [
        {"event": 1, "field": "event", "message": "event 1: event: a track call needs a "
         "non-empty event name"}
    ]  # fmt: skip


def test_application_json_and_a_json_array_are_accepted_too(live: LiveEdge) -> None:
    response = post(live, [landing()], headers={"content-type": "application/json"})
    assert response.json() == {"success": True, "accepted": 1}


def test_trusted_and_untrusted_proxies(settings: Settings, fake: FakeCapi) -> None:
    behind_proxy = replace(settings, trusted_proxies=(ipaddress.ip_network("127.0.0.2/32"),))
    forwarded = {"X-Forwarded-For": "6.6.6.6, 198.51.100.7", "X-Forwarded-Proto": "https"}
    with LiveEdge(behind_proxy) as live:
        # Given a request through the trusted proxy (127.0.0.2) and one from elsewhere (.3)
        via_proxy = post(live, order("o-proxy", userId="u"), headers=forwarded,
                         transport=httpx.HTTPTransport(local_address="127.0.0.2"))  # fmt: skip
        spoofed = post(live, order("o-spoof", userId="u"), headers=forwarded,
                       transport=httpx.HTTPTransport(local_address="127.0.0.3"))  # fmt: skip

        wait_for(lambda: len(delivered(fake)) == 2)

    ips = {b["events"][0]["data"]["custom_attributes"]["confirmationref"]: b["ip"]
           for b in delivered(fake)}  # fmt: skip
    assert ips == {"o-proxy": "198.51.100.7", "o-spoof": "127.0.0.3"}
    assert "Secure" in via_proxy.headers["set-cookie"]
    assert "Secure" not in spoofed.headers["set-cookie"]


def test_ipv6_clients_are_kept_whole(settings: Settings, fake: FakeCapi) -> None:
    behind_proxy = replace(
        settings,
        trusted_proxies=(ipaddress.ip_network("127.0.0.0/8"),),
        client_ip_header="forwarded",
    )
    with LiveEdge(behind_proxy) as live:
        post(live, order(userId="u"), headers={"Forwarded": 'for="[2001:db8:cafe::17]:4711"'})
        wait_for(lambda: delivered(fake))
    assert delivered(fake)[0]["ip"] == "2001:db8:cafe::17"


def test_the_per_client_rate_limit(tmp_path: Path, settings: Settings) -> None:
    limited = replace(settings, client_rate_limit=0.5, client_rate_burst=2)
    with LiveEdge(limited) as live:
        statuses = [post(live, landing()).status_code for _ in range(3)]
        refused = post(live, landing())
    assert statuses == [200, 200, 429]
    assert refused.json()["error"]["code"] == "rate_limited"
    assert int(refused.headers["retry-after"]) >= 1


def test_origins(tmp_path: Path, settings: Settings) -> None:
    allowed = replace(settings, allowed_origins=("https://shop.example",))
    with LiveEdge(allowed) as live:
        other = post(live, landing(), headers={"Origin": "https://evil.example"})
        shop = post(live, landing(), headers={"Origin": "https://shop.example"})
        own = post(live, landing(), headers={"Origin": live.url})
    assert other.status_code == 403
    assert other.json()["error"]["code"] == "origin_not_allowed"
    assert shop.status_code == 200
    assert shop.headers["access-control-allow-origin"] == "https://shop.example"
    assert shop.headers["access-control-allow-credentials"] == "true"
    assert own.status_code == 200


def test_a_malformed_origin_is_refused_not_a_500(live: LiveEdge) -> None:
    response = post(live, landing(), headers={"Origin": "http://["})  # urlsplit: ValueError
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "origin_not_allowed"


def test_a_failing_store_answers_503_and_loses_nothing_acknowledged(
    tmp_path: Path, settings: Settings, fake: FakeCapi
) -> None:
    store = FailingStore(tmp_path / "failing.db")
    try:
        with LiveEdge(settings, store=store) as live:
            fake.reply(Reply(503), Reply(503), Reply(503))
            acknowledged = post(live, order("o-before", userId="u"))
            store.failing = True
            refused = post(live, order("o-during", userId="u"))
            store.failing = False
            wait_for(lambda: len(delivered(fake)) == 1, timeout=15)
    finally:
        store.close()
    assert acknowledged.status_code == 200
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "store_unavailable"
    assert [b["events"][0]["data"]["custom_attributes"]["confirmationref"]
            for b in delivered(fake)] == ["o-before"]  # fmt: skip


class UnreadableStore(SQLiteStore):
    """A real SQLite store whose identity look-ups fail while `failing` is set, as a locked or
    corrupt file would."""

    failing = True
    refused = 0

    async def identities(self, keys: Any, since: float) -> Any:
        if self.failing:
            self.refused += 1
            raise StoreUnavailable("database is locked (injected)")
        return await super().identities(keys, since)


def test_a_failing_identity_look_up_delays_the_event_and_loses_nothing(
    tmp_path: Path, fake: FakeCapi, settings: Settings
) -> None:
    store = UnreadableStore(tmp_path / "unreadable.db")
    try:
        with LiveEdge(settings, store=store) as live:
            # given an identity store that cannot be read: processing a conversion with no click
            # id in the event or a cookie asks it, and fails
            response = post(live, order("o-1", userId="u"))
            wait_for(lambda: store.refused >= 1)
            # then the beacon was acknowledged all the same, and its event waits, unprocessed,
            # for the store to answer again
            assert response.status_code == 200
            assert store.stats_sync().arrivals == 1
            assert live.edge.processor.processed == 0
            # when the store reads again
            store.failing = False
            # then the conversion goes through (without a click id: none is known)
            wait_for(lambda: len(delivered(fake)) == 1, timeout=15)
    finally:
        store.close()


@hypothesis_settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=st.one_of(
        st.binary(max_size=300),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
            lambda children: (
                st.lists(children, max_size=4)
                | st.dictionaries(
                    st.sampled_from(
                        [
                            "type",
                            "event",
                            "batch",
                            "context",
                            "properties",
                            "userId",
                            "messageId",
                            "timestamp",
                            "integrations",
                            "traits",
                            "x",
                        ]
                    ),
                    children,
                    max_size=5,
                )
            ),
            max_leaves=20,
        ).map(json.dumps),
    ),
    content_type=st.sampled_from(["text/plain", "application/json", "text/plain;charset=UTF-8"]),
)
def test_arbitrary_bodies_never_get_a_5xx(
    unlimited: LiveEdge, body: bytes | str, content_type: str
) -> None:
    response = post(unlimited, body, headers={"content-type": content_type})
    assert response.status_code < 500, response.text
    assert response.headers["content-type"] == "application/json"


@pytest.fixture(scope="module")
def unlimited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveEdge]:
    path = tmp_path_factory.mktemp("fuzz") / "edge.db"
    with LiveEdge(Settings(database_url=f"sqlite:///{path}", client_rate_limit=0)) as live:
        yield live


def test_same_origin_beacons_pass_behind_a_proxy_that_rewrites_host(settings: Settings) -> None:
    # Given the edge behind the shop's proxy, which forwards to 127.0.0.1:PORT and so sends that
    # as Host, with the shop's own host in X-Forwarded-Host
    behind_proxy = replace(settings, trusted_proxies=(ipaddress.ip_network("127.0.0.1/32"),))
    shop = {"Origin": "https://shop.example", "X-Forwarded-Host": "shop.example"}
    with LiveEdge(behind_proxy) as live:
        via_proxy = post(live, landing(), headers=shop)
        via_forwarded = post(
            live, landing(), headers={"Origin": "https://shop.example",
                                      "Forwarded": 'for=198.51.100.7;host="shop.example"'}
        )  # fmt: skip
    # When an untrusted client sends the same headers, they prove nothing
    with LiveEdge(settings) as live:
        spoofed = post(live, landing(), headers=shop)

    assert via_proxy.status_code == 200
    assert via_forwarded.status_code == 200
    assert spoofed.status_code == 403


def test_a_click_id_too_long_for_a_cookie_is_not_put_in_one(live: LiveEdge) -> None:
    # Rokt's click ids are short: a 5,000-character one would make a 6.8 KB Set-Cookie
    response = post(live, landing(rtid="r" * 5000))

    assert response.status_code == 200
    assert len(response.headers["set-cookie"]) < 300


def test_nan_in_a_beacon_is_not_json(live: LiveEdge) -> None:
    body = json.dumps(order(userId="u")).replace('"revenue": 42', '"revenue": NaN')
    answer = post(live, body)
    assert answer.status_code == 400
    assert "NaN is not a JSON value" in answer.json()["error"]["message"]


def test_an_anonymous_id_too_long_for_a_cookie_is_not_put_in_one(live: LiveEdge) -> None:
    response = post(live, landing(anonymous_id="a" * 5000))

    assert response.status_code == 200
    assert len(response.headers["set-cookie"]) < 1000  # browsers drop cookies over ~4 KB


def test_surrogate_bytes_in_an_event_are_refused_for_that_event_and_its_neighbours_kept(
    live: LiveEdge, settings: Settings
) -> None:
    # given a batch whose second order holds the UTF-8 bytes of a lone surrogate (ED A0 80): not
    # UTF-8 at all, though Python's JSON reader lets it through as text
    good = json.dumps(order("o-good", userId="u-1")).encode()
    bad = json.dumps(order("o-bad", userId="u-2")).encode().replace(b"u-2", b"u-\xed\xa0\x80")
    answer = post(live, b'{"batch": [' + good + b"," + bad + b"]}")

    # then the good one is taken and the bad one named, with why
    assert answer.status_code == 200
    assert answer.json()["errors"] == [{"event": 1, "field": "", "message": f"event 1: {NOT_TEXT}"}]
    # and alone, the bad one is a 400 naming it
    alone = post(live, bad)
    assert alone.status_code == 400
    assert alone.json()["error"]["message"] == f"event 0: {NOT_TEXT}"
    live.processed()
    with database(settings) as db:
        assert db.execute("SELECT message_id FROM outbox").fetchall() != []
        assert db.execute(
            "SELECT count(*) FROM skipped WHERE reason LIKE 'processing%'"
        ).fetchone() == (0,)


def test_a_string_that_is_not_text_is_refused_with_a_clear_error(
    live: LiveEdge, settings: Settings
) -> None:
    # given an order whose ids hold a lone surrogate escape: valid JSON, but no text that can be
    # stored or sent as UTF-8, alone and in a batch
    weird = '{"type": "track", "event": "Order Completed", "userId": "u-\\ud800", '
    weird += '"properties": {"order_id": "o-\\ud800", "revenue": 1, "currency": "USD"}}'
    # and an order with an emoji sent as an escaped surrogate pair, which is text
    emoji = weird.replace("\\ud800", "\\ud83d\\ude00")
    # then the first two are refused, saying why, and the emoji is taken
    for body in (weird, '{"batch": [' + weird + "]}"):
        refused = post(live, body)
        assert refused.status_code == 400
        assert refused.json()["error"]["message"] == f"event 0: {NOT_TEXT}"
    assert post(live, emoji).status_code == 200
    live.processed()
    with database(settings) as db:
        assert db.execute("SELECT count(*) FROM outbox").fetchone() == (1,)
