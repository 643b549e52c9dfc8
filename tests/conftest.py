"""Shared test helpers: the repository's paths and a way to run the CLI as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from edge.store.sqlite import SQLiteStore
from tests.fake_capi import FakeCapi
from tests.fake_event_api import FakeEventApi, serving

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"  # what the tests read that the project did not write (SOURCES.txt)


def run_cli(
    *args: str, stdin: str | None = None, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """`rokt-edge ARGS` in a subprocess (as `python -m edge`, so it runs from this checkout)."""
    clean = {key: value for key, value in os.environ.items() if not key.startswith("ROKT_EDGE_")}
    clean["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "edge", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env={**clean, **(env or {})},
        cwd=cwd,
        timeout=60,
        check=False,
    )


def unavailable(reason: str) -> NoReturn:
    """Skip the test saying why a service or tool it needs is missing; under CI=true, where
    everything must be there, fail it."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: these tests must run)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(autouse=True, scope="session")
def _default_store_in_a_scratch_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Settings built without a database URL, and commands run without one, use the default
    store under XDG_DATA_HOME: here a folder of the test session's, never the user's own."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_DATA_HOME", str(tmp_path_factory.mktemp("xdg-data-home")))
        yield


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def fake() -> Iterator[FakeCapi]:
    """A fake Rokt Conversions API (contract A) on loopback."""
    with FakeCapi() as fake:
        yield fake


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    """A real SQLite store in a fresh file."""
    store = SQLiteStore(tmp_path / "edge.db")
    yield store
    store.close()


@pytest.fixture
def event_api() -> Iterator[FakeEventApi]:
    """A fake Rokt Event API serving on loopback for one test (its base URL is `.url`)."""
    fake = FakeEventApi()
    with serving(fake):
        yield fake


@pytest.fixture
def fleet_database() -> Iterator[str]:
    """A URL naming a schema of its own in the PostgreSQL test database, for edges run as a
    fleet (skipped, saying why, without a PostgreSQL server; failed under CI=true)."""
    import secrets
    from urllib.parse import quote

    import psycopg

    from tests.store.contract.backends import test_database  # imports this module

    database = test_database()
    schema = f"fleet_{secrets.token_hex(6)}"
    with psycopg.connect(database, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        try:
            yield f"{database}?options={quote(f'-csearch_path={schema}')}"
        finally:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")
