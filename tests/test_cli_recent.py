"""`rokt-edge recent`, run as a merchant's engineer runs it beside a running edge: what became of
the latest events, and the bodies a dry run would have sent, unmasked (the operator's shell)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge.settings import Settings
from edge.store.sqlite import SQLiteStore
from edge.store.values import REJECTED, DeadLetter, Intake
from tests.conftest import run_cli
from tests.live import LiveEdge, wait_for
from tests.outbound import conversions, skipped

BROWSER = {
    "content-type": "text/plain",
    "user-agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36",
}
CLICK = "3f2a9c71-5b1e-4d8a-9e0f-6c4b2d1a7e55"


def recent(database: Path, *args: str) -> dict[str, Any]:
    result = run_cli(
        "recent", "--json", *args, env={"ROKT_EDGE_DATABASE_URL": f"sqlite:///{database}"}
    )
    assert result.returncode == 0, result.stderr
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def test_recent_shows_what_a_dry_run_would_have_sent_and_what_was_skipped(tmp_path: Path) -> None:
    # Given an edge in dry run (no credentials) where a shopper lands with a click id, then
    # orders giving an email
    database = tmp_path / "edge.db"
    settings = Settings(database_url=f"sqlite:///{database}", poll_interval=0.05)
    with LiveEdge(settings) as live, httpx.Client() as client:
        for event in [
            {"type": "page", "anonymousId": "anon-1", "messageId": "m-page",
             "context": {"page": {"url": f"http://shop.test/?rtid={CLICK}"}}},
            {"type": "track", "event": "Order Completed", "anonymousId": "anon-1",
             "messageId": "m-order", "properties": {"order_id": "o1", "revenue": 10},
             "traits": {"email": "jane.doe@example.com"}},
        ]:  # fmt: skip
            answer = client.post(live.url + "/e", content=json.dumps(event), headers=BROWSER)
            assert answer.status_code == 200, answer.text

        # When the engineer asks what became of them
        wait_for(lambda: recent(database)["dry_run_requests"])
        document = recent(database)

    # Then the order was recorded in the dry run, with the batch it would have sent to Rokt:
    # the click and the email as the store holds them; the page view was skipped, saying why
    outcomes = {outcome["message_id"]: outcome for outcome in document["outcomes"]}
    order, page = outcomes["m-order"], outcomes["m-page"]
    assert (order["outcome"], order["mapping"]) == ("dry run", "Send")
    batch = order["body"]
    assert batch["integration_attributes"]["1277"]["passbackconversiontrackingid"] == CLICK
    assert batch["user_identities"]["email"] == "jane.doe@example.com"
    assert batch["events"][0]["data"]["source_message_id"] == "m-order"
    assert order["at"].endswith("Z")
    assert page["outcome"] == "skipped"
    assert page["reason"].startswith("not triggered")
    assert page["body"] is None
    times = [outcome["at"] for outcome in document["outcomes"]]
    assert times == sorted(times, reverse=True)  # newest first
    # and the request the dry run recorded is there too, exactly as it would have gone
    [request] = document["dry_run_requests"]
    assert request["path"].endswith("events")
    assert CLICK in json.dumps(request["body"])
    assert document["store"] == f"sqlite:///{database}"

    # and the text says the same, with the body under the order's line
    text = run_cli("recent", env={"ROKT_EDGE_DATABASE_URL": f"sqlite:///{database}"}).stdout
    lines = text.splitlines()
    assert lines[0].startswith(f"rokt-edge recent  (store sqlite:///{database}; newest first")
    [order_line] = [line for line in lines if "m-order" in line and "dry run" in line]
    assert order_line.split()[1:5] == ["dry", "run", "Send", "m-order"]
    assert '"email": "jane.doe@example.com"' in text
    [page_line] = [line for line in lines if "m-page" in line]
    assert "skipped" in page_line
    assert "not triggered" in page_line
    assert "dry-run requests 1 latest" in text


@pytest.fixture
def database(tmp_path: Path) -> Path:
    """A store where four orders went four ways and a page view was skipped."""
    path = tmp_path / "edge.db"
    store = SQLiteStore(path)

    async def fill() -> None:
        await store.put(Intake(outbound=conversions(4), skipped=[skipped(9, "consent: denied")]))
        delivered, dead, retrying, _in_flight = await store.claim(4, 60)
        await store.ack([delivered.id])
        await store.dead([DeadLetter(dead.id, REJECTED, "Required event field missing")])
        await store.retry([retrying.id], 0.0, "HTTP 500 from the upstream")

    asyncio.run(fill())
    store.close()
    return path


def test_recent_tells_delivered_dead_waiting_and_skipped_with_reasons(database: Path) -> None:
    document = recent(database)

    by_id = {outcome["message_id"]: outcome for outcome in document["outcomes"]}
    assert {key: outcome["outcome"] for key, outcome in by_id.items()} == {
        "msg-000000": "delivered",
        "msg-000001": "dead",
        "msg-000002": "retrying",
        "msg-000003": "in flight",
        "skip-000009": "skipped",
    }
    dead = by_id["msg-000001"]
    assert (dead["reason"], dead["message"]) == (REJECTED, "Required event field missing")
    assert dead["dead_at"] is not None
    assert by_id["msg-000002"]["message"] == "HTTP 500 from the upstream"
    assert by_id["skip-000009"]["reason"] == "consent: denied"
    # a delivered item's body is not kept; a waiting or dead one's is, as it is (or was) sent
    assert by_id["msg-000000"]["body"] is None
    for key in ("msg-000001", "msg-000002", "msg-000003"):
        assert by_id[key]["body"]["events"][0]["data"]["source_message_id"] == key
    assert document["dry_run_requests"] == []


def test_recent_shows_at_most_limit_outcomes_and_refuses_a_limit_below_one(
    database: Path,
) -> None:
    assert len(recent(database, "--limit", "2")["outcomes"]) == 2

    refused = run_cli("recent", "--limit", "0")
    assert refused.returncode == 2
    assert "'0' is not a whole number above 0" in refused.stderr
