"""The server-side tracking API (`/v1/*`), served by a real uvicorn server, delivering to a fake
Rokt on loopback; driven by plain HTTP and by Segment's own Python library."""

from __future__ import annotations

import base64
import gzip
import json
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from segment.analytics import Client

from edge.events import NOT_TEXT
from edge.settings import Settings
from tests.fake_capi import FakeCapi
from tests.live import FailingStore, LiveEdge, wait_for
from tests.shop import (
    CHROME,
    SHOPPER_IP,
    WRITE_KEY,
    api,
    basic,
    browser,
    database,
    delivered,
    events_named,
    order,
    shop_settings,
)


@pytest.fixture
def settings(tmp_path: Path, fake: FakeCapi) -> Settings:
    return shop_settings(tmp_path, fake)


@pytest.fixture
def live(settings: Settings) -> Iterator[LiveEdge]:
    with LiveEdge(settings) as live:
        yield live


# -- Segment's own library -------------------------------------------------------------------


def test_segments_python_library_works_unchanged_against_the_edge(
    live: LiveEdge, fake: FakeCapi
) -> None:
    errors: list[Exception] = []
    # Given Segment's library with its host pointed at the edge, sending each call at once
    client = Client(
        WRITE_KEY, host=live.url, sync_mode=True, on_error=lambda e, _: errors.append(e)
    )

    # When the backend reports an order and an Engage audience membership
    client.track(
        user_id="user-1", event="Order Completed",
        properties={"order_id": "o-sync", "revenue": 99.99, "currency": "USD",
                    "email": "Buyer@Example.com"},
    )  # fmt: skip
    client.identify(
        user_id="user-2", traits={"vip_buyers": True, "email": "vip@example.com"},
        context={"personas": {"computation_key": "vip_buyers", "computation_class": "audience"}},
    )  # fmt: skip

    # And a queued client flushes a gzipped batch of three more orders
    batching = Client(
        WRITE_KEY, host=live.url, gzip=True, upload_size=10, on_error=lambda e, _: errors.append(e)
    )
    for n in range(3):
        batching.track(user_id=f"user-b{n}", event="Order Completed",
                       properties={"order_id": f"o-batch-{n}", "revenue": n})  # fmt: skip
    batching.page(user_id="user-b0", name="Thanks")  # not a conversion: skipped, not triggered
    batching.shutdown()

    # Then Rokt receives every conversion and the audience update, mapped
    wait_for(lambda: len(delivered(fake)) == 5)
    assert errors == []
    conversions = {
        e["custom_attributes"]["confirmationref"]: e for e in events_named(fake, "conversion")
    }
    assert sorted(conversions) == ["o-batch-0", "o-batch-1", "o-batch-2", "o-sync"]
    sync = conversions["o-sync"]
    assert sync["custom_attributes"] == {
        "conversiontype": "Order Completed", "confirmationref": "o-sync", "amount": 99.99,
        "currency": "USD",
    }  # fmt: skip
    assert sync["batch"]["user_identities"] == {
        "email": "buyer@example.com",
        "customerid": "user-1",
    }
    assert "ip" not in sync["batch"]  # the backend's own address is not the shopper's
    [audience] = events_named(fake, "audiencemembershipupdate")
    assert audience["custom_attributes"] == {"audience_name": "vip_buyers", "status": "add"}
    assert audience["batch"]["user_attributes"] == {"segment_vip_buyers": True}


# -- stitching -------------------------------------------------------------------------------


def test_a_backend_conversion_gets_the_click_ip_and_user_agent_the_browser_showed(
    live: LiveEdge, fake: FakeCapi
) -> None:
    # Given a shopper A who landed from a Rokt ad in a browser
    landed = browser(
        live,
        {"type": "page", "anonymousId": "A",
         "context": {"page": {"url": "https://shop.example/?rtid=CLICK-X"}}},
    )  # fmt: skip
    assert landed.status_code == 200

    # When the merchant's backend reports A's order, with no click id, IP or user agent
    response = api(live, "/v1/track", order("o-stitched", anonymousId="A"))

    # Then Rokt receives the conversion with A's click, IP and browser user agent
    assert response.status_code == 200
    assert response.json() == {"success": True}
    wait_for(lambda: delivered(fake))
    [batch] = delivered(fake)
    assert batch["integration_attributes"]["1277"]["passbackconversiontrackingid"] == "CLICK-X"
    assert batch["user_identities"]["other2"] == "CLICK-X"
    assert batch["ip"] == SHOPPER_IP
    assert batch["device_info"]["http_header_user_agent"] == CHROME


