"""The backends the store contract runs on, each as a test database a test opens stores on.

A backend joins the contract with a class here and its name in `BACKENDS` (the `backend`
fixture's parameters): every test in this folder then runs on it too. Beside opening stores, a
backend does for the tests what the store interface does not offer, and no more: lose a store's
connection as a crash would, and show two facts of an item that the interface keeps to itself.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from edge.store import Store
from edge.store.sqlite import SQLiteStore
from tests.store.conftest import Clock


class Backend(ABC):
    """A database of one backend, fresh for each test."""

    def __init__(self, tmp_path: Path, clock: Clock) -> None:
        self.tmp_path = tmp_path
        self.clock = clock
        self.opened: list[Store] = []

    def open(self, **options: Any) -> Store:
        """A store on this test's database, on the test's clock: another one is another
        process's view of the same data. `options`: the backend's own (`dedup_window`)."""
        store = self._open(**options)
        self.opened.append(store)
        return store

    def close(self) -> None:
        for store in self.opened:
            store.close()

    @abstractmethod
    def _open(self, **options: Any) -> Store: ...

    @abstractmethod
    def crash(self, store: Store) -> None:
        """Cut `store` off its database at once, as a crash would (what it had in flight is
        neither finished nor answered); the store itself lives on, as a service does."""

    @abstractmethod
    def attempts(self, item_id: int) -> int:
        """The failed attempts the outbox counts for an item still queued."""

    @abstractmethod
    def has_item(self, key: str) -> bool:
        """Whether an outbox item with `key` is committed, as another connection sees it."""


class SQLite(Backend):
    """One file; each store on it has a writer process of its own."""

    @property
    def path(self) -> Path:
        return self.tmp_path / "edge.db"

    def _open(self, **options: Any) -> SQLiteStore:
        return SQLiteStore(self.path, clock=self.clock, **options)

    def crash(self, store: Store) -> None:
        assert isinstance(store, SQLiteStore)
        pid = store.writer_pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        assert gone(pid)

    def attempts(self, item_id: int) -> int:
        [(count,)] = self._read("SELECT attempts FROM queue WHERE id = ?", item_id)
        return int(count)

    def has_item(self, key: str) -> bool:
        return bool(self._read("SELECT 1 FROM outbox WHERE key = ?", key))

    def _read(self, sql: str, *args: Any) -> list[Any]:
        with contextlib.closing(sqlite3.connect(self.path)) as connection:
            return connection.execute(sql, args).fetchall()


BACKENDS: dict[str, type[Backend]] = {"sqlite": SQLite}


def gone(pid: int, within: float = 10.0) -> bool:
    """Whether process `pid` ended (and was reaped, or is a zombie) within the time."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False
