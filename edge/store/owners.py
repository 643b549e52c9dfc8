"""Owners: the processes that hold leases on a store, each one incarnation (`Store.owner`: its
host, its process id, a random part), alive while it beats.

    heartbeat ──▶ alive ──(silent for `silent_seconds`, or known gone)──▶ dead: every arrival
                                                                          lease and outbox claim
                                                                          it held freed at once,
                                                                          the owner forgotten

An arrival lease and an outbox claim name their owner, so that a survivor frees a dead owner's
the moment it is known dead (`sweep_dead_owners`) rather than when each lease runs out: a
killed edge's work resumes within seconds. A process on the same host that no longer runs is
known gone at once (`gone`, judged by the caller: `edge.store.liveness`); one on another host
once it has been silent. An owner that never beat (a command that holds an arrival for a moment)
is not judged: its leases run out as before. A process that was only slow, not dead, and comes
back finds its leases gone; what it then settles or acks a second time is harmless (outbox
items are stored once per key, sends carry the event's own message id).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from edge.store.values import Owner


class Owners(ABC):
    """The owners role of a store."""

    owner: str  # this store's incarnation: what its leases and claims name

    @abstractmethod
    async def heartbeat(self) -> None:
        """Record this store's owner alive now (registering it, with its host and process
        id, the first time)."""

    @abstractmethod
    async def sweep_dead_owners(self, silent_seconds: float, gone: Sequence[str] = ()) -> int:
        """Free every arrival lease and outbox claim held by an owner that has not beaten for
        `silent_seconds`, or that `gone` names (never this store's own), and forget those
        owners; how many leases and claims were freed."""

    @abstractmethod
    async def owners(self) -> list[Owner]:
        """Every registered owner, with the leases and claims it holds."""
