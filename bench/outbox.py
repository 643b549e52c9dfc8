"""Durable puts per second from 64 concurrent producers: group commit beside one transaction per
put, measured in the same run on the same kind of file (WAL, synchronous=FULL).

Each put is one intake of one conversion (what one beacon request stores), and returns only
after its transaction is on disk.

    python bench/outbox.py [--puts N] [--producers P]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from delivery import conversions

from edge.pipeline.pipeline import Outbound
from edge.store.sqlite import SQLiteStore
from edge.store.values import Intake


async def puts_per_second(
    path: Path, items: list[Outbound], producers: int, group_commit: bool
) -> tuple[float, int]:
    store = SQLiteStore(path, group_commit=group_commit)
    queue = iter(items)
    before = store.transactions

    async def producer() -> None:
        for item in queue:
            await store.put(Intake(outbound=[item]))

    started = time.perf_counter()
    await asyncio.gather(*(producer() for _ in range(producers)))
    elapsed = time.perf_counter() - started
    transactions = store.transactions - before
    store.close()
    return len(items) / elapsed, transactions


async def main(count: int, producers: int) -> None:
    items = conversions(count)
    with tempfile.TemporaryDirectory() as directory:
        grouped, grouped_tx = await puts_per_second(
            Path(directory) / "grouped.db", items, producers, group_commit=True
        )
        single, single_tx = await puts_per_second(
            Path(directory) / "single.db", items, producers, group_commit=False
        )
    print(f"puts: {count:,} from {producers} concurrent producers, synchronous=FULL")
    print(f"group commit:             {grouped:>9,.0f} puts/s  ({grouped_tx:,} transactions)")
    print(f"one transaction per put:  {single:>9,.0f} puts/s  ({single_tx:,} transactions)")
    print(f"ratio: {grouped / single:.1f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--puts", type=int, default=20_000)
    parser.add_argument("--producers", type=int, default=64)
    args = parser.parse_args()
    asyncio.run(main(args.puts, args.producers))
