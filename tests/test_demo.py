"""The /demo pages and their panel, over HTTP against a live edge (the browser walk-through is in
tests/browser/test_real_edge.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge.demo import mask
from edge.settings import Settings, load_settings
from tests.live import LiveEdge, wait_for
from tests.serving import outside_address, served

STUB = (
    "<script>window.roktEdge=window.roktEdge||function(){"
    "(roktEdge.q=roktEdge.q||[]).push(arguments)}</script>"
)
SCRIPT = '<script defer src="/rokt-edge.js"></script>'
SHOP = ("/demo", "/demo/product", "/demo/checkout")
BROWSER = {
    "content-type": "text/plain",
    "user-agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36",
}
CLICK = "3f2a9c71-5b1e-4d8a-9e0f-6c4b2d1a7e55"  # a click id as long as Rokt's


def dry_run(tmp_path: Path, **values: Any) -> Settings:
    return Settings(database_url=f"sqlite:///{tmp_path / 'edge.db'}", poll_interval=0.05, **values)


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveEdge]:
    with LiveEdge(dry_run(tmp_path)) as live:
        yield live


def beacon(client: httpx.Client, live: LiveEdge, event: dict[str, Any]) -> httpx.Response:
    response = client.post(live.url + "/e", content=json.dumps(event), headers=BROWSER)
    assert response.status_code == 200, response.text
    return response


def test_a_dry_run_edge_serves_the_shop_with_the_snippet_installed_as_a_merchant_would(
    live: LiveEdge,
) -> None:
    for path in SHOP:
        page = httpx.get(live.url + path)
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert STUB in page.text, path
        assert SCRIPT in page.text, path
        assert page.text.index(STUB) < page.text.index(SCRIPT)
        assert "http://" not in page.text  # no external asset: the demo runs offline
        assert "https://" not in page.text
    assert httpx.get(live.url + "/demo/inspect").status_code == 200
    assert httpx.get(live.url + "/demo/demo.css").headers["content-type"].startswith("text/css")
    assert httpx.get(live.url + "/rokt-edge.js").status_code == 200


def test_the_panel_shows_the_click_the_edge_learned_and_the_conversion_it_would_send_masked(
    live: LiveEdge,
) -> None:
    # Given an empty edge, the panel has nothing to show
    assert httpx.get(live.url + "/demo/api/recent").json() == {
        "dry_run": True, "visitors": [], "events": [], "requests": [],
    }  # fmt: skip

    # When a shopper lands with a click id, then orders, giving an email, on a page without it
    with httpx.Client() as client:
        beacon(client, live, {
            "type": "page", "anonymousId": "anon-1234", "messageId": "m-page",
            "context": {"page": {"url": f"http://shop.test/demo?rtid={CLICK}"}},
        })  # fmt: skip
        beacon(client, live, {
            "type": "track", "event": "Order Completed", "anonymousId": "anon-1234",
            "messageId": "m-order", "properties": {"order_id": "o1", "revenue": 10},
            "traits": {"email": "jane.doe@example.com"},
        })  # fmt: skip

    # Then the panel shows the visitor's click, both events' fates and the request for Rokt,
    # each personal value masked: enough to follow the click, not to learn who or where
    def recent() -> dict[str, Any]:
        return dict(httpx.get(live.url + "/demo/api/recent").json())

    wait_for(lambda: recent()["requests"])
    data = recent()
    [visitor] = data["visitors"]
    assert visitor["key"] == "a:anon…"
    assert visitor["click_id"] == "3f2a9c…"
    assert visitor["ip"] == "127.0.0.0/24"
    assert visitor["user_agent"] == "Chrome 120 on Linux (Desktop)"
    events = {event["message_id"]: event for event in data["events"]}
    assert events["m-page"]["outcome"].startswith("skipped: not triggered")
    assert events["m-order"]["outcome"] == "recorded in dry run (not sent)"
    assert events["m-order"]["mapping"] == "Send"
    assert events["m-order"]["sent_click_id"] == "3f2a9c…"  # the edge's cookie carried it
    [request] = data["requests"]
    batch = request["body"]
    assert batch["integration_attributes"]["1277"]["passbackconversiontrackingid"] == "3f2a9c…"
    assert batch["user_identities"]["email"] == "j…@example.com"
    assert batch["events"][0]["data"]["custom_attributes"]["confirmationref"] == "o1"
    shown = json.dumps(data)
    for personal in (CLICK, "jane.doe", "127.0.0.1", "anon-1234", "X11; Linux"):
        assert personal not in shown, personal


def test_an_edge_with_credentials_has_no_demo_unless_asked(tmp_path: Path) -> None:
    settings = dry_run(tmp_path, api_key="key", api_secret="secret", rokt_url="http://127.0.0.1:9")
    with LiveEdge(settings) as live:
        for path in (*SHOP, "/demo/inspect", "/demo/api/recent"):
            assert httpx.get(live.url + path).status_code == 404, path


def test_a_demo_turned_on_with_credentials_shows_pages_but_never_traffic(tmp_path: Path) -> None:
    settings = dry_run(
        tmp_path, api_key="key", api_secret="secret", rokt_url="http://127.0.0.1:9", demo=True
    )
    with LiveEdge(settings) as live:
        assert httpx.get(live.url + "/demo").status_code == 200
        refused = httpx.get(live.url + "/demo/api/recent")
    assert refused.status_code == 403
    assert refused.json() == {
        "error": {
            "code": "not_dry_run",
            "message": "the demo panel shows what the edge received only in dry run"
            " (no credentials set)",
        }
    }


def test_a_dry_run_edge_can_turn_the_demo_off(tmp_path: Path) -> None:
    with LiveEdge(dry_run(tmp_path, demo=False)) as live:
        assert httpx.get(live.url + "/demo").status_code == 404
        assert httpx.get(live.url + "/demo/api/recent").status_code == 404


@pytest.mark.parametrize(
    ("environ", "expected"),
    [({}, None), ({"ROKT_EDGE_DEMO": "true"}, True), ({"ROKT_EDGE_DEMO": "off"}, False)],
)
def test_rokt_edge_demo_is_a_flag_left_unset_by_default(
    environ: dict[str, str], expected: bool | None
) -> None:
    assert load_settings(environ).demo is expected


def test_the_panels_data_is_only_for_a_browser_on_the_edges_own_machine(tmp_path: Path) -> None:
    # Given a dry-run edge bound to every address, as on a server
    address = outside_address()
    if address is None:
        pytest.skip("this machine has no network address besides loopback")
    with served(dry_run(tmp_path), host="0.0.0.0") as port:
        # When the panel's data is asked from another machine (at the network address), or
        # through a proxy on the edge's machine (it connects from loopback for anyone)
        remote = httpx.get(f"http://{address}:{port}/demo/api/recent")
        proxied = httpx.get(
            f"http://127.0.0.1:{port}/demo/api/recent", headers={"x-forwarded-for": "198.51.100.7"}
        )
        local = httpx.get(f"http://127.0.0.1:{port}/demo/api/recent")
    # Then only the browser on the edge's own machine gets it
    for refused in (remote, proxied):
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "not_local"
        assert "ROKT_EDGE_DEMO=true" in refused.json()["error"]["message"]
    assert local.status_code == 200


def test_rokt_edge_demo_true_serves_the_panels_data_anywhere_still_masked(tmp_path: Path) -> None:
    address = outside_address()
    if address is None:
        pytest.skip("this machine has no network address besides loopback")
    with served(dry_run(tmp_path, demo=True), host="0.0.0.0") as port:
        remote = httpx.get(f"http://{address}:{port}/demo/api/recent")
    assert remote.status_code == 200
    assert remote.json()["dry_run"] is True


def test_masking_covers_both_upstreams_bodies() -> None:
    # contract A: identities by key; contract B: objectData's name/value pairs, by name
    capi = {
        "user_identities": {"email": "jane@example.com", "customerid": "u-98765", "other2": CLICK},
        "user_attributes": {"mobile": "+1 415 555 0100"},
        "device_info": {"http_header_user_agent": BROWSER["user-agent"]},
        "ip": "2001:db8:1:2::5",
    }
    event_api = {"objectData": [
        {"name": "emailsha256", "value": "a" * 64},
        {"name": "ipaddress", "value": "203.0.113.9"},
        {"name": "useragent", "value": BROWSER["user-agent"]},
        {"name": "amount", "value": "10.00"},
    ]}  # fmt: skip
    assert mask(capi) == {
        "user_identities": {"email": "j…@example.com", "customerid": "u-9…", "other2": "3f2a9c…"},
        "user_attributes": {"mobile": "+1 415…"},
        "device_info": {"http_header_user_agent": "Chrome 120 on Linux (Desktop)"},
        "ip": "2001:db8:1::/48",
    }
    assert mask(event_api) == {"objectData": [
        {"name": "emailsha256", "value": "aaaaaa…"},
        {"name": "ipaddress", "value": "203.0.113.0/24"},
        {"name": "useragent", "value": "Chrome 120 on Linux (Desktop)"},
        {"name": "amount", "value": "10.00"},
    ]}  # fmt: skip


def test_the_panel_says_what_each_event_was_where_it_came_from_and_its_click(
    tmp_path: Path,
) -> None:
    # Given a dry-run edge that takes a shop backend's calls too
    with LiveEdge(dry_run(tmp_path, write_keys=("shop-key",))) as live, httpx.Client() as client:
        # When a shopper lands from an ad and views a product, and the shop's backend then
        # tracks the order for the same visitor
        beacon(client, live, {
            "type": "page", "anonymousId": "anon-1234", "messageId": "m-page",
            "context": {"page": {"url": f"http://shop.test/demo?rtid={CLICK}"}},
        })  # fmt: skip
        beacon(client, live, {
            "type": "track", "event": "Product Viewed", "anonymousId": "anon-1234",
            "messageId": "m-product", "properties": {"product_id": "mug-1"},
        })  # fmt: skip
        tracked = client.post(
            live.url + "/v1/track",
            json={"type": "track", "event": "Order Completed", "anonymousId": "anon-1234",
                  "messageId": "m-order", "properties": {"order_id": "o1", "revenue": 10}},
            auth=("shop-key", ""),
        )  # fmt: skip
        assert tracked.status_code == 200, tracked.text

        def events() -> dict[str, dict[str, Any]]:
            found = client.get(live.url + "/demo/api/recent").json()["events"]
            return {event["message_id"]: event for event in found}

        # (once the order is recorded as the dry run's request to Rokt)
        wait_for(lambda: "sent_click_id" in events().get("m-order", {}))
        received = events()

    # Then each event reads as what it was: a page view (by its page), a product view and the
    # order by their names, from the browser's beacon or the server's API; the click id the
    # event carried, and the one the order would be sent with, masked
    described = ("source", "type", "name", "page", "click_id")
    assert {key: received["m-page"][key] for key in described} == {
        "source": "beacon", "type": "page", "name": None, "page": "/demo", "click_id": "3f2a9c…",
    }  # fmt: skip
    assert {key: received["m-product"][key] for key in described} == {
        "source": "beacon", "type": "track", "name": "Product Viewed", "page": None,
        "click_id": None,
    }  # fmt: skip
    assert {key: received["m-order"][key] for key in described} == {
        "source": "api", "type": "track", "name": "Order Completed", "page": None,
        "click_id": None,  # the backend sent none: the edge found it for the visitor
    }  # fmt: skip
    assert received["m-order"]["sent_click_id"] == "3f2a9c…"
    assert received["m-product"]["outcome"].startswith("skipped: not triggered")


def test_an_event_the_edge_did_not_see_has_no_name_rather_than_a_wrong_one(
    tmp_path: Path,
) -> None:
    # Given an event received before the edge restarted (what it was is kept only in memory)
    settings = dry_run(tmp_path)
    with LiveEdge(settings) as live, httpx.Client() as client:
        beacon(client, live, {"type": "track", "event": "Product Viewed", "messageId": "m-old"})
        live.processed()
    with LiveEdge(settings) as live, httpx.Client() as client:
        beacon(client, live, {"type": "track", "event": "Signed Up", "messageId": "m-new"})
        live.processed()
        events = {
            e["message_id"]: e for e in client.get(live.url + "/demo/api/recent").json()["events"]
        }

    # Then the panel still lists the older event and its fate, saying nothing of what it was
    assert events["m-old"]["outcome"].startswith("skipped: not triggered")
    assert events["m-old"]["type"] is None
    assert events["m-old"]["source"] is None
    assert (events["m-new"]["type"], events["m-new"]["name"]) == ("track", "Signed Up")
