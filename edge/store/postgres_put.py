"""Putting an intake in the PostgreSQL store: its outbox items, skip records, identity updates and
conversion counts in one transaction, with the de-duplication of conversions; a plan
(`edge.store.postgres_plan`) of one round trip, two when the intake carries dedup keys.

De-duplication is safe across edges: each conversion's dedup row is inserted first (`ON
CONFLICT DO NOTHING`, which waits for another transaction inserting the same key), then the rows
of the intake's keys are read locked (`FOR UPDATE`), so two copies put at once by two edges are
judged one after the other, the second seeing the first. The rule itself is SQLite's
(`edge.store.sqlite_dedup`): a copy under another message id within the window of the first is
a duplicate, unless the first was dead-lettered; outside it, it replaces the entry.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any, Final

from edge.store.postgres_plan import Plan, Query, Result
from edge.store.put_rows import PutArgs
from edge.store.values import DUPLICATE, Conversion, IdentityUpdate, PutResult

BUCKET_SECONDS: Final = 60  # conversion counts, by minute (as `edge.store.sqlite_conversions`)


def put(args: PutArgs, also: Sequence[Query] = ()) -> Plan[PutResult]:
    """The intake stored; `also`: statements sent with the last round trip (a settle's)."""
    rows, skipped = args.rows, args.skipped
    updates: list[tuple[str, str, int]] = []
    if any(check[1] is not None for check in args.checks):
        verdicts, updates = yield from admit(args.checks, args.window_ms)
        kept = [row for row, new in zip(rows, verdicts, strict=True) if new]
        skipped = skipped + [
            (row[0], row[2], row[1], DUPLICATE)
            for row, new in zip(rows, verdicts, strict=True)
            if not new
        ]
        rows = kept
    queries = [_store(rows, skipped, args.conversions, args.now)]
    queries += _identities(args.identities, args.now)
    if updates:
        queries.append(_replace(updates))
    results: list[Result] = yield [*queries, *also]
    new = {row[0] for row in results[0].rows}
    counted = tuple(each for each in args.conversions if each.key in new)
    return PutResult(len(new), len(rows) - len(new), len(args.rows) - len(rows), counted)


# Outbox rows numbered in the order given (the first of each key), their queue rows and bodies,
# the skip records, and the conversions among the new items counted: one statement.
STORE: Final = """
WITH given AS (
    SELECT * FROM unnest(%(keys)b::text[], %(mappings)b::text[], %(message_ids)b::text[],
        %(times)b::bigint[], %(bodies)b::text[])
        WITH ORDINALITY AS given (key, mapping, message_id, timestamp_ms, body, n)
), first AS (
    SELECT DISTINCT ON (key) * FROM given ORDER BY key, n
), stored AS (
    INSERT INTO outbox (key, mapping, message_id, timestamp_ms, created_at)
    SELECT key, mapping, message_id, timestamp_ms, %(now)b FROM first ORDER BY n
    ON CONFLICT (key) DO NOTHING
    RETURNING id, key, timestamp_ms
), queued AS (
    INSERT INTO queue (id, available_at, timestamp_ms)
    SELECT id, %(now)b, timestamp_ms FROM stored
), kept AS (
    INSERT INTO bodies (id, body) SELECT stored.id, first.body FROM stored JOIN first USING (key)
), skips AS (
    INSERT INTO skipped (key, message_id, mapping, reason, created_at)
    SELECT key, message_id, mapping, reason, %(now)b
    FROM unnest(%(skip_keys)b::text[], %(skip_ids)b::text[], %(skip_mappings)b::text[],
        %(skip_reasons)b::text[]) AS skip (key, message_id, mapping, reason)
    ON CONFLICT (key) DO NOTHING
), counted AS (
    INSERT INTO conversion_counts (bucket, source, click_id, email, count)
    SELECT %(bucket)b, c.source, c.click_id, c.email, count(*)
    FROM unnest(%(conversion_keys)b::text[], %(sources)b::text[], %(clicks)b::boolean[],
        %(emails)b::boolean[]) AS c (key, source, click_id, email)
    JOIN stored USING (key)
    GROUP BY c.source, c.click_id, c.email ORDER BY c.source, c.click_id, c.email
    ON CONFLICT (bucket, source, click_id, email)
    DO UPDATE SET count = conversion_counts.count + excluded.count
)
SELECT key FROM stored
"""


def _store(
    rows: list[tuple[str, str, str, int, str]],
    skipped: list[tuple[str, str, str | None, str]],
    conversions: list[Conversion],
    now: float,
) -> Query:
    keys, mappings, message_ids, times, bodies = _columns(rows, 5)
    skip_keys, skip_ids, skip_mappings, skip_reasons = _columns(skipped, 4)
    conversion_keys, sources, clicks, emails = _columns(conversions, 4)
    bucket = int(now // BUCKET_SECONDS * BUCKET_SECONDS)
    return Query(STORE, {
        "keys": keys, "mappings": mappings, "message_ids": message_ids, "times": times,
        "bodies": bodies, "now": now, "skip_keys": skip_keys, "skip_ids": skip_ids,
        "skip_mappings": skip_mappings, "skip_reasons": skip_reasons, "bucket": bucket,
        "conversion_keys": conversion_keys, "sources": sources, "clicks": clicks,
        "emails": emails,
    })  # fmt: skip


def _columns(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    return [list(column) for column in zip(*rows, strict=True)] if rows else [[]] * width


# -- de-duplication --------------------------------------------------------------------------

CLAIM_KEYS: Final = """
INSERT INTO dedup (key, outbox_key, timestamp_ms)
SELECT * FROM unnest(%b::text[], %b::text[], %b::bigint[]) ORDER BY 1
ON CONFLICT (key) DO NOTHING
"""
FIRST_COPIES: Final = """
SELECT d.key, d.outbox_key, d.timestamp_ms, dead.id IS NOT NULL FROM dedup d
LEFT JOIN outbox o ON o.key = d.outbox_key LEFT JOIN dead ON dead.id = o.id
WHERE d.key = ANY(%b::text[]) ORDER BY d.key FOR UPDATE OF d
"""
REPLACE: Final = """
UPDATE dedup SET outbox_key = given.outbox_key, timestamp_ms = given.timestamp_ms
FROM unnest(%b::text[], %b::text[], %b::bigint[]) AS given (key, outbox_key, timestamp_ms)
WHERE dedup.key = given.key
"""


def admit(
    checks: Sequence[tuple[str, str | None, int]], window_ms: int
) -> Plan[tuple[list[bool], list[tuple[str, str, int]]]]:
    """For each item, whether to store it; and the dedup entries to replace (key, outbox key,
    time), for `_replace` in the write that follows."""
    first: dict[str, tuple[str, int]] = {}
    for outbox_key, dedup_key, timestamp_ms in checks:
        if dedup_key is not None:
            first.setdefault(dedup_key, (outbox_key, timestamp_ms))
    keys = sorted(first)
    _, found = yield [
        Query(CLAIM_KEYS, (keys, [first[k][0] for k in keys], [first[k][1] for k in keys])),
        Query(FIRST_COPIES, (keys,)),
    ]
    entries = {key: (outbox_key, ms, dead) for key, outbox_key, ms, dead in found.rows}
    verdicts: list[bool] = []
    replaced: dict[str, tuple[str, int]] = {}
    for outbox_key, dedup_key, timestamp_ms in checks:
        if dedup_key is None:
            verdicts.append(True)
            continue
        first_key, first_ms, dead = entries[dedup_key]
        if first_key == outbox_key:  # the same event again: the outbox key settles it
            verdicts.append(True)
        elif abs(first_ms - timestamp_ms) <= window_ms and not dead:
            verdicts.append(False)
        else:  # a new conversion under a reused number, or the first never arrived
            entries[dedup_key] = (outbox_key, timestamp_ms, False)
            replaced[dedup_key] = (outbox_key, timestamp_ms)
            verdicts.append(True)
    return verdicts, [(key, *replaced[key]) for key in sorted(replaced)]


def _replace(updates: list[tuple[str, str, int]]) -> Query:
    keys, outbox_keys, times = _columns(updates, 3)
    return Query(REPLACE, (keys, outbox_keys, times))


# -- identities --------------------------------------------------------------------------------

# The same click again keeps its first sighting; a different click replaces the stored one when
# it was first seen at the same time or later, never when it is older (`sqlite_identity`).
_REPLACES: Final = """
    excluded.click_id IS NOT NULL AND excluded.click_id IS DISTINCT FROM identities.click_id
    AND (identities.click_seen_at IS NULL OR excluded.click_seen_at >= identities.click_seen_at)"""
UPSERT: Final = f"""
INSERT INTO identities AS identities (key, click_id, click_seen_at, ip, user_agent, seen_at,
    email_sha256, mobile_sha256)
SELECT * FROM unnest(%b::text[], %b::text[], %b::float8[], %b::text[], %b::text[], %b::float8[],
    %b::text[], %b::text[]) ORDER BY 1
ON CONFLICT (key) DO UPDATE SET
    click_id = CASE WHEN {_REPLACES} THEN excluded.click_id ELSE identities.click_id END,
    click_seen_at = CASE WHEN {_REPLACES} THEN excluded.click_seen_at
        WHEN excluded.click_id IS NOT DISTINCT FROM identities.click_id
        THEN LEAST(excluded.click_seen_at, identities.click_seen_at)
        ELSE identities.click_seen_at END,
    ip = COALESCE(excluded.ip, identities.ip),
    user_agent = COALESCE(excluded.user_agent, identities.user_agent),
    seen_at = GREATEST(excluded.seen_at, identities.seen_at),
    email_sha256 = COALESCE(excluded.email_sha256, identities.email_sha256),
    mobile_sha256 = COALESCE(excluded.mobile_sha256, identities.mobile_sha256)
"""


def _identities(updates: Sequence[IdentityUpdate], now: float) -> list[Query]:
    """One statement a round: the first update of each key, then the second of each key that
    has one, and so on; no statement updates a row twice (PostgreSQL refuses it), and each key's
    updates keep their order. Rows go in key order, so edges lock the rows they share in order."""
    rounds: list[list[tuple[Any, ...]]] = []
    made: Counter[str] = Counter()
    for item in updates:
        click_seen_at = item.click_seen_at if item.click_id else None
        for key in item.keys:
            row = (key, item.click_id, click_seen_at, item.ip, item.user_agent, now,
                   item.email_sha256, item.mobile_sha256)  # fmt: skip
            if made[key] == len(rounds):
                rounds.append([])
            rounds[made[key]].append(row)
            made[key] += 1
    return [Query(UPSERT, _columns(sorted(rows, key=lambda row: row[0]), 8)) for rows in rounds]