def test_an_identify_from_the_backend_links_the_user_id_to_the_browsers_click(
    live: LiveEdge, fake: FakeCapi
) -> None:
    browser(live, {"type": "page", "anonymousId": "A",
                   "context": {"page": {"url": "https://shop.example/?rtid=CLICK-Y"}}})  # fmt: skip
    # The backend learns at login that anonymous A is user U
    assert api(live, "/v1/identify", {"anonymousId": "A", "userId": "U"}).status_code == 200

    # and later reports U's order with the user id only
    api(live, "/v1/track", order("o-by-user", userId="U"))

    wait_for(lambda: delivered(fake))
    [batch] = delivered(fake)
    assert batch["user_identities"] == {"customerid": "U", "other2": "CLICK-Y"}
    assert batch["ip"] == SHOPPER_IP


def test_the_events_own_ip_and_user_agent_win_and_the_requests_are_never_used(
    live: LiveEdge, fake: FakeCapi
) -> None:
    browser(live, {"type": "page", "anonymousId": "A"})
    api(live, "/v1/track", order("o-own", anonymousId="A", userId="U",
                                 context={"ip": "203.0.113.9"}))  # fmt: skip
    api(live, "/v1/track", order("o-unknown", userId="stranger"))

    wait_for(lambda: len(delivered(fake)) == 2)
    by_ref = {b["events"][0]["data"]["custom_attributes"]["confirmationref"]: b
              for b in delivered(fake)}  # fmt: skip
    assert by_ref["o-own"]["ip"] == "203.0.113.9"
    assert by_ref["o-own"]["device_info"]["http_header_user_agent"] == CHROME
    assert "ip" not in by_ref["o-unknown"]
    assert "device_info" not in by_ref["o-unknown"]


# -- de-duplication --------------------------------------------------------------------------


def test_the_browser_and_the_backend_reporting_one_order_send_it_once(
    live: LiveEdge, fake: FakeCapi, settings: Settings
) -> None:
    # Given the browser's copy of order o-dup (carrying the click from the landing URL)
    page = {"url": "https://shop.example/done?rtid=CLICK-Z"}
    browser(live, {"type": "track", "anonymousId": "A", "messageId": "browser-copy",
                   **order("o-dup"), "context": {"page": page}})  # fmt: skip
    # When the backend reports the same order under its own message id
    response = api(live, "/v1/track", order("o-dup", anonymousId="A", messageId="server-copy"))

    # Then Rokt receives it once, and the later copy is recorded as a duplicate
    assert response.status_code == 200
    wait_for(lambda: delivered(fake))
    live.processed()
    with database(settings) as db:
        assert db.execute("SELECT message_id, reason FROM skipped").fetchall() == [
            ("server-copy", "duplicate")
        ]
    assert fake.accepted_message_ids() == ["browser-copy"]
    counted = 'rokt_edge_skipped_total{reason="duplicate"} 1.0'
    wait_for(lambda: counted in httpx.get(live.url + "/metrics").text)


# -- audiences -------------------------------------------------------------------------------


def test_audiences_from_track_properties_and_identify_traits(
    live: LiveEdge, fake: FakeCapi
) -> None:
    batch = {
        "batch": [
            {"type": "track", "userId": "u-1", "messageId": "m-track",
             **order("o-aud", properties={"order_id": "o-aud", "audience_name": "buyers",
                                          "audience_membership": True})},
            {"type": "identify", "userId": "u-2", "messageId": "m-identify",
             "traits": {"audience_name": "lapsed", "audience_membership": False}},
            {"type": "identify", "userId": "u-3", "messageId": "m-engage",
             "traits": {"cart_abandoners": True},
             "context": {"personas": {"computation_key": "cart_abandoners",
                                      "computation_class": "journey_step"}}},
        ]
    }  # fmt: skip
    assert api(live, "/v1/batch", batch).status_code == 200

    wait_for(lambda: len(delivered(fake)) == 3)
    updates = {
        e["batch"]["user_identities"]["customerid"]: e["custom_attributes"]
        for e in events_named(fake, "audiencemembershipupdate")
    }
    assert updates == {
        "u-1": {"audience_name": "buyers", "status": "add"},
        "u-2": {"audience_name": "lapsed", "status": "drop"},
        "u-3": {"audience_name": "cart_abandoners", "status": "add"},
    }
    [conversion] = events_named(fake, "conversion")
    assert conversion["batch"]["user_attributes"]["segment_buyers"] is True


