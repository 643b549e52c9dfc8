"""The values the store takes and gives: what intake and processing write, what delivery and the
commands read back. Plain data, the same whichever backend stores it; the roles that take them
are `edge.store.outbox`, `edge.store.arrivals`, `edge.store.identities` and `edge.store.admin`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple, Protocol

ItemId = int

# Dead-letter reasons: a small fixed set (they label metrics); the upstream's words go in `message`.
REJECTED: Final = "rejected"  # the upstream refused the batch (400, or named in a 202's errors)
EXPIRED: Final = "expired"  # older than the upstream's data-age limit (30 days) before delivery
# Skip reason of a conversion already stored under another message id (see `dedup_key`).
DUPLICATE: Final = "duplicate"
UPSTREAM_ERRORS_KEPT: Final = 20


class OutboundItem(Protocol):
    """What the pipeline hands to the outbox (`edge.pipeline.pipeline.Outbound` has this shape)."""

    @property
    def key(self) -> str: ...
    @property
    def mapping(self) -> str: ...
    @property
    def message_id(self) -> str: ...
    @property
    def timestamp_ms(self) -> int: ...
    @property
    def body(self) -> dict[str, Any]: ...
    @property
    def dedup_key(self) -> str | None:
        """(mapping, conversion type, confirmation ref) of a conversion, else None: a second
        item with the same key and another message id, whose event time is within the
        de-duplication window of the first's, is recorded as skipped (`DUPLICATE`), not stored."""
        ...


