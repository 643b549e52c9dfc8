"""Attribution, per event and in the order events came: what the edge adds from what it knows of
the visitor, and what each event teaches it, seen at once by the events after it.

    privacy (GPC, consent) and bots ─▶ the visitor's click id, IP, user agent, hashed email and
    mobile, from the request (a browser's), its cookie and the identity store as the events
    before this one left it ─▶ enrich (a browser's event) or stitch (a server's) ─▶ the pipeline
    ─▶ what the event taught: an identity update, recorded in the view of the identity store
    that the next event reads (`IdentityView`), written when the slice settles

A browser's request (the beacon; analytics.js) is believed about the shopper: its IP address and
user agent are the shopper's, its cookie is the visitor's, and the click ids its events carry are
sightings. A server's request (a backend through the tracking API, an import) is not: its events
get only what a browser showed for the same ids (`edge.capture.stitch`), and they link the ids
they name (an identify's anonymousId and userId). So a backend's batch of `identify(anonymousId →
userId)` then `track("Order Completed", userId)` finds the browser's click in one request, as in
two. Every source goes through `Attribution.add`; what differs is data (`Carrier.browser`).
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from edge.capture.cookies import Visitor
from edge.capture.enrich import Known, click_of, cookie_click, enrich, event_click_id
from edge.capture.identifiers import (
    hashed_email,
    hashed_mobile,
    lacks_identifiers,
    with_identifiers,
)
from edge.capture.privacy import privacy_skip
from edge.capture.stitch import identity_click, identity_keys, stitch
from edge.events import Event
from edge.intake import Collected
from edge.pipeline.pipeline import Outcome, Pipeline
from edge.settings import Settings
from edge.store.errors import StoreError
from edge.store.values import Identity, IdentityUpdate, merged
from edge.useragent import parse_user_agent

BOT: Final = "bot"
PROCESSING_FAILED: Final = "processing failed"  # an event no check foresaw (`failed`)
CULPRIT_DEPTH: Final = 4  # levels of an event searched for the field that failed it
MAX_COOKIE_ID: Final = 200  # characters of an anonymous id or click id the cookie keeps
# Events whose mappings may send an email or mobile: those that get the remembered ones.
IDENTIFIED_TYPES: Final = frozenset({"track", "identify"})

log = logging.getLogger("rokt_edge.processing")

Lookup = Callable[[Sequence[str], float], Awaitable[dict[str, Identity]]]


class IdentityView:
    """The identity store as a slice being processed sees it: what is stored (looked up once
    for the whole slice, `prefetch`), plus what the slice's earlier events taught (written only
    when the slice settles)."""

    def __init__(self, lookup: Lookup) -> None:
        self._lookup = lookup  # the store's `identities`
        self._stored: dict[str, Identity | None] = {}  # by key; None: looked up, not found
        self._fresh: dict[str, Identity] = {}

    async def prefetch(self, keys: Iterable[str], since: float) -> None:
        """Look up, in one call, the keys the slice's events will ask about."""
        missing = list(dict.fromkeys(key for key in keys if key not in self._stored))
        if missing:
            found = await self._lookup(missing, since)
            self._stored.update((key, found.get(key)) for key in missing)

    async def identity(self, keys: Sequence[str], since: float) -> Identity | None:
        await self.prefetch(keys, since)
        stored = [record for key in keys if (record := self._stored[key]) is not None]
        fresh = [self._fresh[key] for key in keys if key in self._fresh] if self._fresh else []
        found = stored + fresh
        return found[0] if len(found) == 1 else merged(found)

    def record(self, updates: Sequence[IdentityUpdate], now: float) -> None:
        """As the store will apply them (`edge.store.values.IdentityUpdate`)."""
        for update in updates:
            for key in update.keys:
                self._fresh[key] = applied(self._fresh.get(key), update, now)


def applied(old: Identity | None, update: IdentityUpdate, now: float) -> Identity:
    """A visitor's record after an update: the same click keeps its first sighting, a different
    one replaces it when first seen at the same time or later; the rest replaces when given."""
    click_id, seen_at = update.click_id, update.click_seen_at if update.click_id else None
    if old is not None and old.click_id is not None:
        if click_id == old.click_id:
            seen_at = min(filter(None, (seen_at, old.click_seen_at)), default=None)
        elif click_id is None or (
            old.click_seen_at is not None and (seen_at or 0.0) < old.click_seen_at
        ):
            click_id, seen_at = old.click_id, old.click_seen_at
    return Identity(
        click_id=click_id,
        click_seen_at=seen_at,
        ip=update.ip or (old.ip if old else None),
        user_agent=update.user_agent or (old.user_agent if old else None),
        seen_at=now,
        email_sha256=update.email_sha256 or (old.email_sha256 if old else None),
        mobile_sha256=update.mobile_sha256 or (old.mobile_sha256 if old else None),
    )


@dataclass(frozen=True, slots=True)
class Carrier:
    """What the request that carried the events said about the visitor. Only a browser's
    request is believed: a server's IP address, user agent and cookies are its own."""

    browser: bool
    ip: str | None = None
    user_agent: str | None = None
    gpc: bool = False  # Sec-GPC: 1
    visitor: Visitor = field(default_factory=Visitor)  # the edge's cookie the request carried