# -- the request ----------------------------------------------------------------------------


def test_every_single_event_route_sets_the_type(live: LiveEdge, settings: Settings) -> None:
    for kind in ("track", "identify", "page", "screen", "group", "alias"):
        body = {"userId": "u", "event": "Signed Up", "previousId": "p", "groupId": "g",
                "messageId": f"m-{kind}", "type": "ignored"}  # fmt: skip
        assert api(live, f"/v1/{kind}", body).json() == {"success": True}, kind
    live.processed()
    with database(settings) as db:
        assert db.execute("SELECT count(*) FROM skipped").fetchone() == (6,)  # none is an order


def test_the_batchs_context_and_integrations_are_merged_into_each_event(
    live: LiveEdge, fake: FakeCapi
) -> None:
    batch = {
        "batch": [
            {"type": "track", "userId": "u-1", **order("o-1")},
            {"type": "track", "userId": "u-2", **order("o-2"), "context": {"ip": "203.0.113.2"},
             "integrations": {"Rokt Conversions API": {"rtid": "OWN"}}},
        ],
        "context": {"ip": "203.0.113.1", "userAgent": CHROME},
        "integrations": {"Rokt Conversions API": {"rtid": "SHARED"}},
        "sentAt": "2024-01-18T12:00:00.000Z",
        "writeKey": WRITE_KEY,
    }  # fmt: skip
    assert api(live, "/v1/batch", batch, headers={}).status_code == 200

    wait_for(lambda: len(delivered(fake)) == 2)
    seen = {b["user_identities"]["customerid"]: (b["ip"], b["user_identities"]["other2"],
                                                 b["device_info"].get("http_header_user_agent"))
            for b in delivered(fake)}  # fmt: skip
    # key by key: u-2's own ip and rtid win, the batch's user agent fills what it lacks
    assert seen == {"u-1": ("203.0.113.1", "SHARED", CHROME), "u-2": ("203.0.113.2", "OWN", CHROME)}


def test_an_invalid_event_in_a_batch_is_named_and_the_others_are_kept(live: LiveEdge) -> None:
    huge = {"type": "page", "userId": "u", "properties": {"x": "y" * 40_000}}
    batch = {"batch": [{"type": "track", "userId": "u", **order()}, {"type": "track"}, huge]}
    response = api(live, "/v1/batch", batch)

    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True
    assert body["accepted"] == 1
    assert [error["event"] for error in body["errors"]] == [1, 2]
    assert "32,768-byte limit" in body["errors"][1]["message"]


