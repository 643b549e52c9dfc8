"""Durable storage: the outbox of upstream-ready items, skipped records, delivery state.

`open_store(settings)` picks the implementation from `ROKT_EDGE_DATABASE_URL`'s scheme; the
interface (and its errors) is in `edge.store.base`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from edge.store.base import Store, StoreConfigError

if TYPE_CHECKING:  # the writer process imports this package: settings (phone numbers) would
    from edge.settings import Settings  # add half to its start

SQLITE_PREFIX = "sqlite:///"


def sqlite_path(url: str) -> Path:
    """`sqlite:///relative.db` → relative.db; `sqlite:////abs.db` → /abs.db (as SQLAlchemy)."""
    if not url.startswith(SQLITE_PREFIX) or url == SQLITE_PREFIX:
        raise StoreConfigError(f"{url!r} is not a sqlite:///path URL")
    return Path(url[len(SQLITE_PREFIX) :])


def open_store(settings: Settings) -> Store:
    url = settings.database_url
    if url.startswith("sqlite:"):
        from edge.store.sqlite import SQLiteStore

        return SQLiteStore(sqlite_path(url), dedup_window=settings.dedup_window_hours * 3600.0)
    scheme = url.split(":", 1)[0]
    raise StoreConfigError(f"{url!r}: no store for the scheme {scheme!r} (supported: sqlite)")
