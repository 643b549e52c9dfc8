"""Identity stitching: what a server-side event (the tracking API, a file import) learns from the
browser that the same visitor used.

A merchant's backend knows the order but not the click: it reports the conversion with the
visitor's anonymousId or userId, from a server whose own IP address and user agent say nothing
about the shopper. The browser's beacons recorded, per id, the click id and the shopper's IP and
user agent (`Store.identity`); a server event that lacks any of them gets the recorded ones,
within the attribution window:

    click id     the event's own (integrations, page query), else the identity store's
    IP           the event's `context.ip`, else the identity store's (never the request's)
    user agent   the event's `context.userAgent`, else the identity store's (never the request's)

Where each came from is written to `context.rokt_edge` ("event" or "identity"), as the beacon's
enrichment does, so a merchant can see why a conversion carries the click id it does.
"""

from __future__ import annotations

from typing import Any, Final

from edge.capture.enrich import INTEGRATION, event_click_id
from edge.events import Event
from edge.store.base import Identity, IdentityUpdate

EVENT: Final = "event"
IDENTITY: Final = "identity"
CONTEXT_FIELDS: Final = (("ip", "ip"), ("userAgent", "user_agent"))


def identity_keys(event: Event) -> tuple[str, ...]:
    """The identity store's keys for an event's ids; an alias's previousId too (it may be an
    anonymousId or an earlier userId)."""
    body = event.body
    keys = []
    if "anonymousId" in body:
        keys.append(f"a:{body['anonymousId']}")
    if "userId" in body:
        keys.append(f"u:{body['userId']}")
    if event.type == "alias" and "previousId" in body:
        keys += [f"a:{body['previousId']}", f"u:{body['previousId']}"]
    return tuple(keys)


def needs_identity(event: Event) -> bool:
    """Whether the event lacks something the identity store could give."""
    context = event.body.get("context") or {}
    return event_click_id(event.body) is None or any(
        not _present(context.get(name)) for name, _ in CONTEXT_FIELDS
    )


def stitch(event: Event, identity: Identity | None) -> Event:
    """A copy of a server-side event with what the browser recorded added where it lacks it."""
    # Copies of the containers it changes only: the rest is shared with the event, unchanged.
    body = dict(event.body)
    context = body["context"] = dict(body.get("context") or {})
    record: dict[str, Any] = {}
    if event_click_id(body) is not None:
        record["clickId"] = EVENT
    elif identity is not None and identity.click_id:
        integrations = body["integrations"] = dict(body.get("integrations") or {})
        plugin = integrations.get(INTEGRATION)
        plugin = integrations[INTEGRATION] = dict(plugin) if isinstance(plugin, dict) else {}
        plugin["rtid"] = identity.click_id
        record["clickId"] = IDENTITY
    for name, attribute in CONTEXT_FIELDS:
        recorded = getattr(identity, attribute) if identity is not None else None
        if _present(context.get(name)):
            record[name] = EVENT
        elif recorded:
            context[name] = recorded
            record[name] = IDENTITY
    context["rokt_edge"] = record
    return Event(body)


def linked(event: Event, identity: Identity | None) -> IdentityUpdate | None:
    """An event naming several ids (an identify with anonymousId and userId, an alias) links
    them: what the browser recorded for one becomes known under the others too, so a later
    server event that carries only the userId still finds the click."""
    keys = identity_keys(event)
    if identity is None or len(keys) < 2:
        return None
    return IdentityUpdate(
        keys, identity.click_id, identity.click_seen_at, identity.ip, identity.user_agent
    )


def _present(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())
