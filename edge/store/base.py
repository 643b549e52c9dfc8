"""The store interface: what intake, the sender and the commands need from durable storage.

    StoreError                    any failure of the store
     ├── StoreUnavailable         a write (or read) could not be made durable: disk full, database
     │                            locked for too long, store closed. Intake answers 503 so the
     │                            client keeps the event and sends it again.
     └── StoreConfigError         `ROKT_EDGE_DATABASE_URL` names no store this build can open

The outbox holds upstream-ready items. Each one moves through these states and ends either
delivered or dead (with a reason); skipped events are recorded beside them at intake, so every
event is accounted for:

    put ──▶ pending ──claim──▶ claimed ──ack──────▶ delivered
               ▲                  │ ├──ack(dry)───▶ dry run (not sent) ──replay_dry_runs──▶ pending
               │                  │ ├──retry(at)──▶ pending (attempts + 1, not before `at`)
               │                  │ ├──release────▶ pending (credentials paused: no attempt)
               │                  │ └──dead───────▶ dead (reason, message) ──replay──▶ pending
               └──────sweep───────┘ (lease expired: the claimer died or hung)

A pending item waiting for its retry time is made due at once by `due_now` (a pause is over).

The interface is shaped for a shared server-grade store as well as the embedded SQLite one: a
claim is a short transaction that marks rows leased (PostgreSQL: `UPDATE … WHERE id IN (SELECT …
FOR UPDATE SKIP LOCKED LIMIT n) RETURNING …`, so several processes claim disjoint rows); every
other transition names rows by id and is safe to apply twice; time comes from the store's clock.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import accumulate, compress, repeat
from operator import add
from typing import Any, Final, NamedTuple, Protocol, overload

ItemId = int

# Dead-letter reasons: a small fixed set (they label metrics); the upstream's words go in `message`.
REJECTED: Final = "rejected"  # the upstream refused the batch (400, or named in a 202's errors)
EXPIRED: Final = "expired"  # older than the upstream's data-age limit (30 days) before delivery
# Skip reason of a conversion already stored under another message id (see `dedup_key`).
DUPLICATE: Final = "duplicate"
UPSTREAM_ERRORS_KEPT: Final = 20


class StoreError(Exception):
    """Base of the store's errors (see the tree above)."""


class StoreUnavailable(StoreError):
    """The store could not complete an operation; nothing of it was committed."""


class StoreConfigError(StoreError):
    """The database URL names a store that cannot be opened."""


