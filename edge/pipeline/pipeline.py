"""The one pipeline every source shares: event → matching mappings → upstream-ready items.

For each event, every mapping whose trigger matches resolves its fields and builds a body for
the configured upstream contract. Each result is an `Outbound` (ready for the outbox) or a
`Skipped` with the reason, so that no event ever disappears without saying why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from edge.events import Event
from edge.pipeline.fields import resolve
from edge.pipeline.mapping import Mapping
from edge.settings import Settings
from edge.upstreams import upstream_for
from edge.upstreams.base import Contract, Mapped, Refused

NOT_TRIGGERED: Final = "not triggered: no mapping's trigger matches this event"
OPTED_OUT: Final = "disabled by integrations: the event turns Rokt Conversions API off"
INTEGRATION: Final = "Rokt Conversions API"


def opted_out(body: dict[str, Any]) -> bool:
    """Segment's integrations object: `{"Rokt Conversions API": false}` turns this destination
    off for the event, and so does `{"All": false}` unless the destination is named as on (an
    object of settings, as the browser plugin writes, counts as on)."""
    integrations = body.get("integrations")
    if not isinstance(integrations, dict):
        return False
    ours = integrations.get(INTEGRATION)
    if ours is not None:
        return ours is False
    return integrations.get("All") is False


@dataclass(frozen=True, slots=True)
class Outbound:
    """One upstream-ready body, keyed so a replayed event is stored once; a conversion also
    carries its dedup key, so a copy under another message id is stored once too."""

    key: str
    mapping: str
    message_id: str
    timestamp_ms: int
    body: dict[str, Any]
    warnings: tuple[str, ...] = ()
    dedup_key: str | None = None
    # What the attribution figures count: the body holds a conversion, sent with a click id, and
    # with an email (raw or hashed).
    conversion: bool = False
    click_id: bool = False
    email: bool = False


@dataclass(frozen=True, slots=True)
class Skipped:
    message_id: str
    reason: str
    mapping: str | None = None
    warnings: tuple[str, ...] = field(default=())


Outcome = Outbound | Skipped


class Pipeline:
    def __init__(
        self, settings: Settings, mappings: Sequence[Mapping], contract: Contract | None = None
    ) -> None:
        self.settings = settings
        self.mappings = tuple(mappings)
        # Contract B keeps plain message ids as clientEventId for the first mapping only.
        first = self.mappings[0].name if self.mappings else None
        self.contract = contract or upstream_for(settings).contract(settings, first)

    def process(self, event: Event) -> list[Outcome]:
        if opted_out(event.body):
            return [Skipped(event.message_id, OPTED_OUT)]
        outcomes: list[Outcome] = []
        for mapping in self.mappings:
            if mapping.trigger.matches(event.body):
                outcomes.append(self._apply(event, mapping))
        return outcomes or [Skipped(event.message_id, NOT_TRIGGERED)]

    def _apply(self, event: Event, mapping: Mapping) -> Outcome:
        mapped = resolve(event, mapping, self.settings.phone_region)
        try:
            body = self.contract.build(mapped)
        except Refused as refusal:
            return Skipped(mapped.message_id, refusal.reason, mapping.name, tuple(mapped.warnings))
        return Outbound(
            key=f"{mapping.name}\n{mapped.message_id}",
            mapping=mapping.name,
            message_id=mapped.message_id,
            timestamp_ms=mapped.timestamp_ms,
            body=body,
            warnings=tuple(mapped.warnings),
            dedup_key=dedup_key(mapped),
            conversion=mapped.conversion_type is not None,
            click_id=mapped.click_id is not None,
            email=mapped.email is not None or mapped.email_sha256 is not None,
        )


def dedup_key(mapped: Mapped) -> str | None:
    """(mapping, conversion type, confirmation ref) of a conversion that has both."""
    if mapped.conversion_type is None or mapped.confirmation_ref is None:
        return None
    return f"{mapped.mapping}\n{mapped.conversion_type}\n{mapped.confirmation_ref}"
