"""Identity stitching: what a server-side event (the tracking API, a file import) learns from the
browser that the same visitor used.

A merchant's backend knows the order but not the click: it reports the conversion with the
visitor's anonymousId or userId, from a server whose own IP address and user agent say nothing
about the shopper. The browser's beacons recorded, per id, the click id and the shopper's IP and
user agent (`Store.identity`); a server event that lacks any of them gets the recorded ones,
within the attribution window:

    click id     the event's own (integrations, page query), else the identity store's, within
                 the attribution window from the click's first sighting (`edge.capture.enrich`)
    IP           the event's `context.ip`, else the identity store's (never the request's)
    user agent   the event's `context.userAgent`, else the identity store's (never the request's)

Where each came from is written to `context.rokt_edge` ("event" or "identity"), as the beacon's
enrichment does, so a merchant can see why a conversion carries the click id it does.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, Final

from edge.capture.enrich import EVENT, Enriched, Known, click_of, event_click_id, with_click
from edge.events import Event
from edge.store.values import Identity

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


def arrival_keys(events: Iterable[Event], cookie_anonymous_id: str | None = None) -> str:
    """The identity keys a request's events may read or teach (the cookie's anonymousId too:
    enrichment gives it to an event without one), sorted, as a JSON array: the arrival's
    `keys`."""
    keys = {key for event in events for key in identity_keys(event)}
    if cookie_anonymous_id:
        keys.add(f"a:{cookie_anonymous_id}")
    return json.dumps(sorted(keys), ensure_ascii=False, separators=(",", ":"))


def identity_click(identity: Identity | None) -> Known | None:
    """The identity store's click for a visitor, whatever its age."""
    if identity is None or not identity.click_id or identity.click_seen_at is None:
        return None
    return Known(identity.click_id, identity.click_seen_at, IDENTITY)


def stitch(event: Event, identity: Identity | None, now: float, window: float) -> Enriched:
    """A copy of a server-side event with what the browser recorded added where it lacks it,
    and the click id it carries then, with when that click was first seen."""
    # Copies of the containers it changes only: the rest is shared with the event, unchanged.
    body = dict(event.body)
    body["context"] = dict(body.get("context") or {})
    record: dict[str, Any] = {}
    known = identity_click(identity)
    click_id, seen_at, source = click_of(event_click_id(body), known, now, window)
    if source is not None:
        record["clickId"] = source
    with_click(body, click_id, source)
    context = body["context"]
    for name, attribute in CONTEXT_FIELDS:
        recorded = getattr(identity, attribute) if identity is not None else None
        if _present(context.get(name)):
            record[name] = EVENT
        elif recorded:
            context[name] = recorded
            record[name] = IDENTITY
    context["rokt_edge"] = record
    return Enriched(Event(body), click_id, seen_at)


def _present(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())
