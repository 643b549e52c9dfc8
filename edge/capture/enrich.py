"""Enrichment: what the edge adds to a browser's event before the pipeline maps it.

    client IP      the address the edge saw (behind trusted proxies, the forwarded one)
    user agent     the request's User-Agent header
    click id       the event's own (integrations, then the page's query), else the visitor's
                   signed cookie, else the identity store (anonymousId / userId), within the
                   attribution window; written to integrations["Rokt Conversions API"].rtid,
                   where every mapping's default click id source reads it
    anonymousId    the cookie's, when the event has none

What was added and from where is recorded in `context.rokt_edge`, so a merchant can see why a
conversion carries the click id it does. An event that may not be forwarded (GPC, a consent
denial, a bot) gets nothing added: its IP address and user agent are not stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from edge.capture.cookies import Visitor
from edge.events import Event
from edge.rokt.fields import first_present
from edge.rokt.mapping import DEFAULT_FIELDS
from edge.rokt.paths import MISSING

INTEGRATION: Final = "Rokt Conversions API"
EVENT_CLICK_SOURCES: Final = DEFAULT_FIELDS["click_id"]


@dataclass(frozen=True, slots=True)
class Known:
    """A click id the edge already knows for this visitor, and when it was first seen."""

    click_id: str
    seen_at: float
    source: str  # "cookie" or "identity"


@dataclass(frozen=True, slots=True)
class Enriched:
    event: Event
    click_id: str | None
    click_seen_at: float | None


def event_click_id(body: dict[str, Any]) -> str | None:
    """The click id the event itself carries (the plugin's field, then the page's query)."""
    value = first_present(EVENT_CLICK_SOURCES, body)
    # An object or array is no click id (the mapping sends none for it either).
    return None if value is MISSING or isinstance(value, dict | list) else str(value)


def click_of(
    own: str | None, known: Known | None, now: float
) -> tuple[str | None, float | None, str | None]:
    """The click id an event carries after enrichment, when it was first seen, and where it came
    from ("event", or the known click's source): the event's own click wins; when it is the known
    click seen again, the first sighting stands."""
    if own is not None:
        if known is not None and known.click_id == own:
            return own, known.seen_at, "event"
        return own, now, "event"
    if known is not None:
        return known.click_id, known.seen_at, known.source
    return None, None, None


def enrich(
    event: Event,
    *,
    ip: str | None,
    user_agent: str | None,
    visitor: Visitor,
    known: Known | None,
    now: float,
) -> Enriched:
    """A copy of `event` with the edge's knowledge added (the original is left as it came)."""
    # Copies of just the containers this changes; the rest is shared, and nothing mutates it.
    body = dict(event.body)
    context = body["context"] = dict(body.get("context") or {})
    record: dict[str, Any] = {}
    if ip:
        context["ip"] = ip
        record["ip"] = "request"
    if user_agent:
        context["userAgent"] = user_agent
        record["userAgent"] = "request"
    if "anonymousId" not in body and visitor.anonymous_id:
        body["anonymousId"] = visitor.anonymous_id
        record["anonymousId"] = "cookie"
    click_id, seen_at, source = click_of(event_click_id(body), known, now)
    if source is not None:
        record["clickId"] = source
    if source is not None and source != "event":
        integrations = body["integrations"] = dict(body.get("integrations") or {})
        plugin = integrations.get(INTEGRATION)
        integrations[INTEGRATION] = {
            **(plugin if isinstance(plugin, dict) else {}),
            "rtid": click_id,
        }
    context["rokt_edge"] = record
    return Enriched(Event(body), click_id, seen_at)


def cookie_click(visitor: Visitor, *, now: float, window_seconds: float) -> Known | None:
    """The cookie's click id, when it was first seen within the attribution window."""
    if visitor.click_id is None or visitor.click_seen_at is None:
        return None
    if now - visitor.click_seen_at > window_seconds:
        return None
    return Known(visitor.click_id, float(visitor.click_seen_at), "cookie")
