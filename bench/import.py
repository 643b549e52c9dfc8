"""Rows per second of `rokt-edge import`: a generated CSV export of orders, mapped, stitched
(half the customers have a browser identity on record), de-duplicated and durably stored in a
fresh SQLite outbox (WAL, synchronous=FULL), as the command does it; then the same file again
(everything already in the outbox).

    python bench/import.py [--rows N]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge.imports.mapfile import parse_map
from edge.imports.rows import read_rows
from edge.imports.runner import Importer, Report
from edge.pipeline.pipeline import Pipeline
from edge.settings import Settings
from edge.store.sqlite import SQLiteStore
from edge.store.values import IdentityUpdate, Intake

MAP = {
    "user_identities": {"email": "email", "customerid": "customer_id"},
    "event": {"timestamp_unixtime_ms": "ordered_at", "source_message_id": "order_id"},
    "custom_attributes": {
        "conversiontype": {"value": "purchase"},
        "confirmationref": "order_id",
        "amount": "total",
        "currency": "currency",
    },
    "user_attributes": {"firstname": "first_name", "city": "city"},
}


def export(path: Path, rows: int) -> None:
    now_ms = int(time.time() * 1000)
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["order_id", "email", "customer_id", "ordered_at", "total", "currency",
                         "first_name", "city"])  # fmt: skip
        for n in range(rows):
            writer.writerow([f"o-{n}", f"buyer{n}@example.com", f"c-{n}", now_ms - n, f"{n}.99",
                             "USD", "Jane", "Sydney"])  # fmt: skip


async def run(path: Path, store: SQLiteStore) -> tuple[Report, float]:
    import_map = parse_map(MAP, "bench")
    pipeline = Pipeline(Settings(), [import_map.mapping])
    importer = Importer(import_map, pipeline, store, now=time.time())
    started = time.perf_counter()
    with path.open("rb") as file:
        report = await importer.run(read_rows(file, path, columns=import_map.columns))
    return report, time.perf_counter() - started


def main(rows: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "orders.csv"
        export(path, rows)
        store = SQLiteStore(Path(directory) / "edge.db")
        known = [IdentityUpdate((f"u:c-{n}",), f"R-{n}", time.time(), "198.51.100.7", "UA")
                 for n in range(0, rows, 2)]  # fmt: skip
        store.put_sync(Intake(identities=known))
        first, first_seconds = asyncio.run(run(path, store))
        again, again_seconds = asyncio.run(run(path, store))
        store.close()
    print(f"import: {rows:,} CSV rows, SQLite synchronous=FULL, chunks of 500 rows")
    print(f"first run:  {rows / first_seconds:>9,.0f} rows/s  ({first.queued:,} queued)")
    print(f"same again: {rows / again_seconds:>9,.0f} rows/s  ({again.queued:,} queued, "
          f"{again.already:,} already in the outbox)")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=50_000)
    main(parser.parse_args().rows)