@pytest.mark.parametrize(
    ("path", "body", "headers", "status", "code"),
    [
        ("/v1/track", order(userId="u"), {"content-type": "application/json"}, 401,
         "unauthorized"),
        ("/v1/track", order(userId="u"), basic("wrong"), 401, "unauthorized"),
        ("/v1/track", {**order(userId="u"), "writeKey": "wrong"}, {}, 401, "unauthorized"),
        ("/v1/track", order(userId="u"), {"authorization": b"Basic \xe9"}, 401,
         "unauthorized"),  # not ASCII: b64decode raises ValueError, not binascii.Error
        ("/v1/track", order(userId="u"), {**basic(WRITE_KEY), "content-type": "text/csv"}, 415,
         "unsupported_media_type"),
        ("/v1/track", order(userId="u"), {**basic(WRITE_KEY), "content-encoding": "br"}, 415,
         "unsupported_encoding"),
        ("/v1/track", b"{nope", basic(WRITE_KEY), 400, "invalid_json"),
        ("/v1/track", b"[" * 30_000, basic(WRITE_KEY), 400, "invalid_json"),
        ("/v1/batch", b'{"batch": ' + b"[" * 100_000, basic(WRITE_KEY), 400, "invalid_json"),
        ("/v1/track", [order()], basic(WRITE_KEY), 400, "invalid_body"),
        ("/v1/track", {"userId": "u"}, basic(WRITE_KEY), 400, "invalid_event"),
        ("/v1/track", order(userId="u", timestamp=1e300), basic(WRITE_KEY), 400, "invalid_event"),
        ("/v1/batch", {"batch": {"type": "track"}}, basic(WRITE_KEY), 400, "invalid_body"),
        ("/v1/batch", {"batch": []}, basic(WRITE_KEY), 400, "invalid_event"),
        ("/v1/batch", {"batch": [], "context": "x"}, basic(WRITE_KEY), 400, "invalid_body"),
        ("/v1/track", order(properties={"x": "y" * 33_000}), basic(WRITE_KEY), 413, "too_large"),
        ("/v1/batch", {"batch": [order(properties={"x": "y" * 30_000})] * 18}, basic(WRITE_KEY),
         413, "too_large"),
        ("/v1/batch", {"batch": [{"type": "page", "p": "y" * 33_000}]}, basic(WRITE_KEY), 413,
         "too_large"),
    ],
)  # fmt: skip
def test_bad_requests_get_json_errors(
    live: LiveEdge, path: str, body: Any, headers: dict[str, str], status: int, code: str
) -> None:
    response = api(live, path, body, headers=headers)

    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"]


def test_surrogate_bytes_in_an_event_are_a_json_400_naming_it_not_a_500(live: LiveEdge) -> None:
    # given an order whose user id holds the UTF-8 bytes of a lone surrogate (ED A0 80)
    bad = json.dumps(order("o-bad", userId="u-2")).encode().replace(b"u-2", b"u-\xed\xa0\x80")
    for path, body in (("/v1/track", bad), ("/v1/batch", b'{"batch": [' + bad + b"]}")):
        # when a backend sends it alone or in a batch
        answer = api(live, path, body)
        # then it is refused, as JSON, naming the event
        assert answer.status_code == 400
        assert answer.json()["error"]["message"] == f"event 0: {NOT_TEXT}"


def test_a_write_key_in_the_body_is_enough(live: LiveEdge, settings: Settings) -> None:
    response = api(live, "/v1/track", {**order(userId="u"), "writeKey": "wk-other"}, headers={})
    assert response.json() == {"success": True}


def test_without_configured_write_keys_the_api_refuses_everyone(settings: Settings) -> None:
    with LiveEdge(replace(settings, write_keys=())) as live:
        response = api(live, "/v1/track", {**order(userId="u"), "writeKey": WRITE_KEY})
    assert response.status_code == 401
    assert "ROKT_EDGE_WRITE_KEYS" in response.json()["error"]["message"]


def test_gzip_bodies_are_inflated_within_the_limit(live: LiveEdge, fake: FakeCapi) -> None:
    packed = gzip.compress(json.dumps(order("o-gz", userId="u")).encode())
    bomb = gzip.compress(b'{"batch": [' + b" " * 5_000_000 + b"]}")
    headers = {**basic(WRITE_KEY), "content-encoding": "gzip"}

    assert api(live, "/v1/track", packed, headers=headers).status_code == 200
    assert api(live, "/v1/batch", bomb, headers=headers).status_code == 413
    assert api(live, "/v1/track", packed[:-8], headers=headers).status_code == 400
    assert api(live, "/v1/track", b"not gzip", headers=headers).status_code == 400
    garbage = api(live, "/v1/track", packed + b"trailing bytes", headers=headers)
    assert garbage.status_code == 400
    assert garbage.json()["error"]["message"] == "the body holds bytes after its gzip stream"
    wait_for(lambda: delivered(fake))


