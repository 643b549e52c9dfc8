"""An intake as the rows a store writes: outbox items with their bodies encoded, skip records,
identity updates, de-duplication checks and conversions. Made in the caller's thread, so that the
writer (SQLite's process, a PostgreSQL transaction) only writes; the same for every backend.
"""

from __future__ import annotations

from typing import NamedTuple

from edge.jsontext import encode
from edge.store.values import Conversion, IdentityUpdate, Intake


class PutArgs(NamedTuple):
    rows: list[tuple[str, str, str, int, str]]  # key, mapping, message id, time (ms), body
    skipped: list[tuple[str, str, str | None, str]]  # key, message id, mapping, reason
    identities: list[IdentityUpdate]
    checks: list[tuple[str, str | None, int]]  # key, dedup key, time (ms)
    window_ms: int  # the de-duplication window
    now: float
    conversions: list[Conversion]


def put_args(intake: Intake, now: float, window_seconds: float) -> PutArgs:
    rows = [
        (item.key, item.mapping, item.message_id, item.timestamp_ms, encode(item.body).decode())
        for item in intake.outbound
    ]
    skipped = [
        (f"{item.mapping or ''}\n{item.message_id}", item.message_id, item.mapping, item.reason)
        for item in intake.skipped
    ]
    checks = [(item.key, item.dedup_key, item.timestamp_ms) for item in intake.outbound]
    return PutArgs(
        rows, skipped, list(intake.identities), checks, round(window_seconds * 1000), now,
        list(intake.conversions),
    )  # fmt: skip
