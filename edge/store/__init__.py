"""Durable storage: arrivals, the outbox of upstream-ready items, skipped records, identities,
delivery state.

    errors.py      the error tree             values.py      the values the roles take and give
    outbox.py      the outbox role (states)   arrivals.py    the arrivals role (leases)
    identities.py  the identities role        admin.py       stats, secrets, life cycle
    owners.py      the processes holding leases, alive while they beat (liveness.py: the loop)
    budgets.py     token buckets shared by every process on the store (the upstream's limit)
    interface.py   `Store`, every role together: what a backend implements
    sqlite.py      the embedded backend (sqlite_*.py: its writer, the channel to it, tables)
    postgres.py    the fleet's backend (postgres_*.py: plans, group commit, schema, tables)

`open_store(settings)` picks the backend from `ROKT_EDGE_DATABASE_URL`'s scheme (`BACKENDS`);
`edge.settings` accepts the same schemes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Final

from edge.store.errors import StoreConfigError
from edge.store.interface import Store

if TYPE_CHECKING:  # the writer process imports this package: settings (phone numbers) would
    from edge.settings import Settings  # add half to its start

__all__ = ["BACKENDS", "Store", "open_store"]


def _sqlite(url: str, settings: Settings, create: bool) -> Store:
    from edge.store.sqlite import open_url

    return open_url(url, settings, create=create)


def _postgresql(url: str, settings: Settings, create: bool) -> Store:
    from edge.store.postgres import open_url

    return open_url(url, settings, create=create)


# Each backend by the URL scheme that names it: how to open one from the settings.
BACKENDS: Final[Mapping[str, Callable[[str, Settings, bool], Store]]] = {
    "sqlite": _sqlite,
    "postgresql": _postgresql,
}


def open_store(settings: Settings, *, create: bool = True) -> Store:
    """The store the settings name. With `create` (the service), a store that does not exist
    yet is created; without (the commands that read or fill the service's store), it is refused:
    one made here would be a store no service reads."""
    url = settings.database_url
    scheme = url.split(":", 1)[0]
    backend = BACKENDS.get(scheme)
    if backend is None:
        supported = f"supported: {', '.join(BACKENDS)}"
        from edge.settings import without_password  # here only: see TYPE_CHECKING above

        shown = without_password(url)
        raise StoreConfigError(f"{shown!r}: no store for the scheme {scheme!r} ({supported})")
    return backend(url, settings, create)
