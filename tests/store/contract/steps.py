"""Steps several store tests take, through the store's interface only (so on every backend)."""

from __future__ import annotations

from dataclasses import replace

from edge.pipeline.pipeline import Outbound
from edge.store import Store
from edge.store.values import Arrival
from tests.outbound import conversion
from tests.store.contract.backends import Backend


async def record_in_a_dry_run(store: Store, count: int) -> None:
    """What the sender does without credentials: claim, then acknowledge as a dry run."""
    claims = await store.claim(count, lease_seconds=60)
    assert len(claims) == count
    await store.ack(claims.ids, dry_run=True)


def rows_on_disk(backend: Backend) -> int:
    """The outbox items another process sees committed, whatever their state."""
    stats = backend.open().stats_sync()
    return stats.pending + stats.in_flight + stats.delivered + sum(stats.dead.values())


def copy(n: int, ref: str = "order-1", *, shift_ms: int = 0) -> Outbound:
    """Copy n of a conversion with confirmation ref `ref`: its own message id, `shift_ms` later."""
    item = conversion(n)
    return replace(
        item,
        timestamp_ms=item.timestamp_ms + shift_ms,
        dedup_key=f"Send\nOrder Completed\n{ref}",
    )


def arrival(n: int, **fields: object) -> Arrival:
    """Arrival n: a beacon's order, received n seconds after 1_700_000_000."""
    body = f'{{"type":"track","event":"Order Completed","messageId":"m-{n}"}}'.encode()
    return Arrival("beacon", 1_700_000_000.0 + n, body, **fields)  # type: ignore[arg-type]
