"""Coalescing on the event loop: rows put while a write is in flight share the next write.

The writer thread already groups jobs into one transaction, but handing each request's job to
it costs a thread-safe future, a queue put and a wake-up per request, more than the row's own
write. On the hot path (an arrival per beacon) the loop gathers instead: the first row starts a
write at once; rows that come while it is on its way to disk wait in a list and all go in the
next one, which starts the moment the last one is durable. One hand-over per transaction, and
the same one-fsync-per-group durability: a row's future resolves only after its commit.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import Future
from typing import Generic, TypeVar

Row = TypeVar("Row")
# Starts the durable write of some rows on the writer thread.
Write = Callable[[list[Row]], "Future[None]"]


class Coalescer(Generic[Row]):
    def __init__(self, write: Write[Row]) -> None:
        self._write = write
        self._loop: asyncio.AbstractEventLoop | None = None
        self._rows: list[Row] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._writing = False

    def put(self, row: Row) -> asyncio.Future[None]:
        """A future that resolves once `row` is durable (or fails with the write's error)."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new loop (tests run several): nothing of the old carries
            self._loop, self._rows, self._waiters, self._writing = loop, [], [], False
        waiter = loop.create_future()
        self._rows.append(row)
        self._waiters.append(waiter)
        if not self._writing:
            self._writing = True
            loop.call_soon(self._flush)  # after this tick's other puts have joined
        return waiter

    def _flush(self) -> None:
        rows, waiters = self._rows, self._waiters
        self._rows, self._waiters = [], []
        if not rows:
            self._writing = False
            return
        loop = self._loop
        assert loop is not None
        try:
            written = self._write(rows)
        except Exception as error:  # the store is closed: nothing was submitted
            self._settle(waiters, error)
            loop.call_soon(self._flush)
            return

        def hand_back(done: Future[None]) -> None:  # runs on the writer thread
            # RuntimeError: the loop has closed, and no one waits for these rows any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._done, done, waiters)

        written.add_done_callback(hand_back)

    def _done(self, written: Future[None], waiters: list[asyncio.Future[None]]) -> None:
        self._settle(waiters, written.exception())
        self._flush()

    @staticmethod
    def _settle(waiters: list[asyncio.Future[None]], error: BaseException | None) -> None:
        for waiter in waiters:
            if waiter.done():  # its request was cancelled (the client went away)
                continue
            if error is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(error)
