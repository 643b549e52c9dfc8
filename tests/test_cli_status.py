"""`rokt-edge status` and `rokt-edge replay`, run as a merchant's engineer would run them."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge.status import parse_since
from edge.store.sqlite import SQLiteStore
from edge.store.values import EXPIRED, REJECTED, Arrival, DeadLetter, Intake, Paused
from tests.conftest import ROOT, run_cli
from tests.outbound import conversions, skipped


@pytest.fixture
def database(tmp_path: Path) -> Path:
    """A store with a bit of everything: pending, delivered, dead, skipped, errors, a pause."""
    path = tmp_path / "edge.db"
    store = SQLiteStore(path)

    async def fill() -> None:
        await store.put(Intake(outbound=conversions(6), skipped=[skipped(1, "consent: denied")]))
        a, b, c, d = await store.claim(4, 60)
        await store.ack([a.id])
        await store.dead(
            [
                DeadLetter(b.id, REJECTED, "Error converting value \"x\" to type 'System.Guid'"),
                DeadLetter(c.id, REJECTED, "Error converting value \"x\" to type 'System.Guid'"),
                DeadLetter(d.id, EXPIRED, "older than 30 days"),
            ]
        )
        await store.record_upstream_error(400, "Required event field missing")
        await store.set_paused(Paused(time.time(), "403: the upstream rejects the API key"))
        # a request answered but not processed yet (the edge stopped right after it)
        await store.put_arrival(Arrival("beacon", time.time() - 90, b'{"batch": []}'))

    asyncio.run(fill())
    store.close()
    return path


def env_for(database: Path) -> dict[str, str]:
    return {"ROKT_EDGE_DATABASE_URL": f"sqlite:///{database}"}


def test_status_tells_queue_dead_letters_errors_and_pause(database: Path) -> None:
    result = run_cli("status", env=env_for(database))

    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "PAUSED since" in out
    assert "2 pending (0 retrying), 0 in flight; oldest stored" in out
    assert "arrivals        1 requests not processed yet; oldest came 1m 30s ago" in out
    assert "dead letters    3 (rokt-edge replay puts them back)" in out
    assert "rejected      2" in out
    assert "400   Required event field missing" in out
    assert "consent: denied" in out


def test_status_as_json(database: Path) -> None:
    result = run_cli("status", "--json", env=env_for(database))

    document = json.loads(result.stdout)
    assert document["delivery"] == "paused"
    assert document["queue"]["pending"] == 2
    assert document["arrivals"]["waiting"] == 1
    assert document["arrivals"]["oldest_age_seconds"] >= 90
    assert document["queue"]["oldest_pending_age_seconds"] >= 0
    assert document["delivered"] == 1
    assert document["dead_letters"]["by_reason"] == {REJECTED: 2, EXPIRED: 1}
    assert document["upstream_errors"][0]["status"] == 400
    assert document["skipped"] == {"consent: denied": 1}
    assert document["dry_run_bodies_kept"] == 0


def test_replay_puts_dead_letters_back_and_says_how_many(database: Path) -> None:
    recent = run_cli("replay", "--dead", "--since", "1h", env=env_for(database))
    assert recent.returncode == 0, recent.stderr
    assert recent.stdout.startswith("replayed 3 dead letter(s) since ")

    again = run_cli("replay", env=env_for(database))
    assert again.stdout.startswith("replayed 0 dead letter(s)")
    document = json.loads(run_cli("status", "--json", env=env_for(database)).stdout)
    assert (document["queue"]["pending"], document["dead_letters"]["total"]) == (5, 0)


def test_replay_since_a_time_in_the_future_replays_nothing(database: Path) -> None:
    result = run_cli("replay", "--since", "2999-01-01T00:00:00Z", env=env_for(database))
    assert result.stdout.startswith("replayed 0 dead letter(s)")


def test_replay_refuses_a_since_it_cannot_read(database: Path) -> None:
    result = run_cli("replay", "--since", "yesterday", env=env_for(database))
    assert result.returncode == 2
    assert "neither a duration" in result.stderr


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", 1_000_000 - 1800),
        ("2h", 1_000_000 - 7200),
        ("1.5d", 1_000_000 - 129_600),
        ("1w", 1_000_000 - 604_800),
        ("1970-01-12T13:46:40Z", 1_000_000),
        ("1970-01-12T13:46:40", 1_000_000),  # no zone: UTC
        ("1970-01-12T15:46:40+02:00", 1_000_000),
    ],
)
def test_since_is_a_duration_ago_or_an_iso_time(text: str, expected: float) -> None:
    assert parse_since(text, now=1_000_000) == expected


def test_what_a_dry_run_recorded_is_sent_once_credentials_are_set(tmp_path: Path) -> None:
    # Given a store where a dry run recorded two conversions instead of sending them
    path = tmp_path / "edge.db"
    store = SQLiteStore(path)

    async def record() -> None:
        await store.put(Intake(outbound=conversions(2)))
        claims = await store.claim(10, 60)
        await store.ack(claims.ids, dry_run=True)

    asyncio.run(record())
    store.close()
    env = {"ROKT_EDGE_DATABASE_URL": f"sqlite:///{path}"}

    # When the engineer asks for them without credentials, nothing happens, and why is said
    refused = run_cli("replay", "--dry-run", env=env)
    assert refused.returncode == 2
    assert "set ROKT_EDGE_API_KEY and ROKT_EDGE_API_SECRET" in refused.stderr

    # Then with the credentials set, they are back in the queue, to be sent
    credentials = {"ROKT_EDGE_API_KEY": "k", "ROKT_EDGE_API_SECRET": "s"}
    done = run_cli("replay", "--dry-run", env={**env, **credentials})
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("replayed 2 event(s) recorded in a dry run: back in the queue")
    status = json.loads(run_cli("status", "--json", env=env).stdout)
    assert status["queue"]["pending"] == 2


def test_status_says_its_upstream_and_dry_run_are_its_own_settings(database: Path) -> None:
    # Given a service that sends with credentials its own environment holds, when an engineer
    # runs status in a shell without them, the store cannot tell; so status says whose they are
    text = run_cli("status", env=env_for(database)).stdout
    document = json.loads(run_cli("status", "--json", env=env_for(database)).stdout)

    assert "(upstream and dry run: this command's settings, not the service's)" in text
    assert document["settings_from"] == (
        "this command's environment and --config file; the running service's may differ"
    )


def test_status_into_a_reader_that_stops_early_ends_quietly(database: Path) -> None:
    # `rokt-edge status | head -1`: the pipe closes before status has written everything
    read, write = os.pipe()
    os.close(read)
    env = {**os.environ, "ROKT_EDGE_DATABASE_URL": f"sqlite:///{database}", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "edge", "status"], stdout=write, stderr=subprocess.PIPE,
        text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    os.close(write)
    assert (done.returncode, done.stderr) == (0, "")


def test_status_names_the_processes_on_the_store_alive_or_silent(tmp_path: Path) -> None:
    # Given a store shared by two edges: one beating now and holding two items, one that went
    # silent a minute ago
    path = tmp_path / "edge.db"
    silent = SQLiteStore(path, clock=lambda: time.time() - 60)
    alive = SQLiteStore(path)

    async def fill() -> None:
        await silent.heartbeat()
        await alive.heartbeat()
        await alive.put(Intake(outbound=conversions(2)))
        await alive.claim(2, 60)

    asyncio.run(fill())
    silent.close()
    alive.close()

    # Then status says which is alive and what each holds
    result = run_cli("status", "--json", env=env_for(path))
    assert result.returncode == 0, result.stderr
    processes = json.loads(result.stdout)["processes"]
    assert [(p["alive"], p["items_claimed"], p["pid"]) for p in processes] == [
        (False, 0, os.getpid()),
        (True, 2, os.getpid()),
    ]
    text = run_cli("status", env=env_for(path)).stdout
    assert "processes       1 alive on this store" in text
    assert "silent, seen 1m" in text