SERVER: Final = Carrier(browser=False)


class Attribution(Collected):
    """One request's events (or an import's rows), attributed in order. `source` names where
    they came from in the figures (beacon, api, analytics.js, import)."""

    def __init__(
        self,
        pipeline: Pipeline,
        view: IdentityView | None,
        source: str,
        carrier: Carrier,
        now: float,
    ) -> None:
        super().__init__()
        self.pipeline = pipeline
        self.settings: Settings = pipeline.settings
        self.view = view  # None: a dry run that reads no identity store
        self.source = source
        self.carrier = carrier
        self.visitor = carrier.visitor
        self.now = now
        self.window = self.settings.attribution_window_days * 86400.0
        self.is_bot = carrier.browser and is_bot(self.settings, carrier.user_agent)

    def lookup_keys(self, events: Iterable[Event]) -> Iterator[str]:
        """The identity keys of the events that will ask the identity store (`_Found`), for
        `IdentityView.prefetch`: a server's events, and a browser's whose cookie does not tell
        their click or that may get remembered identifiers. A guess from the cookie the
        request carried: a key not prefetched is looked up when asked."""
        cookie = cookie_click(self.visitor)
        remember = self.settings.remember_identifiers
        for event in events:
            if self.carrier.browser:
                own = event_click_id(event.body)
                known = cookie is not None and (
                    cookie.click_id == own
                    if own is not None
                    else self.now - cookie.seen_at <= self.window
                )
                traits = (
                    remember and event.type in IDENTIFIED_TYPES and lacks_identifiers(event.body)
                )
                if known and not traits:
                    continue
            yield from identity_keys(event)

    async def add(self, event: Event) -> list[Outcome]:
        """Attribute one event and put what it produces in the collection; also returned.

        An event that cannot be processed (data no check foresaw, a bug) is skipped alone,
        with a reason saying where it failed: its neighbours go on. A store failure is raised
        (the slice is processed again later)."""
        reason = private(self.settings, event, self.carrier.gpc)
        if reason is None and self.is_bot:
            reason = BOT
        if reason is not None:
            self.skip(event, reason)
            return [self.skipped[-1]]
        try:
            outcomes, update, visitor = await self._attribute(event)
        except StoreError:
            raise
        except Exception as failure:
            field_ = culprit(event.body, lambda body: self.pipeline.process(Event(body)))
            reason = failed(failure, field_)
            log.error("processing: event %s skipped: %s", event.message_id, reason, exc_info=True)
            self.skip(event, reason)
            return [self.skipped[-1]]
        self.collect(outcomes, self.source)
        if update is not None:
            self.identities.append(update)
            if self.view is not None:
                self.view.record([update], self.now)
        self.visitor = visitor
        return outcomes

    async def _attribute(
        self, event: Event
    ) -> tuple[list[Outcome], IdentityUpdate | None, Visitor]:
        """What one event produces, what it teaches, and the visitor cookie after it."""
        keys = identity_keys(event)
        found = _Found(self.view, keys, self.now - self.window)
        if self.carrier.browser:
            known = await self._known_click(event, found)
            enriched = enrich(
                event, ip=self.carrier.ip, user_agent=self.carrier.user_agent,
                visitor=self.visitor, known=known, now=self.now, window=self.window,
            )  # fmt: skip
            attributed, click_id, seen_at = enriched
        else:
            identity = await found.identity()
            attributed, click_id, seen_at = stitch(event, identity, self.now, self.window)
        remember = self.settings.remember_identifiers
        if remember and event.type in IDENTIFIED_TYPES and lacks_identifiers(attributed.body):
            attributed = with_identifiers(attributed, await found.identity())
        outcomes = self.pipeline.process(attributed)
        update = self._taught(event, keys, click_id, seen_at, found.known)
        visitor = self.visitor
        if self.carrier.browser:
            anonymous_id = attributed.body.get("anonymousId") or visitor.anonymous_id
            visitor = remembered(visitor, anonymous_id, click_id, seen_at)
        return outcomes, update, visitor

    async def _known_click(self, event: Event, found: _Found) -> Known | None:
        """The click the edge knows for a browser's visitor: the cookie's, else the identity
        store's (looked up only when the cookie cannot tell)."""
        own = event_click_id(event.body)
        cookie = cookie_click(self.visitor)
        if cookie is not None and (
            cookie.click_id == own if own is not None else self.now - cookie.seen_at <= self.window
        ):
            return cookie
        stored = identity_click(await found.identity())
        if own is not None:
            return stored if stored is not None and stored.click_id == own else cookie
        return stored or cookie

    def _taught(
        self,
        event: Event,
        keys: tuple[str, ...],
        click_id: str | None,
        seen_at: float | None,
        identity: Identity | None,
    ) -> IdentityUpdate | None:
        """What the event teaches the identity store about its ids. A browser's event: the click
        it carries, the IP address and user agent. A server's: the click it carries, and the
        visitor its ids already name linked to all of them."""
        if not keys:
            return None
        email = mobile = None
        if self.settings.remember_identifiers:
            email = hashed_email(event.body)
            mobile = hashed_mobile(event.body, self.settings.phone_region)
        if self.carrier.browser:
            return IdentityUpdate(
                keys, click_id, seen_at, self.carrier.ip, self.carrier.user_agent, email, mobile
            )
        linked = identity is not None and len(keys) > 1
        if not (linked or click_id or email or mobile):
            return None
        if identity is None:
            identity = Identity(None, None, None, None, self.now)
        if click_id is None:
            click_id, seen_at = identity.click_id, identity.click_seen_at
        return IdentityUpdate(
            keys, click_id, seen_at, identity.ip, identity.user_agent,
            email or identity.email_sha256, mobile or identity.mobile_sha256,
        )  # fmt: skip


