"""analytics.js (`@segment/analytics-next`) pointed at the edge: the short paths it posts to
under its `apiHost`, read and answered as the tracking API reads Segment's
(`edge.sources.tracking_api`).

    POST /v1/t /v1/i /v1/p /v1/s /v1/g /v1/a     one event (track, identify, page, …)
    POST /v1/b                                   a batch (its batching delivery)
    POST /v1/m                                   its usage counters: answered 204 and dropped

A call the tracking API tells is a browser's (it says its `Origin`, or every event names
analytics.js as its library), on any of its paths, is stored as this source's arrival: believed
about the shopper, as the beacon is.
"""

from __future__ import annotations

from typing import Final

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from edge.settings import Settings
from edge.source import Source
from edge.sources.tracking_api import BROWSER_SOURCE, arrived_events, batch, single_endpoint

# The paths analytics.js posts to, by the event type each takes (None: a batch).
PATHS: Final = {
    "t": "track", "i": "identify", "p": "page", "s": "screen", "g": "group", "a": "alias",
    "b": None,
}  # fmt: skip
METRICS_PATH: Final = "m"  # where analytics.js posts its usage counters


async def ignored(request: Request) -> Response:
    """analytics.js's own usage counters (`/v1/m`): nothing for Rokt, answered and dropped."""
    return Response(status_code=204)


def routes(settings: Settings) -> list[BaseRoute]:
    short: list[BaseRoute] = [
        Route(f"/v1/{path}", single_endpoint(kind) if kind else batch, methods=["POST"])
        for path, kind in PATHS.items()
    ]
    return [*short, Route(f"/v1/{METRICS_PATH}", ignored, methods=["POST"])]


SOURCE: Final = Source(BROWSER_SOURCE, browser=True, read=arrived_events, routes=routes)
