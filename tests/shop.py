"""A shop around the live edge, for end-to-end tests: the shopper's browser behind the shop's
proxy, the merchant's backend with its write key, and what the fake Rokt received."""

from __future__ import annotations

import base64
import ipaddress
import json
import sqlite3
from pathlib import Path
from typing import Any

import httpx

from edge.settings import Settings
from tests.fake_capi import FakeCapi
from tests.live import LiveEdge

WRITE_KEY = "wk-test-1"
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)
SHOPPER_IP = "198.51.100.7"
PROXY = "127.0.0.2"  # the shop's proxy, in front of the edge, on loopback


def shop_settings(tmp_path: Path, fake: FakeCapi, **values: Any) -> Settings:
    """The edge of a shop whose browsers come through its proxy and whose backend calls
    directly, delivering to the fake Rokt."""
    return Settings(**{
        "api_key": fake.api_key,
        "api_secret": fake.api_secret,
        "rokt_url": fake.url,
        "database_url": f"sqlite:///{tmp_path / 'edge.db'}",
        "write_keys": (WRITE_KEY, "wk-other"),
        "trusted_proxies": (ipaddress.ip_network(f"{PROXY}/32"),),
        "poll_interval": 0.05,
        "backoff_base": 0.05,
        **values,
    })  # fmt: skip


def basic(key: str) -> dict[str, str]:
    token = base64.b64encode(f"{key}:".encode()).decode()
    return {"authorization": f"Basic {token}"}


def order(order_id: str = "o-1", **fields: Any) -> dict[str, Any]:
    return {
        "event": "Order Completed",
        "properties": {"order_id": order_id, "revenue": 42, "currency": "usd"},
        **fields,
    }


def api(live: LiveEdge, path: str, body: Any, headers: dict[str, str] | None = None) -> Any:
    """A backend's call: Basic auth with the write key unless other headers are given."""
    content = body if isinstance(body, bytes | str) else json.dumps(body)
    sent = {"content-type": "application/json", **(basic(WRITE_KEY) if headers is None else {})}
    return httpx.post(live.url + path, content=content, headers={**sent, **(headers or {})})


def shopper() -> httpx.Client:
    """The shopper's browser, behind the shop's proxy: it keeps the edge's cookie."""
    headers = {"user-agent": CHROME, "x-forwarded-for": SHOPPER_IP}
    return httpx.Client(transport=httpx.HTTPTransport(local_address=PROXY), headers=headers)


def browser(live: LiveEdge, body: dict[str, Any], client: httpx.Client | None = None) -> Any:
    """A beacon from the shopper's browser (a fresh one, with no cookie, unless given)."""
    with shopper() as fresh:
        sender = client or fresh
        content = json.dumps(body)
        return sender.post(live.url + "/e", content=content, headers={"content-type": "text/plain"})


def delivered(fake: FakeCapi) -> list[dict[str, Any]]:
    return [batch for request in fake.requests() for batch in request.accepted]


def events_named(fake: FakeCapi, name: str) -> list[dict[str, Any]]:
    return [
        {**event["data"], "batch": batch}
        for batch in delivered(fake)
        for event in batch["events"]
        if event["data"]["event_name"] == name
    ]


def database(settings: Settings) -> sqlite3.Connection:
    return sqlite3.connect(settings.database_url.removeprefix("sqlite:///"))
