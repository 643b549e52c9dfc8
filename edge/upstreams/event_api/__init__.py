"""Contract B: Rokt's Event API (docs/upstreams.md): events built from mapped events
(`contract`), v2 keys or v1 tokens (`auth`), answers read (`responses`), and the sender's
`wire`."""

from __future__ import annotations

from typing import Final

from edge.settings import DEFAULT_URLS, Settings
from edge.upstreams.base import Upstream
from edge.upstreams.event_api.contract import EventApiContract
from edge.upstreams.event_api.wire import EventApiWire


def _contract(settings: Settings, first_mapping: str | None) -> EventApiContract:
    """Plain message ids as clientEventId for the first mapping's events only (`contract`)."""
    return EventApiContract(
        settings.account_id,
        auth=settings.event_api_auth,
        plain_ids_for=first_mapping,
        metadata=settings.event_api_metadata,
    )


UPSTREAM: Final = Upstream(
    name="event-api", default_url=DEFAULT_URLS["event-api"], contract=_contract, wire=EventApiWire
)
