"""`/`: a small page for whoever opens the edge's address, saying what this service is and where
to look next (the demo when it is on, readiness, metrics, the snippet, the docs). Plain HTML that
needs no script; JSON for a client that asks for it (`Accept: application/json`)."""

from __future__ import annotations

from typing import Any, Final

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from edge import demo
from edge.settings import Settings

DOCS: Final = "README.md and docs/ in the rokt-edge repository; `rokt-edge --help` here"


class Home:
    """`/`: what this service is and where to look next, for whoever opens the edge's address.
    Plain HTML (no script); JSON for `Accept: application/json`. Built once from the settings."""

    def __init__(self, settings: Settings, demo_on: bool, snippet: str) -> None:
        token = settings.metrics_token is not None
        self.document: dict[str, Any] = {
            "service": "rokt-edge",
            "dry_run": settings.dry_run,
            "links": {
                **({"demo": "/demo", "inspect": "/demo/inspect"} if demo_on else {}),
                "readyz": "/readyz", "healthz": "/healthz", "metrics": "/metrics",
                "snippet": snippet, "beacon": "/e", "tracking_api": "/v1/track",
            },
            "metrics_token_required": token,
            "docs": DOCS,
        }  # fmt: skip
        demo_item = (
            '<li><a href="/demo">/demo</a>: a demo shop that shows the whole flow in a minute, '
            'and <a href="/demo/inspect">/demo/inspect</a>, what the edge received and would '
            "send to Rokt"
            + ("" if demo.shows_traffic(settings) else " (its data only in dry run)")
            + "</li>"
        )
        metrics_note = (
            "only for <code>Authorization: Bearer &lt;token&gt;</code> "
            "(ROKT_EDGE_METRICS_TOKEN is set)"
            if token
            else "open to anyone who reaches this address "
            "(set ROKT_EDGE_METRICS_TOKEN to require a token)"
        )
        dry_run = (
            "<p><b>Dry run</b>: nothing is sent to Rokt; what would be sent is recorded.</p>"
            if settings.dry_run
            else ""
        )
        self.page = HOME_PAGE.format(
            dry_run=dry_run,
            demo=demo_item if demo_on else "",
            metrics=metrics_note,
            snippet=snippet,
        )

    async def respond(self, request: Request) -> Response:
        accept = request.headers.get("accept", "")
        headers = {"Vary": "Accept", "Cache-Control": "no-cache"}
        if "application/json" in accept and "text/html" not in accept:
            return JSONResponse(self.document, headers=headers)
        return HTMLResponse(self.page, headers=headers)


HOME_PAGE: Final = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>rokt-edge</title>
<style>
body {{ font: 16px/1.5 system-ui, sans-serif; max-width: 42em; margin: 0 auto; padding: 1em;
  color: #1d1d1f; }}
code {{ font: 14px ui-monospace, monospace; background: #eee; padding: 0 .3em;
  border-radius: 3px; overflow-wrap: anywhere; }}
li {{ margin: .4em 0; }}
</style>
</head>
<body>
<h1>rokt-edge</h1>
<p>A self-hosted, first-party edge for Rokt conversions: it keeps the click id of a shopper who
came from a Rokt ad and sends their conversions to Rokt with it.</p>
{dry_run}
<ul>
{demo}
<li><a href="/readyz">/readyz</a>: ready or not, and why (JSON); <a href="/healthz">/healthz</a>:
the process is alive</li>
<li><a href="/metrics">/metrics</a>: Prometheus metrics, {metrics}</li>
<li><a href="{snippet}">{snippet}</a>: the browser snippet for the shop's pages, which posts to
<code>/e</code></li>
<li><code>POST /v1/track</code>, <code>/v1/batch</code>, &hellip;: the server-side tracking API
(Segment-compatible)</li>
</ul>
<p>Documentation: <code>README.md</code> and <code>docs/</code> in the rokt-edge repository;
<code>rokt-edge --help</code> here.</p>
</body>
</html>
"""
