"""The one pipeline every source shares: event → matching mappings → upstream-ready items.

For each event, every mapping whose trigger matches resolves its fields and builds a body for
the configured upstream. Each result is an `Outbound` (ready for the outbox) or a `Skipped` with
the reason, so that no event ever disappears without saying why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from edge.events import Event
from edge.rokt import capi
from edge.rokt.fields import resolve
from edge.rokt.mapping import Mapping
from edge.settings import Settings

NOT_TRIGGERED: Final = "not triggered: no mapping's trigger matches this event"


@dataclass(frozen=True, slots=True)
class Outbound:
    """One upstream-ready body (a contract A batch), keyed so a replayed event is stored once."""

    key: str
    mapping: str
    message_id: str
    timestamp_ms: int
    body: dict[str, Any]
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Skipped:
    message_id: str
    reason: str
    mapping: str | None = None
    warnings: tuple[str, ...] = field(default=())


Outcome = Outbound | Skipped


class Pipeline:
    def __init__(self, settings: Settings, mappings: Sequence[Mapping]) -> None:
        self.settings = settings
        self.mappings = tuple(mappings)

    def process(self, event: Event) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for mapping in self.mappings:
            if mapping.trigger.matches(event.body):
                outcomes.append(self._apply(event, mapping))
        return outcomes or [Skipped(event.message_id, NOT_TRIGGERED)]

    def _apply(self, event: Event, mapping: Mapping) -> Outcome:
        mapped = resolve(event, mapping, self.settings.phone_region)
        try:
            body = capi.build_batch(mapped, click_id_in_other2=self.settings.click_id_in_other2)
        except capi.Refused as refusal:
            return Skipped(mapped.message_id, refusal.reason, mapping.name, tuple(mapped.warnings))
        return Outbound(
            key=f"{mapping.name}\n{mapped.message_id}",
            mapping=mapping.name,
            message_id=mapped.message_id,
            timestamp_ms=mapped.timestamp_ms,
            body=body,
            warnings=tuple(mapped.warnings),
        )
