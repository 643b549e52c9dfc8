"""Coalesced rows: many requests' rows, one job for the writer, one hand-over each way.

The store already groups waiting jobs into one transaction, but a job per request costs a
thread-safe future, a queue put and a wake-up each, more than the row's own write.
Here a request only appends its row to a list under a lock. The first row after the list was
last taken submits one deferred job; the store makes it when it hands its next group to the
writer, and it takes every row waiting by then. Rows that come while that transaction
is on its way to disk wait for the next, which starts the moment this one is durable, without
waiting for the event loop. When the transaction is durable, each event loop with rows in it is
handed back their results once.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import defaultdict
from collections.abc import Callable
from typing import Any, Generic, TypeVar

Row = TypeVar("Row")
Job = tuple[Callable[..., Any], tuple[Any, ...]]  # as `edge.store.sqlite` runs them
Waiting = list[tuple[asyncio.AbstractEventLoop, "asyncio.Future[None]"]]


class Coalescer(Generic[Row]):
    def __init__(
        self,
        submit: Callable[[Callable[[], Job]], asyncio.Future[Any]],
        write: Callable[..., Any],
    ) -> None:
        """`submit` hands a deferred job to the store (raising when it is closed); `write`,
        a module-level function, writes rows inside the store's transaction (SQLite's writer
        calls `write(connection, rows)`; PostgreSQL's runs the plan `write(rows)` makes)."""
        self._submit = submit
        self._write = write
        self._lock = threading.Lock()
        self._rows: list[Row] = []
        self._waiting: Waiting = []
        self._scheduled = False  # a job is submitted and has not taken the rows yet

    def put(self, row: Row) -> asyncio.Future[None]:
        """A future that resolves once `row` is durable (or fails with the write's error)."""
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        with self._lock:
            self._rows.append(row)
            self._waiting.append((loop, waiter))
            if self._scheduled:
                return waiter
            self._scheduled = True
        taken: Waiting = []
        try:
            done = self._submit(lambda: (self._write, (self._take(taken),)))
        except Exception as error:  # the store is closed: nothing was submitted
            with self._lock:
                taken, self._rows, self._waiting = self._waiting, [], []
                self._scheduled = False
            _hand_back(taken, error)
            return waiter
        done.add_done_callback(lambda written: self._written(written, taken))
        return waiter

    def _written(self, written: asyncio.Future[Any], taken: Waiting) -> None:
        error = written.exception()
        if error is not None and not taken:  # the transaction failed before the job ran:
            with self._lock:  # the rows it was to take fail with it
                taken, self._rows, self._waiting = self._waiting, [], []
                self._scheduled = False
        _hand_back(taken, error)

    def _take(self, taken: Waiting) -> list[Row]:
        # As the store hands the group this job is in to the writer (on the event loop, or on a
        # worker thread for a caller on another loop).
        with self._lock:
            rows, self._rows = self._rows, []
            taken += self._waiting
            self._waiting = []
            self._scheduled = False
        return rows


def _hand_back(taken: Waiting, error: BaseException | None) -> None:
    """Resolve the waiters, one call into each event loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = defaultdict(list)
    for loop, waiter in taken:
        by_loop[loop].append(waiter)
    for loop, waiters in by_loop.items():
        # RuntimeError: that loop has closed, and no one waits for these rows any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_settle, waiters, error)


def _settle(waiters: list[asyncio.Future[None]], error: BaseException | None) -> None:
    for waiter in waiters:
        if waiter.done():  # its request was cancelled (the client went away)
            continue
        if error is None:
            waiter.set_result(None)
        else:
            waiter.set_exception(error)
