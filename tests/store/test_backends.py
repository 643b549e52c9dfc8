"""The store's backends, as the settings and the contract suite know them."""

from __future__ import annotations

from dataclasses import replace

import pytest

from edge.settings import DATABASE_URLS, load_settings
from edge.store import BACKENDS, open_store
from edge.store.errors import StoreConfigError
from tests.store.contract import backends


def test_the_settings_take_the_schemes_the_store_opens() -> None:
    assert set(DATABASE_URLS) == set(BACKENDS)


def test_every_backend_passes_the_contract_suite() -> None:
    assert set(backends.BACKENDS) == set(BACKENDS)


def test_a_url_no_backend_opens_is_refused_saying_which_do() -> None:
    settings = replace(load_settings({}), database_url="mysql://db/edge")  # settings refuse it too
    with pytest.raises(StoreConfigError, match=r"no store for the scheme 'mysql' \(supported: "):
        open_store(settings)
