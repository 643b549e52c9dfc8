"""The store contract's fixtures: each test runs once per backend (`backends.BACKENDS`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.store import Store
from tests.store.conftest import Clock
from tests.store.contract.backends import BACKENDS, Backend


@pytest.fixture(params=list(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path, clock: Clock) -> Iterator[Backend]:
    backend = BACKENDS[request.param](tmp_path, clock)
    yield backend
    backend.close()


@pytest.fixture
def store(backend: Backend) -> Store:
    return backend.open()
