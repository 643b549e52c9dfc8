"""What events produced, gathered for one durable write: a slice of arrivals settled, or a chunk
of an import put.

The pipeline's outcomes, the identity updates, and which outbox items are conversions (with or
without a click id and an email: the attribution figures), written in one transaction.
"""

from __future__ import annotations

from collections.abc import Iterable

from edge.events import Event
from edge.pipeline.pipeline import Outbound, Outcome, Skipped
from edge.store.values import Conversion, IdentityUpdate, Intake


class Collected:
    def __init__(self) -> None:
        self.outbound: list[Outbound] = []
        self.skipped: list[Skipped] = []
        self.identities: list[IdentityUpdate] = []
        self.conversions: list[Conversion] = []

    def skip(self, event: Event, reason: str) -> None:
        """The event is acknowledged but not forwarded (privacy, a bot): only its id is kept."""
        self.skipped.append(Skipped(event.message_id, reason))

    def collect(self, outcomes: Iterable[Outcome], source: str) -> None:
        """The pipeline's outcomes for an event that came from `source`."""
        for outcome in outcomes:
            if isinstance(outcome, Outbound):
                self.outbound.append(outcome)
                if outcome.conversion:
                    self.conversions.append(
                        Conversion(outcome.key, source, outcome.click_id, outcome.email)
                    )
            else:
                self.skipped.append(outcome)

    def absorb(self, other: Collected) -> None:
        """Add what another request produced (a slice of arrivals is written as one)."""
        self.outbound += other.outbound
        self.skipped += other.skipped
        self.identities += other.identities
        self.conversions += other.conversions

    def intake(self) -> Intake:
        return Intake(self.outbound, self.skipped, self.identities, self.conversions)
