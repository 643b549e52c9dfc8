"""The upstreams' registry: every upstream the settings accept is found by its name, with the
default URL the settings use, and builds its contract and its wire from the settings."""

from __future__ import annotations

from typing import get_args

import pytest

from edge.settings import Settings, SettingsError, Upstream, load_settings
from edge.upstreams import UPSTREAMS, upstream_for


def test_every_upstream_the_settings_accept_is_registered_once() -> None:
    assert sorted(UPSTREAMS) == sorted(get_args(Upstream))
    assert all(name == upstream.name for name, upstream in UPSTREAMS.items())


@pytest.mark.parametrize("name", get_args(Upstream))
def test_each_upstream_is_found_with_the_default_url_the_settings_use(name: str) -> None:
    settings = load_settings({"ROKT_EDGE_UPSTREAM": name})

    upstream = upstream_for(settings)

    assert upstream.name == name
    assert upstream.default_url == settings.upstream_url
    assert upstream.contract(settings, "Send").name == name
    assert upstream.wire(settings, lambda: 0.0).name == name


def test_an_upstream_no_package_provides_is_refused() -> None:
    with pytest.raises(SettingsError, match="ROKT_EDGE_UPSTREAM = 'carrier-pigeon'"):
        upstream_for(Settings(upstream="carrier-pigeon"))  # type: ignore[arg-type]
