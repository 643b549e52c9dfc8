"""Helpers for tests that run a real delivery loop: start it, wait, tell when all is settled."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from edge.delivery.sender import Sender
from edge.settings import Settings, load_settings
from edge.store import Store
from edge.store.sqlite import SQLiteStore
from edge.upstreams import upstream_for


def quick_settings(**values: Any) -> Settings:
    """Settings for a delivery loop under test: quick retries and polls, no rate limit, short
    leases, unless `values` say otherwise; read as the environment would give them."""
    values = {
        "rate_limit": 0,
        "backoff_base": 0.05,
        "backoff_cap": 0.2,
        "pause_retry": 0.2,
        "poll_interval": 0.02,
        "request_timeout": 2,
        "lease_seconds": 5,
        **values,
    }
    return load_settings({f"ROKT_EDGE_{k.upper()}": str(v) for k, v in values.items() if v != ""})


def make_sender(settings: Settings, store: Store, **options: Any) -> Sender:
    """A delivery loop for the configured upstream, as the app makes one (its wire, found through
    `edge.upstreams`); `options` as `Sender` takes them (metrics, transport, clock)."""
    return Sender(settings, store, upstream_for(settings).wire, **options)


@asynccontextmanager
async def running(sender: Sender) -> AsyncIterator[Sender]:
    task = asyncio.create_task(sender.run())
    try:
        yield sender
    finally:
        sender.stop()
        await asyncio.wait_for(task, 10)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.02)


async def settled(store: SQLiteStore) -> bool:
    stats = await store.stats()
    return stats.pending + stats.in_flight == 0
