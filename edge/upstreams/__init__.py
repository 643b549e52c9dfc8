"""The Rokt APIs the edge can send to, one package each, found by name through one registry.

Each package exports one `Upstream` (`base.py`): `capi` (contract A, the Conversions API in
mParticle's batch format, the default) and `event_api` (contract B, Rokt's Event API). Adding an
upstream is a package beside them, one line in `UPSTREAMS`, and its name and default URL in
`edge.settings` (read while settings are built, below this layer).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from edge.settings import Settings, SettingsError
from edge.upstreams import capi, event_api
from edge.upstreams.base import Upstream

UPSTREAMS: Final[Mapping[str, Upstream]] = MappingProxyType(
    {upstream.name: upstream for upstream in (capi.UPSTREAM, event_api.UPSTREAM)}
)


def upstream_for(settings: Settings) -> Upstream:
    """The configured upstream (`ROKT_EDGE_UPSTREAM`)."""
    upstream = UPSTREAMS.get(settings.upstream)
    if upstream is None:
        raise SettingsError(f"ROKT_EDGE_UPSTREAM = {settings.upstream!r}: not supported")
    return upstream
