"""The outbox: upstream-ready items, from intake to delivered or dead.

Each item moves through these states and ends either delivered or dead (with a reason); skipped
events are recorded beside them at intake, so every event is accounted for:

    put ──▶ pending ──claim──▶ claimed ──ack──────▶ delivered
               ▲                  │ ├──ack(dry)───▶ dry run (not sent) ──replay_dry_runs──▶ pending
               │                  │ ├──retry(at)──▶ pending (attempts + 1, not before `at`)
               │                  │ ├──release────▶ pending (credentials paused: no attempt)
               │                  │ └──dead───────▶ dead (reason, message) ──replay──▶ pending
               └──────sweep───────┘ (lease expired: the claimer died or hung)

A pending item waiting for its retry time is made due at once by `due_now` (a pause is over).

Shaped for a shared server-grade store as well as the embedded SQLite one: a claim is a short
transaction that marks rows leased (PostgreSQL: `UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP
LOCKED LIMIT n) RETURNING …`, so several processes claim disjoint rows); every other transition
names rows by id and is safe to apply twice; time comes from the store's clock. A claim comes
back as `Claims`, columns rather than an object per item.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from itertools import accumulate, compress, repeat
from operator import add
from typing import Any, NamedTuple, overload

from edge.store.values import DeadLetter, DryRunBody, Intake, ItemId, PutResult


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


class Outbox(ABC):
    """The outbox role of a store (see the states above)."""

    @abstractmethod
    async def put(self, intake: Intake) -> PutResult:
        """Store an intake in one transaction; returns once it is durable. Idempotent by key.
        The de-duplication of conversions (`OutboundItem.dedup_key`) happens in the same
        transaction, so two copies put at once cannot both be stored. Puts made at the same
        time share transactions (group commit)."""

    @abstractmethod
    def put_sync(self, intake: Intake) -> PutResult: ...

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
