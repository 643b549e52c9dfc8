"""The store's writer process: it survives being killed, ends with its parent, and serves every
caller, whichever event loop or thread it calls from."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from edge.store.errors import StoreUnavailable
from edge.store.sqlite import SQLiteStore
from edge.store.values import Intake
from tests.outbound import conversion, conversions
from tests.store.contract.backends import gone

pytestmark = pytest.mark.anyio


def writer_pid(store: SQLiteStore) -> int:
    assert store.writer_pid is not None
    return store.writer_pid


async def test_a_killed_writer_is_replaced_and_nothing_acknowledged_is_lost(
    store: SQLiteStore,
) -> None:
    # Given items acknowledged by the store
    await store.put(Intake(outbound=conversions(3)))
    first = writer_pid(store)

    # When its writer process is killed
    os.kill(first, signal.SIGKILL)
    assert gone(first)
    # Then a call may fail while the loss is noticed, but a new writer takes over at once
    results, failures = [], []
    for n in range(3, 6):
        try:
            results.append(await store.put(Intake(outbound=[conversion(n)])))
        except StoreUnavailable as error:
            failures.append(str(error))
    assert results
    assert all("writer process failed" in failure for failure in failures)
    assert writer_pid(store) != first
    # and everything acknowledged is there: the three from before and each put that answered
    stats = await store.stats()
    assert stats.pending == 3 + sum(result.stored for result in results)


async def kill_writer(store: SQLiteStore) -> int:
    """Put an item, then kill the store's writer process; its pid."""
    await store.put(Intake(outbound=[conversion(1)]))
    first = writer_pid(store)
    os.kill(first, signal.SIGKILL)
    assert gone(first)
    return first


async def replaced(store: SQLiteStore, first: int, n: int) -> None:
    """Put until a put answers: the first may fail while the killed writer's loss is noticed."""
    failures = []
    for attempt in range(n, n + 3):
        try:
            await store.put(Intake(outbound=[conversion(attempt)]))
            break
        except StoreUnavailable as error:
            failures.append(str(error))
    else:
        pytest.fail(f"no writer replaced {first}: {failures}")
    assert all("writer process failed" in failure for failure in failures)


async def test_a_replacement_writer_opens_the_database_while_the_event_loop_goes_on(
    store: SQLiteStore,
) -> None:
    # Given a store whose writer was killed
    first = await kill_writer(store)

    # When the next puts start a new writer, while another task takes turns of the loop
    turns_while_opening = 0
    finished = False

    async def other_work() -> None:
        nonlocal turns_while_opening
        while not finished:
            # (whether the store's writer has said the database is open)
            writer = store._writer
            turns_while_opening += writer is not None and not writer.ready
            await asyncio.sleep(0)

    other = asyncio.create_task(other_work())
    await replaced(store, first, 2)
    finished = True
    await other

    # Then the loop was not held while the new process started and opened the file (a tenth
    # of a second), and the put that waited for it was written
    assert turns_while_opening > 0
    assert writer_pid(store) != first
    assert (await store.stats()).pending >= 2


async def test_a_replacement_writer_that_cannot_open_the_database_fails_the_waiting_jobs_saying_why(
    store: SQLiteStore,
) -> None:
    # Given a store whose writer was killed, and whose file can no longer be opened
    await kill_writer(store)
    store.path.rename(store.path.with_name("moved.db"))
    store.path.mkdir()  # a directory where the database was

    # When puts come: the first may fail as the loss is noticed, the next starts a new writer
    failures = []
    for n in range(2, 4):
        with pytest.raises(StoreUnavailable) as failure:
            await store.put(Intake(outbound=[conversion(n)]))
        failures.append(str(failure.value))

    # Then the put that waited for the new writer fails with its reason, not a hang or a 500
    assert any(f"cannot open {store.path}" in failure for failure in failures), failures


async def test_the_writer_ends_with_its_parent(tmp_path: Path) -> None:
    # Given a process that opened a store (and so started a writer), killed without warning
    script = (
        "import sys, time\n"
        "from edge.store.sqlite import SQLiteStore\n"
        "store = SQLiteStore(sys.argv[1])\n"
        "print(store.writer_pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path / "edge.db")], stdout=subprocess.PIPE
    )
    assert parent.stdout is not None
    with parent.stdout:
        writer = int(parent.stdout.readline())
    parent.kill()
    parent.wait()
    # Then its writer sees the end of its socket and exits: no orphan holds the database
    assert gone(writer)


async def test_callers_on_another_event_loop_are_served_too(store: SQLiteStore) -> None:
    # Given a store whose writer this test's event loop drives
    await store.put(Intake(outbound=[conversion(1)]))
    results: list[int] = []

    # When another thread with its own event loop (a server run in a thread) writes and reads
    def elsewhere() -> None:
        async def work() -> None:
            put = await store.put(Intake(outbound=[conversion(2)]))
            results.append(put.stored)
            results.append(len(await store.claim(10, 60)))

        asyncio.run(work())

    thread = threading.Thread(target=elsewhere)
    thread.start()
    await asyncio.to_thread(thread.join)

    # Then it is served (on a connection of the store's own), and the writer sees its work
    assert results == [1, 2]
    assert (await store.stats()).in_flight == 2


async def test_synchronous_callers_work_beside_the_event_loop(store: SQLiteStore) -> None:
    await store.put(Intake(outbound=[conversion(1)]))

    store.put_sync(Intake(outbound=[conversion(2)]))  # the CLI's import, say

    assert store.stats_sync().pending == 2
    assert len(await store.claim(10, 60)) == 2


async def test_closing_ends_the_writer(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "edge.db")
    await store.put(Intake(outbound=[conversion(1)]))
    pid = writer_pid(store)

    store.close()

    assert gone(pid, within=1.0)
    with pytest.raises(StoreUnavailable, match="closed"):
        await store.put(Intake(outbound=[conversion(2)]))
    reopened = SQLiteStore(tmp_path / "edge.db")
    try:
        assert reopened.stats_sync().pending == 1
    finally:
        reopened.close()


async def test_jobs_and_answers_larger_than_the_socket_buffer_cross_whole(
    store: SQLiteStore,
) -> None:
    # Given a put of 12 MB, more than the socket between the store and its writer holds
    pad = "x" * 1_000_000
    items = [replace(item, body={**item.body, "pad": pad}) for item in conversions(12)]

    result = await store.put(Intake(outbound=items))

    # Then it is written whole, and a claim of all of it comes back whole
    assert result.stored == 12
    claims = await store.claim(100, 60)
    assert [json.loads(body)["pad"] == pad for body in claims.bodies] == [True] * 12


def test_a_file_that_cannot_be_opened_is_refused_at_once_saying_why(tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")
    with pytest.raises(StoreUnavailable, match=r"cannot open .*not-a-directory"):
        SQLiteStore(blocked / "edge.db")
