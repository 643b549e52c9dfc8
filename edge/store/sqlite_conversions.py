"""The SQLite store's conversion counts: how many conversions each source put in the outbox, and
how many of them carried a click id and an email, by minute.

`rokt-edge status` and `/metrics` read the last hour and day from here: the share of
conversions sent with their click id is the figure a merchant judges attribution by. Counted in
the transaction that stores the conversions, so a replayed or duplicate event is not counted
twice, and kept in the store, so the figures survive a restart and every process sees the same.
Like `sqlite_schema`, these functions run inside the writer's transaction and never commit.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Sequence
from typing import Final

from edge.store.values import Conversion, ConversionShare

BUCKET_SECONDS: Final = 60
WINDOWS: Final = (("1h", 3600.0), ("24h", 86400.0))

TABLE: Final = """
CREATE TABLE IF NOT EXISTS conversion_counts (
    bucket INTEGER NOT NULL,           -- epoch seconds at the start of the minute
    source TEXT NOT NULL,              -- beacon, api, analytics.js, import
    click_id INTEGER NOT NULL,         -- 1: sent with a click id
    email INTEGER NOT NULL,            -- 1: sent with an email (raw or hashed)
    count INTEGER NOT NULL,
    PRIMARY KEY (bucket, source, click_id, email)
);
"""


def tally(
    connection: sqlite3.Connection,
    conversions: Sequence[Conversion],
    new_keys: set[str],
    now: float,
) -> tuple[Conversion, ...]:
    """Count the conversions among the items just stored (`new_keys`); the ones counted."""
    counted = tuple(each for each in conversions if each.key in new_keys)
    groups = Counter((each.source, each.click_id, each.email) for each in counted)
    bucket = int(now // BUCKET_SECONDS * BUCKET_SECONDS)
    connection.executemany(
        "INSERT INTO conversion_counts (bucket, source, click_id, email, count)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (bucket, source, click_id, email)"
        " DO UPDATE SET count = count + excluded.count",
        [(bucket, source, click, email, n) for (source, click, email), n in groups.items()],
    )
    return counted


def shares(connection: sqlite3.Connection, now: float) -> list[ConversionShare]:
    """Per source, over the last hour and the last day."""
    found = []
    for window, seconds in WINDOWS:
        rows = connection.execute(
            "SELECT source, sum(count), sum(count * click_id), sum(count * email)"
            " FROM conversion_counts WHERE bucket > ? GROUP BY source ORDER BY source",
            (now - seconds,),
        ).fetchall()
        found += [ConversionShare(row[0], window, row[1], row[2], row[3]) for row in rows]
    return found


def prune(connection: sqlite3.Connection, before: float) -> int:
    return connection.execute("DELETE FROM conversion_counts WHERE bucket < ?", (before,)).rowcount
