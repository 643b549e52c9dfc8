"""The whole edge delivering to contract B: a beacon conversion reaches the fake Event API
through the app `rokt-edge serve` runs, and `rokt-edge deliver` delivers with v1 auth."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from edge.settings import Settings
from edge.store.sqlite import SQLiteStore
from edge.store.values import Intake
from tests.conftest import ROOT
from tests.event_api_items import (
    ACCOUNT,
    APP_ID,
    APP_SECRET,
    PUBLIC_KEY,
    SECRET_KEY,
    ids,
    orders,
)
from tests.fake_event_api import FakeEventApi
from tests.live import LiveEdge, wait_for

BROWSER = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 Version/17.0 Safari"


def edge_settings(tmp_path: Path, event_api: FakeEventApi) -> Settings:
    """An edge delivering to the fake Event API with v2 keys."""
    return Settings(
        upstream="event-api", account_id=ACCOUNT, api_key=PUBLIC_KEY, api_secret=SECRET_KEY,
        rokt_url=event_api.url, database_url=f"sqlite:///{tmp_path / 'edge.db'}",
        poll_interval=0.05, backoff_base=0.05,
    )  # fmt: skip


def test_a_beacon_conversion_with_a_click_id_reaches_the_event_api(
    tmp_path: Path, event_api: FakeEventApi
) -> None:
    settings = edge_settings(tmp_path, event_api)
    purchase = {
        "type": "track",
        "event": "Order Completed",
        "messageId": "order-e2e-1",
        "properties": {"order_id": "o-1", "revenue": 85, "currency": "USD"},
        "context": {"page": {"url": "https://shop.example/thanks?rtid=CLICK-1"}},
    }

    with LiveEdge(settings) as live:
        response = httpx.post(
            live.url + "/e",
            content=json.dumps(purchase),
            headers={"content-type": "text/plain", "user-agent": BROWSER},
        )
        assert response.status_code == 200
        wait_for(lambda: event_api.accepted == ["order-e2e-1"])

    [received] = event_api.received
    assert received.path == "/v2/events"
    assert received.body["accountId"] == ACCOUNT
    [event] = received.body["events"]
    assert event["eventType"] == "conversion"
    data = {entry["name"]: entry["value"] for entry in event["objectData"]}
    assert data["passbackconversiontrackingid"] == "CLICK-1"
    assert (data["amount"], data["currency"], data["confirmationref"]) == ("85.00", "USD", "o-1")
    assert data["useragent"] == BROWSER


def test_python_m_deliver_delivers_to_the_event_api(
    tmp_path: Path, event_api: FakeEventApi
) -> None:
    database = tmp_path / "edge.db"
    store = SQLiteStore(database)
    items = orders(150)
    store.put_sync(Intake(outbound=items))
    env = {key: value for key, value in os.environ.items() if not key.startswith("ROKT_EDGE_")}
    env.update(
        PYTHONPATH=str(ROOT),
        ROKT_EDGE_DATABASE_URL=f"sqlite:///{database}",
        ROKT_EDGE_UPSTREAM="event-api",
        ROKT_EDGE_ACCOUNT_ID=ACCOUNT,
        ROKT_EDGE_EVENT_API_AUTH="v1",
        ROKT_EDGE_API_KEY=APP_ID,
        ROKT_EDGE_API_SECRET=APP_SECRET,
        ROKT_EDGE_ROKT_URL=event_api.url,
        ROKT_EDGE_POLL_INTERVAL="0.05",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "edge", "deliver"],
        env=env,
        cwd=tmp_path,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(lambda: store.stats_sync().delivered == 150, timeout=20)
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=10)

    assert process.returncode == 0
    assert sorted(event_api.accepted) == ids(items)
    assert APP_SECRET.encode() not in stderr
    assert b"token-1" not in stderr  # the bearer token is a secret too
    store.close()


def test_a_conversion_from_a_browser_whose_clock_is_ahead_is_sent_at_the_edges_time(
    tmp_path: Path, event_api: FakeEventApi
) -> None:
    # The Event API refuses events over 5 minutes ahead of its clock: this one says 20 minutes.
    settings = edge_settings(tmp_path, event_api)
    ahead = datetime.now(UTC) + timedelta(minutes=20)
    purchase = {
        "type": "track", "event": "Order Completed", "messageId": "order-ahead",
        "timestamp": ahead.isoformat(), "properties": {"order_id": "o-2", "revenue": 10},
        "context": {"page": {"url": "https://shop.example/thanks?rtid=CLICK-2"}},
    }  # fmt: skip

    with LiveEdge(settings) as live:
        before = datetime.now(UTC)
        response = httpx.post(
            live.url + "/e", content=json.dumps(purchase), headers={"user-agent": BROWSER}
        )
        after = datetime.now(UTC)
        assert response.status_code == 200
        wait_for(lambda: event_api.accepted == ["order-ahead"])

    [event] = event_api.received[0].body["events"]
    sent_time = datetime.fromisoformat(event["eventTime"].replace("Z", "+00:00"))
    assert before - timedelta(seconds=1) <= sent_time <= after  # when the edge received it
