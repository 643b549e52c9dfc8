"""The store's errors, raised by every backend alike:

StoreError                    any failure of the store
 ├── StoreUnavailable         a write (or read) could not be made durable: disk full, database
 │                            locked for too long, unreachable, store closed. Intake answers
 │                            503 so the client keeps the event and sends it again.
 └── StoreConfigError         `ROKT_EDGE_DATABASE_URL` names no store this build can open
"""

from __future__ import annotations


class StoreError(Exception):
    """Base of the store's errors (see the tree above)."""


class StoreUnavailable(StoreError):
    """The store could not complete an operation; nothing of it was committed."""


class StoreConfigError(StoreError):
    """The database URL names a store that cannot be opened."""
