"""What the PostgreSQL store does beyond the contract every backend passes: edges sharing one
database at once (the schema made once, one copy of a conversion stored, claims and leases
disjoint), and how it says what it cannot do."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from edge.settings import load_settings, without_password
from edge.store import open_store
from edge.store.errors import StoreConfigError, StoreUnavailable
from edge.store.postgres import PostgresStore
from edge.store.postgres_schema import MIGRATIONS, VERSION
from edge.store.values import Intake
from tests.outbound import conversions
from tests.store.conftest import Clock
from tests.store.contract.backends import Postgres
from tests.store.contract.steps import arrival, copy

pytestmark = pytest.mark.anyio


@pytest.fixture
def database(tmp_path: Path, clock: Clock) -> Iterator[Postgres]:
    backend = Postgres(tmp_path, clock)
    yield backend
    backend.close()


def test_edges_starting_at_once_make_the_schema_once(database: Postgres) -> None:
    # Given six edges started at the same moment on an empty database
    start = threading.Barrier(6)
    failures: list[BaseException] = []

    def edge() -> None:
        start.wait()
        try:
            database.open()
        except BaseException as failure:
            failures.append(failure)

    threads = [threading.Thread(target=edge) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then each opened the store, and the schema was made once
    assert failures == []
    assert database._read("SELECT version FROM rokt_edge_schema") == [(VERSION,)]


def test_a_store_made_by_an_earlier_rokt_edge_is_migrated_at_open(database: Postgres) -> None:
    # Given a store at schema 1, holding an arrival
    [(_, first)] = [migration for migration in MIGRATIONS if migration[0] == 1]
    database.admin.execute(first.encode())
    database.admin.execute("CREATE TABLE rokt_edge_schema (version integer NOT NULL)")
    database.admin.execute("INSERT INTO rokt_edge_schema VALUES (1)")
    database.admin.execute(
        "INSERT INTO arrivals (source, received_at, body) VALUES ('beacon', 1, '\\x7b7d')"
    )

    # When an edge of this version opens it
    database.open()

    # Then it is at this version, and what it held is still there
    assert database._read("SELECT version FROM rokt_edge_schema") == [(VERSION,)]
    assert database._read("SELECT body, keys FROM arrivals") == [(b"{}", None)]


def test_a_database_from_a_newer_rokt_edge_is_refused(database: Postgres) -> None:
    database.open().close()
    database.admin.execute("UPDATE rokt_edge_schema SET version = version + 1")
    with pytest.raises(StoreConfigError, match=r"newer rokt-edge \(schema"):
        database.open()


def test_a_command_makes_no_store_where_there_is_none(database: Postgres) -> None:
    settings = replace(load_settings({}), database_url=database.url)
    with pytest.raises(StoreConfigError, match="no rokt-edge store in this database"):
        open_store(settings, create=False)
    open_store(settings).close()  # the service makes it
    open_store(settings, create=False).close()


def test_an_unreachable_server_is_unavailable_saying_where_but_not_the_password() -> None:
    url = "postgresql://edge:s3cret@127.0.0.1:9/edge"
    with pytest.raises(StoreUnavailable, match=r"postgresql://edge:\*\*\*@127.0.0.1:9/edge") as e:
        PostgresStore(url)
    assert "s3cret" not in str(e.value)
    assert without_password("postgresql://edge@host/db") == "postgresql://edge@host/db"


def test_a_url_libpq_cannot_read_is_a_configuration_error() -> None:
    with pytest.raises(StoreConfigError, match=r"invalid URI query parameter"):
        PostgresStore("postgresql://edge:s3cret@127.0.0.1/edge?colour=blue")


async def test_two_edges_putting_the_same_conversion_at_once_store_it_once(
    database: Postgres,
) -> None:
    # Given two edges, each told of the same twenty orders at the same moment (the browser's
    # copy to one, the merchant's backend's to the other)
    first, second = database.open(), database.open()
    results = await asyncio.gather(
        *(store.put(Intake(outbound=[copy(2 * order + n, f"order-{order}")]))
          for order in range(20) for n, store in ((0, first), (1, second)))
    )  # fmt: skip

    # Then each order is stored once, the other copy recorded as a duplicate
    assert sum(result.stored for result in results) == 20
    assert sum(result.deduplicated for result in results) == 20
    assert (await first.stats()).pending == 20


async def test_edges_claiming_at_once_take_disjoint_items(database: Postgres) -> None:
    # Given 300 items, and four edges claiming 25 at a time until none is left
    stores = [database.open() for _ in range(4)]
    await stores[0].put(Intake(outbound=conversions(300)))
    taken: list[list[int]] = [[] for _ in stores]

    async def sender(n: int) -> None:
        while claims := await stores[n].claim(25, lease_seconds=60):
            taken[n] += claims.ids

    await asyncio.gather(*(sender(n) for n in range(4)))

    # Then every item was claimed once, by one of them
    every = [id for ids in taken for id in ids]
    assert len(every) == len(set(every)) == 300


async def test_edges_leasing_arrivals_at_once_take_disjoint_ones_each_in_order(
    database: Postgres,
) -> None:
    stores = [database.open() for _ in range(4)]
    for n in range(200):
        await stores[0].put_arrival(arrival(n))

    slices = await asyncio.gather(*(store.arrivals(60) for store in stores))

    ids = [[stored.id for stored in taken] for taken in slices]
    assert all(each == sorted(each) for each in ids)
    every = [id for taken in ids for id in taken]
    assert len(every) == len(set(every)) == 200


async def test_a_store_serves_another_event_loop_beside_its_own(database: Postgres) -> None:
    # Given a store in use on this loop (its connections are this loop's)
    store = database.open()
    await store.put(Intake(outbound=conversions(1)))

    # When another thread's loop uses it too (a test serving the app in a thread does)
    def elsewhere() -> int:
        async def work() -> int:
            await store.put_arrival(arrival(1))
            await store.put(Intake(outbound=conversions(2)))
            return len(await store.arrivals(10))

        return asyncio.run(work())

    taken = await asyncio.to_thread(elsewhere)

    # Then both loops' writes are there
    assert taken == 1
    assert (await store.stats()).pending == 2