def test_nan_and_infinity_are_not_json(live: LiveEdge) -> None:
    for constant in ("NaN", "Infinity", "-Infinity"):
        body = json.dumps(order("o-nan", userId="u")).replace(
            '"revenue": 42', f'"revenue": {constant}'
        )
        answer = api(live, "/v1/track", body)
        assert answer.status_code == 400
        assert f"{constant} is not a JSON value" in answer.json()["error"]["message"]


def test_a_failing_store_answers_503_so_the_library_retries(
    tmp_path: Path, settings: Settings
) -> None:
    store = FailingStore(tmp_path / "failing.db")
    store.failing = True
    try:
        with LiveEdge(settings, store=store) as live:
            response = api(live, "/v1/track", order(userId="u"))
    finally:
        store.close()
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "store_unavailable"


# -- whatever arrives, never a 5xx -----------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                ["type", "event", "batch", "context", "integrations", "properties", "traits",
                 "userId", "anonymousId", "messageId", "timestamp", "writeKey", "previousId", "x"]
            ),
            children,
            max_size=6,
        )
    ),
    max_leaves=25,
)  # fmt: skip
AUTHORIZATION = st.sampled_from(
    [None, basic(WRITE_KEY)["authorization"], basic("nope")["authorization"], "Basic !!!",
     "Bearer x", "Basic " + base64.b64encode(b"\xff\xfe").decode()]
)  # fmt: skip


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["json", "bytes", "big", "batch"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "big":
        return b'{"batch": [{"type": "page", "x": "' + b"y" * draw(st.integers(30_000, 600_000))
    value: Any = draw(JSON_VALUES)
    if kind == "batch":
        value = {"batch": draw(st.lists(JSON_VALUES, max_size=5)), "context": draw(JSON_VALUES)}
    if draw(st.booleans()):
        value = {"writeKey": WRITE_KEY, **value} if isinstance(value, dict) else value
    return json.dumps(value).encode()


@hypothesis_settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    path=st.sampled_from(["/v1/track", "/v1/identify", "/v1/page", "/v1/alias", "/v1/batch"]),
    body=bodies(),
    authorization=AUTHORIZATION,
    compressed=st.booleans(),
    content_type=st.sampled_from(["application/json", "text/plain", "application/json; x=y"]),
)
def test_arbitrary_requests_never_get_a_5xx(
    open_edge: LiveEdge,
    path: str,
    body: bytes,
    authorization: str | None,
    compressed: bool,
    content_type: str,
) -> None:
    headers = {"content-type": content_type}
    if authorization is not None:
        headers["authorization"] = authorization
    if compressed:
        body = gzip.compress(body)
        headers["content-encoding"] = "gzip"
    response = httpx.post(open_edge.url + path, content=body, headers=headers)
    assert response.status_code < 500, response.text
    assert response.headers["content-type"] == "application/json"
    if response.status_code >= 400:
        assert response.json()["error"]["code"]


@pytest.fixture(scope="module")
def open_edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveEdge]:
    path = tmp_path_factory.mktemp("fuzz") / "edge.db"
    with LiveEdge(Settings(database_url=f"sqlite:///{path}", write_keys=(WRITE_KEY,))) as live:
        yield live


def test_a_senders_clock_skew_is_taken_out_of_event_times_by_its_sent_at(
    live: LiveEdge, fake: FakeCapi
) -> None:
    # A server an hour fast: its orders happened five minutes before it sent them.
    fast = int(time.time() * 1000) + 3600_000
    sent_at = fast + 300_000
    before = int(time.time() * 1000)
    event = {"type": "track", "userId": "u-1", **order("o-batch", timestamp=fast)}
    assert api(live, "/v1/batch", {"batch": [event], "sentAt": sent_at}).status_code == 200
    # a single call's body carries sentAt beside the event's own fields
    single = {**order("o-single", timestamp=fast), "userId": "u-2", "sentAt": sent_at}
    assert api(live, "/v1/track", single).status_code == 200
    after = int(time.time() * 1000)

    wait_for(lambda: len(delivered(fake)) == 2)
    stamps = [batch["events"][0]["data"]["timestamp_unixtime_ms"] for batch in delivered(fake)]
    for stamp in stamps:  # received - (sentAt - timestamp): five minutes before arrival
        assert before - 300_000 <= stamp <= after - 300_000
