"""Settings: defaults, a TOML file, the environment over the file, and clear start-up errors."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import FrozenInstanceError, fields
from pathlib import Path

import pytest

from edge.config_docs import render
from edge.settings import (
    Settings,
    SettingsError,
    documented_settings,
    env_name,
    load_settings,
    without_password,
)
from tests.conftest import ROOT


def test_defaults_without_environment_or_file() -> None:
    settings = load_settings({"HOME": "/home/shop"})

    # the default store is one place whatever the working directory: the XDG data directory
    assert settings.database_url == "sqlite:////home/shop/.local/share/rokt-edge/rokt-edge.db"
    assert settings == Settings(database_url=settings.database_url)
    assert settings.upstream == "capi"
    assert settings.upstream_url == "https://inbound.mparticle.com/s2s/v2"
    assert settings.phone_region == "US"
    assert settings.click_id_in_other2 is True
    assert settings.dry_run is True


def test_settings_are_immutable() -> None:
    settings = load_settings({})
    with pytest.raises(FrozenInstanceError):
        settings.upstream = "event-api"  # type: ignore[misc]


def test_environment_values_are_parsed() -> None:
    settings = load_settings(
        {
            "ROKT_EDGE_API_KEY": "key",
            "ROKT_EDGE_API_SECRET": "secret",
            "ROKT_EDGE_WRITE_KEYS": "a, b,,c",
            "ROKT_EDGE_TRUSTED_PROXIES": "10.0.0.0/8, ::1",
            "ROKT_EDGE_ALLOWED_ORIGINS": "https://Shop.Example/",
            "ROKT_EDGE_CLICK_ID_IN_OTHER2": "off",
            "ROKT_EDGE_PHONE_REGION": "gb",
        }
    )

    assert settings.dry_run is False
    assert settings.write_keys == ("a", "b", "c")
    assert settings.trusted_proxies == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("::1"),
    )
    assert settings.allowed_origins == ("https://shop.example",)
    assert settings.click_id_in_other2 is False
    assert settings.phone_region == "GB"


def test_event_api_has_its_own_default_url() -> None:
    settings = load_settings({"ROKT_EDGE_UPSTREAM": "event-api"})
    assert settings.upstream_url == "https://api.rokt.com"


def test_the_environment_wins_over_the_file(tmp_path: Path) -> None:
    config = tmp_path / "edge.toml"
    config.write_text('upstream = "event-api"\nwrite_keys = ["k1", "k2"]\nphone_region = "AU"\n')

    settings = load_settings({"ROKT_EDGE_PHONE_REGION": "NZ"}, config)

    assert settings.upstream == "event-api"
    assert settings.write_keys == ("k1", "k2")
    assert settings.phone_region == "NZ"


def test_the_config_file_can_be_named_in_the_environment(tmp_path: Path) -> None:
    config = tmp_path / "edge.toml"
    config.write_text("click_id_in_other2 = false\n")

    assert load_settings({"ROKT_EDGE_CONFIG": str(config)}).click_id_in_other2 is False


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("ROKT_EDGE_UPSTREAM", "kafka", "ROKT_EDGE_UPSTREAM = 'kafka': must be capi or event-api"),
        ("ROKT_EDGE_ROKT_URL", "ftp://x", "ROKT_EDGE_ROKT_URL = 'ftp://x': must be an http"),
        ("ROKT_EDGE_DATABASE_URL", "mysql://x", "ROKT_EDGE_DATABASE_URL = 'mysql://x': must be"),
        ("ROKT_EDGE_DATABASE_URL", "postgresql:edge", "= 'postgresql:edge': must be"),
        ("ROKT_EDGE_TRUSTED_PROXIES", "10.0.0.0/8,nope", "'nope' is not an IP address or CIDR"),
        ("ROKT_EDGE_ALLOWED_ORIGINS", "shop.example", "'shop.example' is not an origin"),
        ("ROKT_EDGE_PHONE_REGION", "XX", "ROKT_EDGE_PHONE_REGION = 'XX': must be a two-letter"),
        ("ROKT_EDGE_CLICK_ID_IN_OTHER2", "maybe", "= 'maybe': must be true or false"),
    ],
)
def test_a_bad_value_names_the_setting_and_the_value(
    variable: str, value: str, message: str
) -> None:
    with pytest.raises(SettingsError, match=re.escape(message)):
        load_settings({variable: value})


def test_a_bad_secret_is_named_but_not_shown(tmp_path: Path) -> None:
    config = tmp_path / "edge.toml"
    config.write_text("api_secret = 42\n")
    with pytest.raises(SettingsError) as raised:
        load_settings({}, config)
    assert str(raised.value) == f"{config}: api_secret = (hidden): must be a string"


def test_a_bad_file_value_names_the_file_and_key(tmp_path: Path) -> None:
    config = tmp_path / "edge.toml"
    config.write_text("write_keys = 3\n")
    with pytest.raises(SettingsError, match=re.escape(f"{config}: write_keys = 3: must be")):
        load_settings({}, config)


def test_an_unknown_key_in_the_file_is_an_error(tmp_path: Path) -> None:
    config = tmp_path / "edge.toml"
    config.write_text('upstraem = "capi"\n')
    with pytest.raises(SettingsError, match="unknown setting 'upstraem'"):
        load_settings({}, config)


def test_a_missing_or_broken_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="config file not found"):
        load_settings({}, tmp_path / "absent.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("upstream = \n")
    with pytest.raises(SettingsError, match="not valid TOML"):
        load_settings({}, broken)


def test_event_api_with_credentials_needs_an_account_id() -> None:
    environ = {
        "ROKT_EDGE_UPSTREAM": "event-api",
        "ROKT_EDGE_API_KEY": "rpub-1",
        "ROKT_EDGE_API_SECRET": "rsec-1",
    }
    with pytest.raises(SettingsError, match="ROKT_EDGE_ACCOUNT_ID is required"):
        load_settings(environ)


def test_every_setting_is_documented_in_the_configuration_reference() -> None:
    # docs/configuration.md is generated from the declarations (python -m edge.config_docs)
    reference = (ROOT / "docs" / "configuration.md").read_text()
    for variable, default, doc in documented_settings():
        assert doc
        assert f"| `{variable}` | {default} |" in reference, f"{variable} is not in the docs"
    assert len(documented_settings()) == len(fields(Settings))
    assert env_name("api_key") == "ROKT_EDGE_API_KEY"
    assert reference == render()


def test_event_api_auth_and_metadata(tmp_path: Path) -> None:
    # From the environment: v1 auth and comma-separated name=value metadata
    settings = load_settings(
        {
            "ROKT_EDGE_EVENT_API_AUTH": "v1",
            "ROKT_EDGE_EVENT_API_METADATA": "sourceServer=192.0.0.1, region = eu",
        }
    )
    assert settings.event_api_auth == "v1"
    assert settings.event_api_metadata == (("sourceServer", "192.0.0.1"), ("region", "eu"))
    # From a file: a table
    config = tmp_path / "edge.toml"
    config.write_text('[event_api_metadata]\nsourceServer = "10.0.0.5"\n')
    assert load_settings({}, config).event_api_metadata == (("sourceServer", "10.0.0.5"),)
    assert load_settings({}).event_api_auth == "v2"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("EVENT_API_AUTH", "oauth", "must be v2 (rpub/rsec keys) or v1"),
        ("EVENT_API_METADATA", "sourceServer", "'sourceServer' is not name=value"),
        ("EVENT_API_METADATA", "rokt.source=x", "not starting rokt."),
        ("ACCOUNT_ID", "9" * 65, "at most 64 characters"),
    ],
)
def test_event_api_settings_errors(variable: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(message)):
        load_settings({f"ROKT_EDGE_{variable}": value})


@pytest.mark.parametrize(
    ("environ", "given", "missing"),
    [
        ({"ROKT_EDGE_API_KEY": "key-1"}, "ROKT_EDGE_API_KEY", "ROKT_EDGE_API_SECRET"),
        ({"ROKT_EDGE_API_KEY": "key-1", "ROKT_EDGE_API_SECRET": " "}, "ROKT_EDGE_API_KEY",
         "ROKT_EDGE_API_SECRET"),
        ({"ROKT_EDGE_API_SECRET": "secret-1"}, "ROKT_EDGE_API_SECRET", "ROKT_EDGE_API_KEY"),
    ],
)  # fmt: skip
def test_half_a_credential_stops_start_up_naming_both_settings(
    environ: dict[str, str], given: str, missing: str
) -> None:
    # It used to be a silent dry run that never ended, even once the other half was set
    with pytest.raises(SettingsError, match=f"^{given} is set but {missing} is not") as raised:
        load_settings(environ)
    assert "key-1" not in str(raised.value)
    assert "secret-1" not in str(raised.value)


def test_a_dry_run_is_chosen_by_having_no_credentials_or_explicitly() -> None:
    credentials = {"ROKT_EDGE_API_KEY": "k", "ROKT_EDGE_API_SECRET": "s"}
    assert load_settings({}).dry_run is True
    assert load_settings(credentials).dry_run is False
    assert load_settings({**credentials, "ROKT_EDGE_DRY_RUN": "true"}).dry_run is True
    assert load_settings({**credentials, "ROKT_EDGE_DRY_RUN": "false"}).dry_run is False
    with pytest.raises(SettingsError, match="ROKT_EDGE_DRY_RUN = false needs ROKT_EDGE_API_KEY"):
        load_settings({"ROKT_EDGE_DRY_RUN": "false"})


def test_any_origin_is_refused_since_the_edge_answers_with_credentials() -> None:
    with pytest.raises(SettingsError, match="'\\*' would allow every site"):
        load_settings({"ROKT_EDGE_ALLOWED_ORIGINS": "*"})


def test_a_database_password_is_never_shown() -> None:
    url = "postgresql://edge:s3cret@db.shop.internal:5432/edge"
    assert without_password(url) == "postgresql://edge:***@db.shop.internal:5432/edge"
    assert without_password("sqlite:////var/lib/edge.db") == "sqlite:////var/lib/edge.db"
    # a URL the settings refuse is quoted in the error without its password
    with pytest.raises(SettingsError) as refused:
        load_settings({"ROKT_EDGE_DATABASE_URL": "postgresql:edge:s3cret@db/edge"})
    assert "s3cret" not in str(refused.value)