class OutboundItem(Protocol):
    """What the pipeline hands to the outbox (`edge.rokt.pipeline.Outbound` has this shape)."""

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
    """An event that produced nothing to send, and why (`edge.rokt.pipeline.Skipped`)."""

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

    A named tuple rather than a frozen dataclass, as `Claim`: one is built per request on the
    hot path, and a frozen dataclass sets each of its ten fields through `object.__setattr__`."""

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


class StoredArrival(NamedTuple):
    id: int
    arrival: Arrival


@dataclass(frozen=True, slots=True)
class PutResult:
    stored: int  # new outbox items
    duplicates: int  # items whose key was already stored (a replayed event), not stored again
    deduplicated: int = 0  # conversions stored before under another message id: skipped
    conversions: tuple[Conversion, ...] = ()  # of the new items, those that are conversions


class Claim(NamedTuple):
    """One leased outbox item: its id, its event's time, and its batch as JSON text, exactly as
    it was put."""

    id: ItemId
    timestamp_ms: int
    body: str


class Claims(Sequence[Claim]):
    """Items leased together, oldest first, as columns rather than an object per item.

    A claim takes a thousand items at a time, and the delivery path needs of each only its id,
    its body and, to find the ones too old to send, its time. Kept as columns, the common path
    makes no object per item: the bodies are one bytes object, UTF-8 and joined by commas (the
    inside of a JSON array), so a request's body is a slice of it between brackets, copied
    once; ids are acknowledged as runs (a `range` when consecutive); times are compared one by
    one only when the oldest is too old. A claim so crosses from the store's writer process as
    a handful of objects, not thousands. Indexing or iterating gives `Claim`s (each body
    decoded then, once)."""

    __slots__ = ("_bodies", "_offsets", "_oldest_ms", "blob", "ids", "sizes", "timestamps")

    def __init__(
        self,
        ids: Sequence[ItemId],
        blob: bytes | memoryview,
        sizes: Sequence[int],
        timestamps: Sequence[int],
        oldest_ms: int | None = None,
    ) -> None:
        self.ids = ids
        self.blob = blob  # the bodies, UTF-8, joined by commas (a slice's is a view of its claim's)
        self.sizes = sizes  # each body's length in bytes
        self.timestamps = timestamps  # each item's event time, epoch ms
        self._oldest_ms = oldest_ms
        self._bodies: list[str] | None = None
        self._offsets: list[int] | None = None

    @property
    def oldest_ms(self) -> int:
        """The oldest item's event time (epoch ms; 0 for none)."""
        if self._oldest_ms is None:
            self._oldest_ms = min(self.timestamps, default=0)
        return self._oldest_ms

    @classmethod
    def of(cls, ids: Sequence[ItemId], bodies: Sequence[str], timestamps: Sequence[int]) -> Claims:
        encoded = [body.encode("utf-8") for body in bodies]
        return cls(ids, b",".join(encoded), [len(body) for body in encoded], timestamps)

    @property
    def offsets(self) -> list[int]:
        """Where each body starts in `blob`, and where one after the last would."""
        if self._offsets is None:  # each body and its comma, summed in C
            self._offsets = list(accumulate(map(add, self.sizes, repeat(1)), initial=0))
        return self._offsets

    @property
    def bodies(self) -> list[str]:
        """Each item's batch as JSON text, exactly as it was put."""
        if self._bodies is None:
            view = memoryview(self.blob)
            self._bodies = [
                str(view[start : start + size], "utf-8")
                for start, size in zip(self.offsets, self.sizes, strict=False)
            ]
        return self._bodies

    def between(self, head: bytes, tail: bytes) -> bytes:
        """`head`, the bodies joined by commas, and `tail`, in one copy: a request's body."""
        return b"".join((head, self.blob, tail))

    def __len__(self) -> int:
        return len(self.ids)

    @overload
    def __getitem__(self, index: int) -> Claim: ...
    @overload
    def __getitem__(self, index: slice) -> Claims: ...
    def __getitem__(self, index: int | slice) -> Claim | Claims:
        if not isinstance(index, slice):
            return Claim(self.ids[index], self.timestamps[index], self.bodies[index])
        first, stop, step = index.indices(len(self.ids))
        if step != 1:
            return Claims.of(self.ids[index], self.bodies[index], self.timestamps[index])
        stop = max(stop, first)
        offsets = self.offsets
        view = memoryview(self.blob)[offsets[first] : max(offsets[stop] - 1, offsets[first])]
        return Claims(self.ids[index], view, self.sizes[index], self.timestamps[index])

    def where(self, keep: Sequence[bool]) -> Claims:
        """The claims whose flag in `keep` is true, in order."""
        return Claims.of(
            list(compress(self.ids, keep)),
            list(compress(self.bodies, keep)),
            list(compress(self.timestamps, keep)),
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]  # mutable columns: not hashable, as a list

    def __repr__(self) -> str:
        return f"Claims({list(self)!r})"

    def __getstate__(self) -> tuple[Any, ...]:  # the columns only, not what was read of them
        return (self.ids, bytes(self.blob), self.sizes, self.timestamps, self.oldest_ms)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self.__init__(*state)  # type: ignore[misc]


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
    """The latest outcomes and dry-run request bodies, newest first (`Store.recent_sync`)."""

    outcomes: list[Outcome]
    requests: list[DryRunBody]


