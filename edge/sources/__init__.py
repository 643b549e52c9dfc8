"""The doors by which events come in, one module each, and their registry.

    beacon.py        POST /e: the browser snippet's first-party beacon
    tracking_api.py  POST /v1/track … /v1/batch: Segment's HTTP tracking API, for servers
    analytics_js.py  POST /v1/t … /v1/b: analytics.js (Segment's browser library) pointed here
    imports.py       rokt-edge import: an export's rows, a chunk at a time
    shopify_orders.py  POST /shopify/orders: Shopify's order webhook, HMAC-verified
    requests.py      what the doors share: reading a request, errors, the durable write

Each source module says how its requests are read, checked and answered, and exports one
`edge.source.Source`: its name, whether its requests are believed about the shopper, how its
stored arrivals read back as events, its routes. The app serves `SOURCES`' routes and hands
`SOURCES` to processing, which never imports a source. Adding one: a module and a line below
(docs/architecture.md#adding-a-source).
"""

from __future__ import annotations

from typing import Final

from edge.source import Sources
from edge.sources import analytics_js, beacon, imports, shopify_orders, tracking_api

SOURCES: Final = Sources(
    (
        beacon.SOURCE,
        tracking_api.SOURCE,
        analytics_js.SOURCE,
        imports.SOURCE,
        shopify_orders.SOURCE,
    )
)
