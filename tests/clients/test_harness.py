"""The harness drives Segment's real clients: pointed at a Recorder on loopback (not the edge),
analytics-node and analytics.js send what Segment's documentation says they send, where the
harness told them to."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from tests.clients.harness import (
    ANALYTICS_JS,
    ANALYTICS_NODE,
    CDN,
    Batching,
    Received,
    installed_version,
    open_analytics,
    run_analytics_node,
)

if TYPE_CHECKING:
    from playwright.sync_api import Browser

    from tests.clients.conftest import Loopback

KEY = "wk_harness"


def posts_to(*paths: str) -> Any:
    """A wait_for predicate: a POST arrived at each of paths."""
    return lambda received: {r.path for r in received if r.method == "POST"} >= set(paths)


# ---- analytics-node ----------------------------------------------------------------------------


def test_analytics_node_batches_an_identify_and_a_track_into_one_request(
    loopback: Loopback,
) -> None:
    run = run_analytics_node(
        loopback.origin,
        KEY,
        [
            ("identify", {"userId": "u1", "traits": {"email": "a@example.com"}}),
            ("track", {"userId": "u1", "event": "Order Completed", "properties": {"total": 10}}),
        ],
    )

    [request] = loopback.here.requests()
    assert (request.method, request.path) == ("POST", "/v1/batch")
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == "analytics-node-next/latest"
    assert request.write_key == KEY
    body = request.body
    assert body["writeKey"] == KEY
    assert "sentAt" in body
    assert [(e["type"], e["userId"]) for e in body["batch"]] == [
        ("identify", "u1"),
        ("track", "u1"),
    ]
    assert body["batch"][1]["event"] == "Order Completed"
    version = installed_version(ANALYTICS_NODE)
    for event in body["batch"]:
        assert event["context"]["library"] == {
            "name": "@segment/analytics-node",
            "version": version,
        }
        assert event["messageId"].startswith("node-next-")
    assert run.version == version
    assert run.responses == [{"url": f"{loopback.origin}/v1/batch", "status": 200}]
    assert run.errors == []


def test_analytics_node_exits_non_zero_when_its_batch_is_refused(loopback: Loopback) -> None:
    loopback.here.status = 400  # not retried by the library

    run = run_analytics_node(
        loopback.origin, KEY, [("track", {"userId": "u1", "event": "E"})], check=False
    )

    assert run.returncode == 1
    assert any("delivery_failure" in error and "400" in error for error in run.errors), run.errors
    assert len(loopback.here.requests("POST", "/v1/batch")) == 1


# ---- analytics.js ------------------------------------------------------------------------------


def library(received: Received) -> dict[str, str]:
    return dict(received.body["context"]["library"])


@pytest.mark.browser
def test_analytics_js_posts_each_call_to_the_api_host_on_the_pages_origin(
    browser: Browser, loopback: Loopback
) -> None:
    path = loopback.pages.page("/shop", write_key=KEY, api=loopback.origin + "/v1")

    with open_analytics(browser, loopback.origin + path + "?rtid=click-1") as tab:
        tab.call("page")
        tab.call("alias", "u1")
        tab.call("identify", "u1", {"email": "a@example.com"})
        tab.call("track", "Order Completed", {"order_id": "o1", "total": 10})
        tab.call("group", "g1", {"name": "Acme"})
        received = loopback.here.wait_for(posts_to("/v1/p", "/v1/a", "/v1/i", "/v1/t", "/v1/g"))

    posts = [r for r in received if r.method == "POST"]
    assert [r.path for r in posts] == ["/v1/p", "/v1/a", "/v1/i", "/v1/t", "/v1/g"]
    assert loopback.here.requests("OPTIONS") == []  # same origin: no preflight
    version = installed_version(ANALYTICS_JS)
    for post in posts:
        assert post.headers["content-type"] == "text/plain"
        assert post.write_key == KEY
        assert post.body["writeKey"] == KEY
        assert library(post) == {"name": "analytics.js", "version": f"next-{version}"}
        assert post.body["context"]["page"]["search"] == "?rtid=click-1"
        assert post.headers["cookie"].startswith("ajs_anonymous_id=")  # same origin: cookies go
    page, alias, identify, track, group = (p.body for p in posts)
    assert page["properties"]["url"] == f"{loopback.origin}/shop?rtid=click-1"
    assert (alias["userId"], alias["previousId"]) == ("u1", page["anonymousId"])
    assert (identify["userId"], identify["traits"]) == ("u1", {"email": "a@example.com"})
    assert (track["event"], track["userId"]) == ("Order Completed", "u1")
    assert track["anonymousId"] == page["anonymousId"]
    assert (group["groupId"], group["userId"]) == ("g1", "u1")


@pytest.mark.browser
def test_analytics_js_alias_after_identify_names_the_identified_user_twice(
    browser: Browser, loopback: Loopback
) -> None:
    # analytics-next's event factory stamps the identified user's id on every event, alias's
    # userId included: alias("u2") after identify("u1") sends userId u1, previousId u1.
    path = loopback.pages.page("/shop", write_key=KEY, api=loopback.origin + "/v1")

    with open_analytics(browser, loopback.origin + path) as tab:
        tab.call("identify", "u1")
        tab.call("alias", "u2")
        loopback.here.wait_for(posts_to("/v1/a"))

    [alias] = loopback.here.requests("POST", "/v1/a")
    assert (alias.body["userId"], alias.body["previousId"]) == ("u1", "u1")


@pytest.mark.browser
def test_analytics_js_on_another_origin_preflights_for_its_authorization_header(
    browser: Browser, loopback: Loopback
) -> None:
    path = loopback.pages.page("/shop", write_key=KEY, api=loopback.other_origin + "/v1")

    with open_analytics(browser, loopback.origin + path) as tab:
        tab.call("track", "Order Completed", {"order_id": "o1"})
        loopback.there.wait_for(posts_to("/v1/t"))

    [preflight] = loopback.there.requests("OPTIONS", "/v1/t")
    assert preflight.headers["access-control-request-method"] == "POST"
    assert preflight.headers["access-control-request-headers"] == "authorization"
    [track] = loopback.there.requests("POST", "/v1/t")
    assert track.headers["origin"] == loopback.origin
    assert "cookie" not in track.headers  # credentials: "same-origin", the fetch default
    assert track.write_key == KEY
    assert loopback.here.requests("POST") == []


@pytest.mark.browser
def test_analytics_js_batching_sends_its_calls_together_to_b(
    browser: Browser, loopback: Loopback
) -> None:
    path = loopback.pages.page(
        "/shop", write_key=KEY, api=loopback.origin + "/v1", batching=Batching(size=2)
    )

    with open_analytics(browser, loopback.origin + path) as tab:
        tab.call("identify", "u1")
        tab.call("track", "Order Completed", {"order_id": "o1"})
        loopback.here.wait_for(posts_to("/v1/b"))

    [batch] = loopback.here.requests("POST")
    assert batch.path == "/v1/b"
    assert batch.write_key == KEY
    assert set(batch.body) == {"writeKey", "batch", "sentAt"}
    assert batch.body["writeKey"] == KEY
    assert [e["type"] for e in batch.body["batch"]] == ["identify", "track"]
    assert all("sentAt" not in e and e["writeKey"] == KEY for e in batch.body["batch"])


@pytest.mark.browser
def test_segments_pasted_snippet_loads_the_library_and_its_settings_from_the_page_origin(
    browser: Browser, loopback: Loopback
) -> None:
    path = loopback.pages.page(
        "/landing", write_key=KEY, api=loopback.origin + "/v1", snippet=True, page_view=True
    )

    with open_analytics(browser, loopback.origin + path + "?rtid=click-2") as tab:
        tab.call("track", "Order Completed", {"order_id": "o2"})
        loopback.here.wait_for(posts_to("/v1/p", "/v1/t"))
        loaded = tab.js("() => performance.getEntriesByType('resource').map(e => e.name)")

    assert f"{loopback.origin}{CDN}/analytics.js/v1/{KEY}/analytics.min.js" in loaded
    assert f"{loopback.origin}{CDN}/v1/projects/{KEY}/settings" in loaded
    [page] = loopback.here.requests("POST", "/v1/p")
    assert page.body["context"]["page"]["search"] == "?rtid=click-2"
    assert page.write_key == KEY


@pytest.mark.browser
def test_analytics_js_loads_its_lazy_chunks_from_the_page_origin(
    browser: Browser, loopback: Loopback
) -> None:
    path = loopback.pages.page(
        "/shop", write_key=KEY, api=loopback.origin + "/v1", body="<a id=buy href=#>Buy</a>"
    )

    # ajs_* query parameters and trackLink each load a chunk the main bundle leaves out
    with open_analytics(browser, loopback.origin + path + "?ajs_event=Landed") as tab:
        tab.js("() => analytics.trackLink(document.getElementById('buy'), 'Clicked Buy')")
        tab.page.click("#buy")
        received = loopback.here.wait_for(posts_to("/v1/t"))
        loaded = tab.js("() => performance.getEntriesByType('resource').map(e => e.name)")

    chunks = [url for url in loaded if "/analytics-next/bundles/" in url and "index.js" not in url]
    assert {url.split("/")[-1].split(".")[0] for url in chunks} >= {"queryString", "auto-track"}
    assert all(url.startswith(loopback.origin + CDN) for url in chunks)
    tracked = [r.body["event"] for r in received if r.path == "/v1/t"]
    assert "Landed" in tracked