class _Found:
    """The identity store's record of one event's visitor, looked up at most once, and only
    when something needs it."""

    def __init__(self, view: IdentityView | None, keys: tuple[str, ...], since: float) -> None:
        self.view, self.keys, self.since = view, keys, since
        self.looked = False
        self.known: Identity | None = None

    async def identity(self) -> Identity | None:
        if not self.looked:
            self.looked = True
            if self.view is not None and self.keys:
                self.known = await self.view.identity(self.keys, self.since)
        return self.known


def failed(failure: Exception, field_: str | None = None) -> str:
    """A skip reason for an event whose processing raised: the field that made it fail (when
    one is found), the error's kind and the function it came from, never its message (which
    may quote the event's data)."""
    frames = traceback.extract_tb(failure.__traceback__)
    where = f" in {Path(frames[-1].filename).stem}.{frames[-1].name}" if frames else ""
    at = f" at {field_}" if field_ else ""
    return f"{PROCESSING_FAILED}{at}: {type(failure).__name__}{where}"


def culprit(body: dict[str, Any], attempt: Callable[[dict[str, Any]], object]) -> str | None:
    """The field (a dotted path) whose removal lets `attempt` succeed on a copy of `body`,
    deepest first; None when `attempt` does not fail on `body` itself (the failure was
    elsewhere) or no single field's removal helps. Run only for an event that failed."""
    try:
        attempt(body)
    except Exception:
        pass
    else:
        return None
    for path in sorted(_leaves(body), key=len, reverse=True):
        try:
            attempt(_without(body, path))
        except Exception:
            continue
        return ".".join(path)
    return None


def _leaves(value: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    if isinstance(value, dict) and value and len(path) < CULPRIT_DEPTH:
        for key, item in value.items():
            yield from _leaves(item, (*path, str(key)))
        if path:
            yield path
    elif path:
        yield path


def _without(body: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    copy = dict(body)
    holder = copy
    for key in path[:-1]:
        holder[key] = dict(holder[key])
        holder = holder[key]
    del holder[path[-1]]
    return copy


def is_bot(settings: Settings, user_agent: str | None) -> bool:
    return bool(settings.skip_bots and user_agent and parse_user_agent(user_agent).is_bot)


def private(settings: Settings, event: Event, gpc: bool) -> str | None:
    return privacy_skip(
        event.body, "1" if gpc else None,
        honor_gpc=settings.honor_gpc, honor_consent=settings.honor_consent,
    )  # fmt: skip


def remembered(
    visitor: Visitor, anonymous_id: str | None, click_id: str | None, seen_at: float | None
) -> Visitor:
    """What the visitor cookie holds after an event with these ids."""
    if anonymous_id is not None and len(anonymous_id) > MAX_COOKIE_ID:
        anonymous_id = visitor.anonymous_id  # browsers drop cookies over ~4 KB
    if click_id and len(click_id) > MAX_COOKIE_ID:
        click_id = None  # Rokt's ids are short: such a one is not kept in the cookie
    if click_id and seen_at is not None:
        return Visitor(anonymous_id, click_id, int(seen_at))
    return Visitor(anonymous_id, visitor.click_id, visitor.click_seen_at)


def answer_cookie(
    settings: Settings,
    visitor: Visitor,
    events: Sequence[Event],
    gpc: bool,
    user_agent: str | None,
    now: float,
) -> tuple[Visitor | None, bool]:
    """The visitor cookie to set in a browser's answer (None: a privacy signal, set none), and
    whether every event is private. The cookie learns the events' own click ids and anonymous
    ids by the rules `Attribution.add` follows; a click only the identity store knows reaches it
    on a later request."""
    window = settings.attribution_window_days * 86400.0
    reasons = [private(settings, event, gpc) for event in events]
    if any(reasons):
        return None, all(reasons)
    if is_bot(settings, user_agent):
        return visitor, False
    for event in events:
        body = event.body
        click_id, seen_at, _ = click_of(event_click_id(body), cookie_click(visitor), now, window)
        anonymous_id = body.get("anonymousId") or visitor.anonymous_id
        visitor = remembered(visitor, anonymous_id, click_id, seen_at)
    return visitor, False
