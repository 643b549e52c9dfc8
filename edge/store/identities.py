"""Identities: what the store knows of each visitor, by the keys it is known by ("a:<anonymousId>",
"u:<userId>"), so that a server's conversion finds the click its visitor's browser showed.

Written with the intake that taught it (`Intake.identities`, one transaction); read by processing
a slice's keys at a time (`identities`); merged across a visitor's keys by `merged`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from edge.store.values import Identity, merged


class Identities(ABC):
    """The identities role of a store."""

    @abstractmethod
    async def identities(self, keys: Sequence[str], since: float) -> dict[str, Identity]:
        """The record of each of `keys` seen (or its click first seen) at or after `since`;
        the others are left out. One call for many keys (a processing slice's)."""

    async def identity(self, keys: Sequence[str], since: float) -> Identity | None:
        """The visitor known by any of `keys`, seen (or its click first seen) at or after
        `since`, its records merged; its click whatever its age."""
        return merged(list((await self.identities(keys, since)).values()))

    @abstractmethod
    async def prune_identities(self, before: float) -> int:
        """Forget visitors not seen, and clicks not seen, since `before`; how many."""

    @abstractmethod
    def recent_identities_sync(self, limit: int) -> list[tuple[str, Identity]]:
        """The `limit` records seen last, newest first, each with its key (the demo panel)."""
