"""What one request's events produced, gathered for the request's single durable write.

Every source that takes events over HTTP (the beacon, the tracking API) collects the pipeline's
outcomes and the identity links here, then `Edge.commit` writes them in one transaction.
"""

from __future__ import annotations

from collections.abc import Iterable

from edge.events import Event
from edge.rokt.pipeline import Outbound, Outcome, Skipped
from edge.store.base import IdentityUpdate, Intake


class Collected:
    def __init__(self) -> None:
        self.outbound: list[Outbound] = []
        self.skipped: list[Skipped] = []
        self.identities: list[IdentityUpdate] = []

    def skip(self, event: Event, reason: str) -> None:
        """The event is acknowledged but not forwarded (privacy, a bot): only its id is kept."""
        self.skipped.append(Skipped(event.message_id, reason))

    def collect(self, outcomes: Iterable[Outcome]) -> None:
        for outcome in outcomes:
            if isinstance(outcome, Outbound):
                self.outbound.append(outcome)
            else:
                self.skipped.append(outcome)

    def absorb(self, other: Collected) -> None:
        """Add what another request produced (a slice of arrivals is written as one)."""
        self.outbound += other.outbound
        self.skipped += other.skipped
        self.identities += other.identities

    def intake(self) -> Intake:
        return Intake(self.outbound, self.skipped, self.identities)
