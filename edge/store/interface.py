"""`Store`: every role together, what a backend implements (tests/store/contract/ checks it)."""

from __future__ import annotations

from edge.store.admin import Admin
from edge.store.arrivals import Arrivals
from edge.store.budgets import Budgets
from edge.store.identities import Identities
from edge.store.outbox import Outbox
from edge.store.owners import Owners


class Store(Outbox, Arrivals, Identities, Owners, Budgets, Admin):
    """Durable storage, every role: the web service, processing, the sender and the commands
    each use the roles they need."""
