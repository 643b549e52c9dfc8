"""Enrichment: what the edge adds to a browser's event before the pipeline maps it.

    client IP      the address the edge saw (behind trusted proxies, the forwarded one)
    user agent     the request's User-Agent header
    click id       the event's own (integrations, then the page's query), else the visitor's
                   signed cookie, else the identity store (anonymousId / userId), within the
                   attribution window; written to integrations["Rokt Conversions API"].rtid,
                   where every mapping's default click id source reads it
    anonymousId    the cookie's, when the event has none

The attribution window runs from a click's first sighting: a click seen again keeps the time it
was first seen (the snippet attaches its click to every event, so a window that restarted at
each sighting would never end), and only a different click replaces it. An event that carries a
click first seen longer ago than the window carries no click id after enrichment (`EXPIRED`).

What was added and from where is recorded in `context.rokt_edge`, so a merchant can see why a
conversion carries the click id it does. An event that may not be forwarded (GPC, a consent
denial, a bot) gets nothing added: its IP address and user agent are not stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, NamedTuple
from urllib.parse import unquote_plus

from edge.capture.cookies import Visitor
from edge.events import Event
from edge.pipeline.fields import first_present
from edge.pipeline.mapping import CLICK_ID_PARAMS, DEFAULT_FIELDS
from edge.pipeline.paths import MISSING

INTEGRATION: Final = "Rokt Conversions API"
EVENT_CLICK_SOURCES: Final = DEFAULT_FIELDS["click_id"]
EVENT: Final = "event"
EXPIRED: Final = "expired"  # `context.rokt_edge.clickId` of an event whose click is too old
CLICK_PARAMETERS: Final = frozenset(CLICK_ID_PARAMS)


@dataclass(frozen=True, slots=True)
class Known:
    """A click id the edge already knows for this visitor, and when it was first seen."""

    click_id: str
    seen_at: float
    source: str  # "cookie" or "identity"


class Enriched(NamedTuple):
    """An event with the edge's knowledge added, and the click it carries then (when that
    click was first seen)."""

    event: Event
    click_id: str | None
    click_seen_at: float | None


def event_click_id(body: dict[str, Any]) -> str | None:
    """The click id the event itself carries (the plugin's field, then the page's query)."""
    value = first_present(EVENT_CLICK_SOURCES, body)
    # An object or array is no click id (the mapping sends none for it either).
    return None if value is MISSING or isinstance(value, dict | list) else str(value)


def click_of(
    own: str | None, known: Known | None, now: float, window: float
) -> tuple[str | None, float | None, str | None]:
    """The click id an event carries after enrichment, when it was first seen, and where it came
    from ("event", the known click's source, or `EXPIRED`: the event's own click was first seen
    more than `window` seconds ago, and it carries none). The event's own click wins; when it is
    the known click seen again, the first sighting stands. A known click counts only within
    the window."""
    if own is not None:
        if known is None or known.click_id != own:
            return own, now, EVENT
        if now - known.seen_at > window:
            return None, None, EXPIRED
        return own, known.seen_at, EVENT
    if known is not None and now - known.seen_at <= window:
        return known.click_id, known.seen_at, known.source
    return None, None, None


def with_click(body: dict[str, Any], click_id: str | None, source: str | None) -> None:
    """Write the click id enrichment decided into `body` (a copy the caller owns): a known click
    into the plugin's field, where every mapping's default click id source reads it; an expired
    one out of every place the event carried it."""
    if source is None or source == EVENT:
        return
    integrations = body["integrations"] = dict(body.get("integrations") or {})
    plugin = integrations.get(INTEGRATION)
    plugin = dict(plugin) if isinstance(plugin, dict) else {}
    if source == EXPIRED:
        plugin.pop("rtid", None)
        _drop_click_parameters(body)
    else:
        plugin["rtid"] = click_id
    integrations[INTEGRATION] = plugin


def _drop_click_parameters(body: dict[str, Any]) -> None:
    """The page's URL and query without the click id parameters (rtid, rclid)."""
    context = body.get("context")
    if not isinstance(context, dict) or not isinstance(context.get("page"), dict):
        return
    page = context["page"]
    page = dict(page)
    for name in ("search", "url"):
        value = page.get(name)
        if isinstance(value, str):
            page[name] = _without_parameters(value, CLICK_PARAMETERS)
    body["context"] = {**context, "page": page}  # a dict: `page` came from it


def _without_parameters(text: str, names: frozenset[str]) -> str:
    """A URL or query string (`?a=1&rtid=x#f`) without the parameters `names`."""
    head, mark, rest = text.partition("?") if "?" in text else ("", "", text)
    query, hash_mark, fragment = rest.partition("#")
    kept = [
        pair for pair in query.split("&")
        if pair and unquote_plus(pair.split("=", 1)[0]) not in names
    ]  # fmt: skip
    query = "&".join(kept)
    return f"{head}{mark if query else ''}{query}{hash_mark}{fragment}"


def enrich(
    event: Event,
    *,
    ip: str | None,
    user_agent: str | None,
    visitor: Visitor,
    known: Known | None,
    now: float,
    window: float,
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
    click_id, seen_at, source = click_of(event_click_id(body), known, now, window)
    if source is not None:
        record["clickId"] = source
    with_click(body, click_id, source)
    body["context"]["rokt_edge"] = record
    return Enriched(Event(body), click_id, seen_at)


def cookie_click(visitor: Visitor) -> Known | None:
    """The cookie's click id and when it was first seen, whatever its age."""
    if visitor.click_id is None or visitor.click_seen_at is None:
        return None
    return Known(visitor.click_id, float(visitor.click_seen_at), "cookie")
