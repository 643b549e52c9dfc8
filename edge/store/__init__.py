"""Durable storage: the outbox of upstream-ready items, skipped records, delivery state.

`open_store(settings)` picks the implementation from `ROKT_EDGE_DATABASE_URL`'s scheme; the
interface (and its errors) is in `edge.store.base`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from edge.store.base import Store, StoreConfigError

if TYPE_CHECKING:  # the writer process imports this package: settings (phone numbers) would
    from edge.settings import Settings  # add half to its start

SQLITE_PREFIX = "sqlite:///"
SETTING = "ROKT_EDGE_DATABASE_URL"


def sqlite_path(url: str) -> Path:
    """`sqlite:///relative.db` → relative.db; `sqlite:////abs.db` → /abs.db (as SQLAlchemy)."""
    if not url.startswith(SQLITE_PREFIX) or url == SQLITE_PREFIX:
        raise StoreConfigError(f"{url!r} is not a sqlite:///path URL")
    return Path(url[len(SQLITE_PREFIX) :])


def open_store(settings: Settings, *, create: bool = True) -> Store:
    """The store the settings name. With `create` (the service), a store that does not exist
    yet is created; without (the commands that read or fill the service's store), it is refused:
    one made here would be a store no service reads. A missing folder is refused, but for the
    default location (`edge.settings.default_database_path`), whose folders are created 0700."""
    url = settings.database_url
    if url.startswith("sqlite:"):
        from edge.settings import default_database_path
        from edge.store.sqlite import SQLiteStore

        path = sqlite_path(url)
        default = path == default_database_path(os.environ)
        where = f"{SETTING}'s default" if default else f"{SETTING} = {url!r}"
        if not create and not path.is_file():
            raise StoreConfigError(
                f"no store at {path} ({where}): `rokt-edge serve` creates it; to use the store "
                f"a running service uses, give this command the same {SETTING}"
            )
        if not default and not path.parent.is_dir():
            raise StoreConfigError(
                f"{SETTING} = {url!r}: the folder {path.parent} does not exist (only the default "
                "location's is created): create it, or name a file in a folder that exists"
            )
        return SQLiteStore(
            path, dedup_window=settings.dedup_window_hours * 3600.0, make_folders=default
        )
    scheme = url.split(":", 1)[0]
    raise StoreConfigError(f"{url!r}: no store for the scheme {scheme!r} (supported: sqlite)")