class SkippedItem(Protocol):
    """An event that produced nothing to send, and why (`edge.pipeline.pipeline.Skipped`)."""

    @property
    def message_id(self) -> str: ...
    @property
    def reason(self) -> str: ...
    @property
    def mapping(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class IdentityUpdate:
    """What an event taught about a visitor, for each of its ids ("a:<anonymousId>",
    "u:<userId>"): an identify with both links them. `click_seen_at` is when the click was first
    seen: the same click again keeps the earliest time (the attribution window runs from it); a
    different click replaces the stored one only when it was first seen at the same time or
    later. IP, user agent and the hashed email and mobile replace when given."""

    keys: tuple[str, ...]
    click_id: str | None
    click_seen_at: float | None
    ip: str | None
    user_agent: str | None
    email_sha256: str | None = None  # SHA-256 of the normalized email: never the raw value
    mobile_sha256: str | None = None  # SHA-256 of the mobile's national digits


@dataclass(frozen=True, slots=True)
class Identity:
    """What the store knows of a visitor: its freshest click id and when that click was first
    seen, whatever its age (the caller judges the attribution window), and the IP address, user
    agent and hashed email and mobile it last showed."""

    click_id: str | None
    click_seen_at: float | None
    ip: str | None
    user_agent: str | None
    seen_at: float
    email_sha256: str | None = None
    mobile_sha256: str | None = None


def merged(found: Sequence[Identity]) -> Identity | None:
    """One visitor from several records of it: the click first seen last, and the IP address,
    user agent, email and mobile last seen."""
    if not found:
        return None
    clicks = [each for each in found if each.click_id and each.click_seen_at is not None]
    click = max(clicks, key=lambda each: each.click_seen_at or 0.0) if clicks else None
    latest = sorted(found, key=lambda each: each.seen_at, reverse=True)
    return Identity(
        click_id=click.click_id if click else None,
        click_seen_at=click.click_seen_at if click else None,
        ip=next((each.ip for each in latest if each.ip), None),
        user_agent=next((each.user_agent for each in latest if each.user_agent), None),
        seen_at=latest[0].seen_at,
        email_sha256=next((each.email_sha256 for each in latest if each.email_sha256), None),
        mobile_sha256=next((each.mobile_sha256 for each in latest if each.mobile_sha256), None),
    )


class Conversion(NamedTuple):
    """A conversion put in the outbox, for the attribution figures: the source it came from
    (beacon, api, analytics.js, import) and whether it carries a click id and an email."""

    key: str  # its outbox key: counted once, when first stored
    source: str
    click_id: bool
    email: bool


@dataclass(frozen=True, slots=True)
class ConversionShare:
    """Conversions of one source stored for delivery over a recent window, and how many of
    them carry a click id and an email (the figure a merchant judges attribution by)."""

    source: str
    window: str  # "1h" or "24h"
    conversions: int
    with_click_id: int
    with_email: int


@dataclass(frozen=True, slots=True)
class Intake:
    """Everything intake records for one request; the store writes it in one transaction."""

    outbound: Sequence[OutboundItem] = ()
    skipped: Sequence[SkippedItem] = ()
    identities: Sequence[IdentityUpdate] = ()
    conversions: Sequence[Conversion] = ()  # of `outbound`: counted when stored


class Arrival(NamedTuple):
    """What one intake request left for processing (`edge.processing`): its body and what the
    request itself said about the visitor. Stored before the request is answered; processing
    reads the body again as intake did (`edge.events.ArrivalDefaults`).

    A named tuple rather than a frozen dataclass, as the outbox's `Claim`: one is built per
    request on the hot path, and a frozen dataclass sets each of its ten fields through
    `object.__setattr__`."""

    source: str  # "beacon" or "api"
    received_at: float  # epoch seconds
    body: bytes  # the request's JSON as it came (decompressed), read again by processing
    kind: str | None = None  # the tracking API route's event type (None: a batch, a beacon)
    ip: str | None = None
    user_agent: str | None = None
    gpc: bool = False  # the request carried Sec-GPC: 1
    cookie_anonymous_id: str | None = None  # the visitor cookie the request carried
    cookie_click_id: str | None = None
    cookie_click_seen_at: int | None = None
    # The identity keys its events may read or teach, a JSON array (`edge.capture.stitch.
    # arrival_keys`): arrivals that share one are processed in the order they came, whichever
    # processes take them (`edge.store.arrivals`). None: it shares none (not known).
    keys: str | None = None


class StoredArrival(NamedTuple):
    """An arrival as the store keeps it, leased to the processor that took it
    (`edge.store.arrivals`)."""

    id: int
    arrival: Arrival


@dataclass(frozen=True, slots=True)
class PutResult:
    stored: int  # new outbox items
    duplicates: int  # items whose key was already stored (a replayed event), not stored again
    deduplicated: int = 0  # conversions stored before under another message id: skipped
    conversions: tuple[Conversion, ...] = ()  # of the new items, those that are conversions


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: ItemId
    reason: str  # REJECTED or EXPIRED
    message: str  # the upstream's message, or why it expired


@dataclass(frozen=True, slots=True)
class UpstreamError:
    at: float  # epoch seconds
    status: int | None  # None: no response (timeout, connection error)
    message: str


@dataclass(frozen=True, slots=True)
class Paused:
    since: float  # epoch seconds
    reason: str


@dataclass(frozen=True, slots=True)
class Owner:
    """A process that holds (or may hold) leases on the store: one incarnation of an edge, or of
    `rokt-edge deliver` (`edge.store.owners`)."""

    owner: str  # the incarnation's id, `Store.owner`: host/pid/random
    host: str
    pid: int
    started_at: float  # its first heartbeat
    seen_at: float  # its last
    arrivals: int = 0  # arrival leases it holds
    items: int = 0  # outbox items it has claimed


@dataclass(frozen=True, slots=True)
class Stats:
    """What `rokt-edge status`, readiness and `/metrics` report."""

    pending: int  # waiting to be sent, including those waiting for a retry
    retrying: int  # of those, the ones that failed at least once
    in_flight: int  # claimed by a sender
    oldest_pending: float | None  # when the oldest pending or claimed item was stored
    delivered: int  # still remembered (pruned after the data-age limit), dry runs included
    delivered_dry_run: int  # recorded, never sent (`replay_dry_runs` sends them)
    dead: dict[str, int] = field(default_factory=dict)  # by reason
    dead_messages: list[tuple[str, str, int]] = field(default_factory=list)  # reason, text, n
    skipped: dict[str, int] = field(default_factory=dict)  # by reason
    upstream_errors: list[UpstreamError] = field(default_factory=list)  # newest first
    paused: Paused | None = None
    dry_run_bodies: int = 0
    arrivals: int = 0  # intake requests not processed yet
    oldest_arrival: float | None = None  # when the oldest of them came
    conversions: list[ConversionShare] = field(default_factory=list)  # by source and window
    owners: list[Owner] = field(default_factory=list)  # the processes on the store, alive or not


@dataclass(frozen=True, slots=True)
class DryRunBody:
    at: float
    path: str
    body: str


# What became of an event for a mapping (`Outcome.state`): still in the outbox, or its end.
PENDING: Final = "pending"  # waiting to be sent
RETRYING: Final = "retrying"  # waiting to be sent again, after a failed attempt
IN_FLIGHT: Final = "in flight"  # claimed by a sender
DELIVERED: Final = "delivered"
DRY_RUN: Final = "dry run"  # recorded in a dry run, not sent (`replay_dry_runs` sends it)
DEAD: Final = "dead"  # dead-lettered
SKIPPED: Final = "skipped"  # nothing to send (not triggered, consent, a duplicate…)


@dataclass(frozen=True, slots=True)
class Outcome:
    """One event's outcome for one mapping, as `rokt-edge recent` shows it."""

    at: float  # when it was stored in the outbox, or recorded as skipped (epoch seconds)
    state: str  # PENDING, RETRYING, IN_FLIGHT, DELIVERED, DRY_RUN, DEAD or SKIPPED
    message_id: str
    mapping: str | None  # None: skipped before any mapping (a bot, a consent denial)
    reason: str | None = None  # skipped: why; dead: REJECTED or EXPIRED
    message: str | None = None  # dead: the upstream's message; waiting: the last error, if any
    dead_at: float | None = None
    body: str | None = None  # what was (or would be) sent, as JSON text, while it is kept


@dataclass(frozen=True, slots=True)
class Recent:
    """The latest outcomes and dry-run request bodies, newest first (`Admin.recent_sync`)."""

    outcomes: list[Outcome]
    requests: list[DryRunBody]
