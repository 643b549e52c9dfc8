"""A store on a small volume that fills up, run inside a mount namespace of its own (see
test_sqlite_small_disk.py), where MOUNT is a fresh tmpfs of a few MiB:

    python -m tests.store.small_disk MOUNT

Prints what it saw as one JSON object (the test asserts on it); every step reads as the story
of an operator's small volume.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from edge.store.errors import StoreUnavailable
from edge.store.sqlite import SQLiteStore
from edge.store.values import Intake
from tests.outbound import conversions

BALLAST_BYTES = 2 << 20  # other files on the volume, which the operator deletes
PUT = 50  # items a put


def size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def fill_to_the_brim(path: Path) -> None:
    """Take whatever bytes the volume has left, so that not even a page can be written."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(descriptor, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(descriptor)


async def story(volume: Path) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    path = volume / "edge.db"
    old_logs = volume / "old-logs"  # other files on the volume, which the operator deletes
    old_logs.write_bytes(b"\0" * BALLAST_BYTES)
    store = SQLiteStore(path)
    await store.put(Intake(outbound=conversions(PUT)))
    stored = PUT

    # Something else fills the volume to the last byte; `rokt-edge status` opens the store
    fill_to_the_brim(volume / "filler")
    try:
        other = SQLiteStore(path)
        try:
            seen["status_pending"] = other.stats_sync().pending
        finally:
            other.close()
    except StoreUnavailable as error:
        seen["status_error"] = str(error)
    (volume / "filler").unlink()

    # The edge stores events until the volume is full: the store refuses (intake answers 503)
    while True:
        try:
            await store.put(Intake(outbound=conversions(PUT, start=stored)))
        except StoreUnavailable as error:
            seen["refused"] = str(error)
            break
        stored += PUT
    seen["stored"] = stored
    seen["wal_when_full"] = size(volume / "edge.db-wal")

    # The operator frees space; the same store (no restart) writes again
    old_logs.unlink()
    tries = 0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        tries += 1
        try:
            await store.put(Intake(outbound=conversions(PUT, start=stored)))
        except StoreUnavailable:
            await asyncio.sleep(0.1)
            continue
        seen["written_again_after_tries"] = tries
        break

    # Idle, the log gives its space back
    deadline = time.monotonic() + 10
    while size(volume / "edge.db-wal") and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    seen["wal_when_idle"] = size(volume / "edge.db-wal")
    seen["pending"] = (await store.stats()).pending
    store.close()
    return seen


def main() -> None:
    print(json.dumps(asyncio.run(story(Path(sys.argv[1])))))


if __name__ == "__main__":
    main()
