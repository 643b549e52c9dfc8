"""The backends the store contract runs on, each as a test database a test opens stores on.

A backend joins the contract with a class here and its name in `BACKENDS` (the `backend`
fixture's parameters): every test in this folder then runs on it too. Beside opening stores, a
backend does for the tests what the store interface does not offer, and no more: lose a store's
connection as a crash would, and show two facts of an item that the interface keeps to itself.
The PostgreSQL tests skip, saying why, when the server is not reachable; under CI=true they
fail instead.
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import signal
import sqlite3
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import psycopg

from edge.store import Store
from edge.store.postgres import PostgresStore
from edge.store.sqlite import SQLiteStore
from tests.conftest import unavailable
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


# The server the PostgreSQL tests use, as a superuser (to make their database): the local one,
# trust auth (`.ci/run` starts it), unless ROKT_EDGE_TEST_POSTGRES_URL names another.
POSTGRES_URL = os.environ.get(
    "ROKT_EDGE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
POSTGRES_DATABASE = "rokt_edge_test"  # beside the admin one; each test a schema of its own


class Postgres(Backend):
    """A schema of its own in the test database (a schema is made in milliseconds, a database
    in a tenth of a second or more); each store on it has connections of its own."""

    def __init__(self, tmp_path: Path, clock: Clock) -> None:
        super().__init__(tmp_path, clock)
        database = test_database()
        self.schema = f"t_{secrets.token_hex(6)}"
        options = quote(f"-csearch_path={self.schema}")
        self.url = f"{database}?options={options}"
        self.admin = psycopg.connect(self.url, autocommit=True)
        self.admin.execute(f"CREATE SCHEMA {self.schema}")

    def _open(self, **options: Any) -> PostgresStore:
        return PostgresStore(self.url, clock=self.clock, **options)

    def close(self) -> None:
        super().close()
        self.admin.execute(f"DROP SCHEMA {self.schema} CASCADE")
        self.admin.close()

    def crash(self, store: Store) -> None:
        assert isinstance(store, PostgresStore)
        killed = self._read(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            store.application_name,
        )
        assert killed

    def attempts(self, item_id: int) -> int:
        [(count,)] = self._read("SELECT attempts FROM queue WHERE id = %s", item_id)
        return int(count)

    def has_item(self, key: str) -> bool:
        return bool(self._read("SELECT 1 FROM outbox WHERE key = %s", key))

    def _read(self, sql: str, *args: Any) -> list[Any]:
        return self.admin.execute(sql, args).fetchall()


@functools.cache
def _test_database() -> str | Exception:
    """The test database's URL, made once a session; or why the server cannot be used."""
    try:
        with psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=3) as admin:
            found = admin.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (POSTGRES_DATABASE,)
            ).fetchone()
            if found is None:
                with contextlib.suppress(psycopg.errors.DuplicateDatabase):  # another run's
                    admin.execute(f"CREATE DATABASE {POSTGRES_DATABASE}")
    except psycopg.Error as error:
        return error
    return urlsplit(POSTGRES_URL)._replace(path=f"/{POSTGRES_DATABASE}").geturl()


def test_database() -> str:
    found = _test_database()
    if isinstance(found, Exception):
        unavailable(
            f"PostgreSQL is not reachable at {POSTGRES_URL} (ROKT_EDGE_TEST_POSTGRES_URL):"
            f" {found}".strip()
        )
    return found


BACKENDS: dict[str, type[Backend]] = {"sqlite": SQLite, "postgresql": Postgres}


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
