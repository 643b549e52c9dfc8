"""Coalesced rows: many requests' rows, one job on the writer thread, one hand-over each way.

The writer thread already groups waiting jobs into one transaction, but a job per request costs
a thread-safe future, a queue put and a wake-up each, more than the row's own write, and every
hand-over of the interpreter lock between the writer and a busy event loop costs more still.
Here a request only appends its row to a list under a lock. The first row after the list was
last taken submits one job; the writer runs it at the start of its next transaction, and it
takes every row waiting by then. Rows that come while that transaction is on its way to disk
wait for the next, which the writer starts the moment this one is durable, without waiting for
the event loop. When the transaction is durable, each event loop with rows in it is handed back
their results once.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Generic, TypeVar

Row = TypeVar("Row")
Job = Callable[[sqlite3.Connection], Any]
Waiting = list[tuple[asyncio.AbstractEventLoop, "asyncio.Future[None]"]]


class Coalescer(Generic[Row]):
    def __init__(
        self,
        submit: Callable[[Job], Future[Any]],
        write: Callable[[sqlite3.Connection, list[Row]], None],
    ) -> None:
        """`submit` hands a job to the writer thread (raising when the store is closed);
        `write` writes rows inside the writer's transaction."""
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
            done = self._submit(lambda connection: self._take_and_write(connection, taken))
        except Exception as error:  # the store is closed: nothing was submitted
            with self._lock:
                taken, self._rows, self._waiting = self._waiting, [], []
                self._scheduled = False
            _hand_back(taken, error)
            return waiter
        done.add_done_callback(lambda written: self._written(written, taken))
        return waiter

    def _written(self, written: Future[Any], taken: Waiting) -> None:
        error = written.exception()
        if error is not None and not taken:  # the transaction failed before the job ran:
            with self._lock:  # the rows it was to take fail with it
                taken, self._rows, self._waiting = self._waiting, [], []
                self._scheduled = False
        _hand_back(taken, error)

    def _take_and_write(self, connection: sqlite3.Connection, taken: Waiting) -> None:
        # On the writer thread, inside its transaction.
        with self._lock:
            rows, self._rows = self._rows, []
            taken += self._waiting
            self._waiting = []
            self._scheduled = False
        self._write(connection, rows)


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