class Store(ABC):
    """Durable storage. Async methods serve the web service and the sender; `*_sync` the CLI."""

    @abstractmethod
    async def put(self, intake: Intake) -> PutResult:
        """Store an intake in one transaction; returns once it is durable. Idempotent by key.
        The de-duplication of conversions (`OutboundItem.dedup_key`) happens in the same
        transaction, so two copies put at once cannot both be stored."""

    @abstractmethod
    def put_sync(self, intake: Intake) -> PutResult: ...

    @abstractmethod
    async def put_arrival(self, arrival: Arrival) -> None:
        """Store an intake request's arrival; returns once it is durable. Arrivals put at the
        same time share one transaction (the web service's hot path)."""

    @abstractmethod
    async def arrivals(self, limit: int) -> list[StoredArrival]:
        """The oldest `limit` arrivals not settled yet, in the order they came."""

    @abstractmethod
    async def settle(self, ids: Sequence[int], intake: Intake) -> PutResult:
        """Store what processing the arrivals `ids` produced and forget them, in one
        transaction: a crash before it leaves the arrivals to be processed again."""

    @abstractmethod
    async def claim(self, limit: int, lease_seconds: float) -> Claims:
        """Lease up to `limit` pending items that are due, oldest first."""

    @abstractmethod
    async def ack(self, ids: Sequence[ItemId], *, dry_run: bool = False) -> None:
        """Mark items delivered (or delivered in a dry run: recorded, never sent)."""

    @abstractmethod
    async def retry(self, ids: Sequence[ItemId], at: float, error: str) -> None:
        """Return claimed items to the queue, due at `at`, counting a failed attempt."""

    @abstractmethod
    async def release(self, ids: Sequence[ItemId]) -> None:
        """Return claimed items to the queue as they were (no attempt counted)."""

    @abstractmethod
    async def due_now(self) -> int:
        """Make every pending item due now, whatever retry time it waits for (delivery resumed
        after a pause: what waited goes at once); how many were waiting."""

    @abstractmethod
    async def dead(self, letters: Sequence[DeadLetter]) -> None: ...

    @abstractmethod
    async def sweep(self) -> int:
        """Return items whose lease expired to the queue; how many."""

    @abstractmethod
    async def replay(self, since: float | None = None) -> int:
        """Dead letters (dead-lettered at or after `since`, if given) back to the queue."""

    @abstractmethod
    def replay_sync(self, since: float | None = None) -> int: ...

    @abstractmethod
    async def replay_dry_runs(self, since: float | None = None) -> int:
        """Items delivered in a dry run (recorded, never sent; stored at or after `since`, if
        given) back to the queue, to be sent for real; how many. Those that have grown older
        than the upstream's data-age limit meanwhile are dead-lettered as expired by the
        sender, as any item that waited too long (the limit is the upstream's, not the
        store's). An item recorded before dry runs kept their bodies stays as it is."""

    @abstractmethod
    def replay_dry_runs_sync(self, since: float | None = None) -> int: ...

    @abstractmethod
    async def prune(self, before: float) -> int:
        """Forget delivered items (dry runs too, with their bodies) and skipped records older
        than `before`; how many."""

    @abstractmethod
    async def record_dry_run(self, path: str, body: str, keep: int) -> None:
        """Keep a request body that a dry run would have sent (the last `keep` of them)."""

    @abstractmethod
    async def dry_run_bodies(self, limit: int) -> list[DryRunBody]:
        """The newest kept dry-run bodies, newest first."""

    @abstractmethod
    async def record_upstream_error(self, status: int | None, message: str) -> None: ...

    @abstractmethod
    async def set_paused(self, paused: Paused | None) -> None: ...

    @abstractmethod
    async def stats(self) -> Stats: ...

    @abstractmethod
    def stats_sync(self) -> Stats: ...

    @abstractmethod
    def recent_sync(self, limit: int) -> Recent:
        """The latest `limit` outcomes (items stored and events skipped), with the body of each
        item the store still keeps (waiting, dead, dry run; a delivered item's is deleted), and
        the latest `limit` request bodies a dry run recorded; each newest first."""

    @abstractmethod
    async def identities(self, keys: Sequence[str], since: float) -> dict[str, Identity]:
        """The record of each of `keys` seen (or its click first seen) at or after `since`;
        the others are left out. One call for many keys (a processing slice's)."""

    async def identity(self, keys: Sequence[str], since: float) -> Identity | None:
        """The visitor known by any of `keys`, seen (or its click first seen) at or after
        `since`, its records merged; its click whatever its age."""
        return merged(list((await self.identities(keys, since)).values()))

    @abstractmethod
    async def prune_identities(self, before: float) -> int:
        """Forget visitors not seen, and clicks not seen, since `before`; how many."""

    @abstractmethod
    async def secret(self, name: str) -> str:
        """A random secret generated on first use and kept (e.g. the cookie signing key)."""

    @abstractmethod
    async def check_writable(self) -> None:
        """Make a small durable write; raises StoreUnavailable when the store cannot write."""

    @abstractmethod
    def close(self) -> None:
        """Finish what was submitted, then release the database."""
