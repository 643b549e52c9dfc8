"""Admin: what the store says about itself (`rokt-edge status`, `recent`, `/metrics`, readiness),
the sender's state shared by every process on the store (a pause, the upstream's last errors),
its secrets, and its life cycle."""

from __future__ import annotations

from abc import ABC, abstractmethod

from edge.store.values import Paused, Recent, Stats


class Admin(ABC):
    """The admin role of a store. Async methods serve the web service and the sender; `*_sync`
    the commands and the metrics collector (on a thread of their own)."""

    transactions: int  # commits this store made, for tests and benchmarks (group commit)

    @abstractmethod
    async def stats(self) -> Stats: ...

    @abstractmethod
    def stats_sync(self) -> Stats: ...

    @abstractmethod
    def recent_sync(self, limit: int) -> Recent:
        """The latest `limit` outcomes (items stored and events skipped), with the body of each
        item the store still keeps (waiting, dead, dry run; a delivered item's is deleted), and
        the latest `limit` request bodies a dry run recorded; each newest first."""

    @abstractmethod
    async def set_paused(self, paused: Paused | None) -> None: ...

    @abstractmethod
    async def record_upstream_error(self, status: int | None, message: str) -> None:
        """Keep an upstream failure (the last `UPSTREAM_ERRORS_KEPT` of them) for `status`."""

    @abstractmethod
    async def secret(self, name: str) -> str:
        """A random secret generated on first use and kept (e.g. the cookie signing key)."""

    @abstractmethod
    async def check_writable(self) -> None:
        """Make a small durable write; raises StoreUnavailable when the store cannot write."""

    @abstractmethod
    def close(self) -> None:
        """Finish what was submitted, then release the database."""
