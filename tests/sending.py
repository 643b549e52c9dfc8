"""Helpers for tests that run a real delivery loop: start it, wait, tell when all is settled."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from edge.rokt.sender import Sender
from edge.store.sqlite import SQLiteStore


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
