"""Contract A: Rokt's Conversions API, in mParticle's batch format (docs/upstreams.md): batches
built from mapped events (`contract`), answers read (`responses`), and the sender's `wire`."""

from __future__ import annotations

from typing import Final

from edge.settings import DEFAULT_URLS, Settings
from edge.upstreams.base import Upstream
from edge.upstreams.capi.contract import CapiContract
from edge.upstreams.capi.wire import CapiWire


def _contract(settings: Settings, first_mapping: str | None) -> CapiContract:
    return CapiContract(click_id_in_other2=settings.click_id_in_other2)


UPSTREAM: Final = Upstream(
    name="capi", default_url=DEFAULT_URLS["capi"], contract=_contract, wire=CapiWire
)
