"""Crash test: a delivery process killed (SIGKILL) mid-request loses nothing acknowledged."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from edge.store.sqlite import SQLiteStore
from edge.store.values import Intake
from tests.conftest import ROOT
from tests.fake_capi import API_KEY, API_SECRET, FakeCapi, Reply
from tests.outbound import conversions


def wait_for(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


@contextmanager
def delivery_process(
    fake: FakeCapi, database: Path, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """`rokt-edge deliver` against the fake: short leases, one request at a time."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("ROKT_EDGE_")}
    env.update(
        PYTHONPATH=str(ROOT),
        ROKT_EDGE_DATABASE_URL=f"sqlite:///{database}",  # absolute: sqlite:////tmp/…
        ROKT_EDGE_API_KEY=API_KEY,
        ROKT_EDGE_API_SECRET=API_SECRET,
        ROKT_EDGE_ROKT_URL=fake.url,
        ROKT_EDGE_MAX_IN_FLIGHT="1",
        ROKT_EDGE_REQUEST_TIMEOUT="2",
        ROKT_EDGE_LEASE_SECONDS="3",
        ROKT_EDGE_POLL_INTERVAL="0.05",
        ROKT_EDGE_RATE_LIMIT="0",
    )
    with log.open("ab") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "edge", "deliver"], env=env, stderr=stderr, cwd=database.parent
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=10)


def test_a_sender_killed_mid_request_loses_nothing_after_a_restart(tmp_path: Path) -> None:
    database = tmp_path / "edge.db"
    log = tmp_path / "deliver.log"
    store = SQLiteStore(database)
    items = conversions(300)
    store.put_sync(Intake(outbound=items))  # what intake acknowledged
    wanted = {item.message_id for item in items}

    with FakeCapi() as fake:
        fake.reply(Reply(202, delay=3600))  # the first request hangs: the upstream holds it open

        with delivery_process(fake, database, log) as first:
            wait_for(lambda: len(fake.requests()) == 1)
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)

        stats = store.stats_sync()
        assert stats.in_flight == 300  # all claimed, none acknowledged by the upstream
        assert stats.delivered == 0

        with delivery_process(fake, database, log):
            wait_for(lambda: wanted <= set(fake.accepted_message_ids()))
            wait_for(lambda: store.stats_sync().delivered == 300)

    stats = store.stats_sync()
    assert (stats.pending, stats.in_flight, stats.dead) == (0, 0, {})
    # (the killed process's claims were taken back by its successor at once, not after their
    # lease: edge.store.owners)
    assert "of a process that died are taken again at once" in log.read_text()
    store.close()
