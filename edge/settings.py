"""Settings: built once, by `load_settings`, from the environment and an optional TOML file.

Every setting is a field of `Settings` with a default, a parser and a line of documentation
(the README's configuration table lists them all; a test keeps the two in step). A TOML file
(`--config FILE` or `ROKT_EDGE_CONFIG`) uses the same names without the prefix, in lower case
(`upstream = "capi"`); the environment wins over the file. A bad value stops start-up with a
`SettingsError` that names the setting, where it came from and the value.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Final, Literal

import phonenumbers

ENV_PREFIX: Final = "ROKT_EDGE_"
CONFIG_ENV: Final = "ROKT_EDGE_CONFIG"

Upstream = Literal["capi", "event-api"]
# Where trusted proxies put the client's address (edge.capture.client_ip reads one of them).
CLIENT_IP_HEADERS: Final = ("x-forwarded-for", "forwarded", "cf-connecting-ip", "true-client-ip")
EventApiAuth = Literal["v2", "v1"]
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

SQLITE_PREFIX: Final = "sqlite:///"
# The default store, one place whatever the working directory: the XDG data directory
# (`default_database_path`), written as the docs show it; resolved when settings are built.
DEFAULT_DATABASE_URL: Final = "sqlite:///$XDG_DATA_HOME/rokt-edge/rokt-edge.db"

DEFAULT_URLS: Final[Mapping[str, str]] = {
    "capi": "https://inbound.mparticle.com/s2s/v2",
    "event-api": "https://api.rokt.com",
}


class SettingsError(ValueError):
    """A setting with a value that cannot be used; the message names the setting and the value."""


Parser = Callable[[Any], Any]


def _text(value: Any) -> str | None:
    if not isinstance(value, str):
        raise ValueError("must be a string")
    return value.strip() or None


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
    raise ValueError("must be true or false")


def _items(value: Any) -> tuple[str, ...]:
    """A list from TOML, or a comma-separated string from the environment."""
    if isinstance(value, str):
        parts = value.split(",")
    elif isinstance(value, list) and all(isinstance(part, str) for part in value):
        parts = value
    else:
        raise ValueError("must be a comma-separated string or a list of strings")
    return tuple(part.strip() for part in parts if part.strip())


def _upstream(value: Any) -> Upstream:
    if value == "capi":
        return "capi"
    if value == "event-api":
        return "event-api"
    raise ValueError("must be capi or event-api")


def _account_id(value: Any) -> str | None:
    text = _text(value)
    if text is not None and len(text) > 64:
        raise ValueError("must be at most 64 characters (the Event API's limit)")
    return text


def _event_api_auth(value: Any) -> EventApiAuth:
    if value == "v2":
        return "v2"
    if value == "v1":
        return "v1"
    raise ValueError("must be v2 (rpub/rsec keys) or v1 (app id and secret, OAuth)")


def _metadata(value: Any) -> tuple[tuple[str, str], ...]:
    """`name=value` pairs: a TOML table, or `a=1,b=2` in the environment. Names follow the
    Event API's rules (1 to 256 characters, `rokt.` reserved), so a bad one stops start-up
    instead of getting every request rejected."""
    if isinstance(value, dict):
        pairs = [(str(name), item) for name, item in value.items()]
    else:
        pairs = []
        for item in _items(value):
            name, equals, text = item.partition("=")
            if not equals:
                raise ValueError(f"{item!r} is not name=value")
            pairs.append((name, text))
    metadata = []
    for name, item in pairs:
        name = name.strip()
        if not isinstance(item, str):
            raise ValueError(f"{name}: values are strings")
        if not name or len(name) > 256 or name.lower().startswith("rokt."):
            raise ValueError(f"{name[:40]!r}: names are 1 to 256 characters, not starting rokt.")
        if len(item) > 65536:
            raise ValueError(f"{name}: values are at most 65,536 characters")
        metadata.append((name, item.strip()))
    return tuple(metadata)


def _url(value: Any) -> str | None:
    text = _text(value)
    if text is not None and not text.startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL")
    return text.rstrip("/") if text else None


def _database_url(value: Any) -> str:
    text = _text(value)
    if text is None or not text.startswith(SQLITE_PREFIX) or text == SQLITE_PREFIX:
        raise ValueError("must be sqlite:///relative/path.db or sqlite:////absolute/path.db")
    return text


def default_database_path(environ: Mapping[str, str]) -> Path:
    """`$XDG_DATA_HOME/rokt-edge/rokt-edge.db`, XDG_DATA_HOME being `~/.local/share` when it is
    unset, empty or relative (the XDG Base Directory rules)."""
    data = environ.get("XDG_DATA_HOME", "")
    if not os.path.isabs(data):
        data = os.path.join(environ.get("HOME") or Path.home(), ".local", "share")
    return Path(data) / "rokt-edge" / "rokt-edge.db"


def database_location(url: str, environ: Mapping[str, str]) -> str:
    """The database URL with an absolute path: the default's (`DEFAULT_DATABASE_URL`) from
    `environ`, a relative one from the working directory (now, once)."""
    if url == DEFAULT_DATABASE_URL:
        return SQLITE_PREFIX + str(default_database_path(environ))
    if url.startswith(SQLITE_PREFIX):
        return SQLITE_PREFIX + os.path.abspath(url[len(SQLITE_PREFIX) :])
    return url


def _networks(value: Any) -> tuple[IPNetwork, ...]:
    networks = []
    for item in _items(value):
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address or CIDR such as 10.0.0.0/8") from None
    return tuple(networks)


def _origins(value: Any) -> tuple[str, ...]:
    origins = _items(value)
    for origin in origins:
        if origin == "*":
            # Answered with credentials, "*" would let any site send events with the visitor's
            # cookie (the edge echoes the origin): name the shop's origins instead.
            raise ValueError(
                "'*' would allow every site; list origins such as https://shop.example"
            )
        if not origin.startswith(("http://", "https://")):
            raise ValueError(f"{origin!r} is not an origin such as https://shop.example")
    # Browsers send origins in lower case; so compare them.
    return tuple(origin.rstrip("/").lower() for origin in origins)


def _region(value: Any) -> str:
    text = _text(value)
    region = (text or "").upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError("must be a two-letter region code such as US, GB or AU")
    return region


def _path(value: Any) -> Path | None:
    text = _text(value)
    return Path(text) if text else None


def _seconds(value: Any) -> float:
    """A positive duration in seconds (a number, or a string of one from the environment)."""
    number = _number(value)
    if number <= 0:
        raise ValueError("must be a number of seconds above 0")
    return number


def _rate(value: Any) -> float:
    """Batches per second; 0 turns the limit off (benchmarks, or an account with no limit)."""
    number = _number(value)
    if number < 0:
        raise ValueError("must be 0 (off) or a number of batches per second above 0")
    return number


def _count(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("must be a whole number above 0")
    try:
        number = int(value.strip()) if isinstance(value, str) else int(value)
    except (TypeError, ValueError):
        raise ValueError("must be a whole number above 0") from None
    if number < 1 or (not isinstance(value, str) and number != value):
        raise ValueError("must be a whole number above 0")
    return number


def _number(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("must be a number")
    try:
        number = float(value.strip()) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        raise ValueError("must be a number") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise ValueError("must be a finite number")
    return number


def _client_ip_header(value: Any) -> str:
    text = (_text(value) or "").lower()
    if text not in CLIENT_IP_HEADERS:
        raise ValueError(f"must be one of {', '.join(CLIENT_IP_HEADERS)}")
    return text


def _cookie_name(value: Any) -> str:
    text = _text(value)
    if text is None or not all(c.isascii() and (c.isalnum() or c in "-_.") for c in text):
        raise ValueError("must be letters, digits, '-', '_' or '.'")
    return text


def _log_format(value: Any) -> str:
    if value not in ("text", "json"):
        raise ValueError("must be text or json")
    return str(value)


def _setting(default: Any, parse: Parser, doc: str, *, secret: bool = False) -> Any:
    return field(default=default, metadata={"parse": parse, "doc": doc, "secret": secret})


@dataclass(frozen=True, slots=True)
class Settings:
    api_key: str | None = _setting(
        None, _text, "Rokt API key (contract A key, or contract B rpub-…). Unset: dry run."
    )
    api_secret: str | None = _setting(
        None, _text, "Rokt API secret (contract A secret, or contract B rsec-…).", secret=True
    )
    dry_run: bool = _setting(
        None,
        _flag,
        "`true`: record what would be sent and send nothing, even with credentials; `false`: "
        "send (credentials required). Unset: a dry run exactly when no credentials are set.",
    )
    upstream: Upstream = _setting(
        "capi", _upstream, "`capi` (contract A, mParticle batch format) or `event-api` (B)."
    )
    rokt_url: str | None = _setting(
        None, _url, "Upstream base URL. Default: by upstream (see `upstream_url`)."
    )
    account_id: str | None = _setting(None, _account_id, "Rokt account id (event-api only).")
    event_api_auth: EventApiAuth = _setting(
        "v2",
        _event_api_auth,
        "event-api authentication: `v2` (Basic with the rpub/rsec keys) or `v1` (OAuth token "
        "from the app id and secret given as the API key and secret).",
    )
    event_api_metadata: tuple[tuple[str, str], ...] = _setting(
        (),
        _metadata,
        "event-api `metaData` sent with every event: `name=value` pairs, comma-separated "
        "(e.g. `sourceServer=10.0.0.5`).",
    )
    database_url: str = _setting(
        DEFAULT_DATABASE_URL,
        _database_url,
        "The store: `sqlite:////absolute/path.db`, or `sqlite:///relative/path.db` from the "
        "working directory. The default is one place whatever the working directory "
        "(XDG_DATA_HOME unset: `~/.local/share/rokt-edge/rokt-edge.db`), and only its folder is "
        "created (0700); another folder must exist.",
    )
    secret_key: str | None = _setting(
        None, _text, "Signs cookies. Unset: generated once, kept in the store.", secret=True
    )
    write_keys: tuple[str, ...] = _setting(
        (), _items, "Comma-separated write keys the server-side tracking API accepts."
    )
    mappings: Path | None = _setting(
        None, _path, "TOML file of mappings. Unset: the built-in presets (Send, Sync Audience)."
    )
    trusted_proxies: tuple[IPNetwork, ...] = _setting(
        (), _networks, "Comma-separated CIDRs whose forwarding headers are believed."
    )
    client_ip_header: str = _setting(
        "x-forwarded-for",
        _client_ip_header,
        "Header a trusted proxy writes the client's address in: x-forwarded-for, forwarded,"
        " cf-connecting-ip or true-client-ip (only that one is read).",
    )
    allowed_origins: tuple[str, ...] = _setting(
        (),
        _origins,
        "Origins allowed to call the beacon and analytics.js's /v1/* cross-origin (default: "
        "same origin).",
    )
    phone_region: str = _setting(
        "US", _region, "Region assumed for phone numbers written without a country code."
    )
    click_id_in_other2: bool = _setting(
        True, _flag, "Also copy the click id into `user_identities.other2` (contract A)."
    )
    rate_limit: float = _setting(
        270.0, _rate, "Upstream rate limit in batches per second (Rokt's default); 0: no limit."
    )
    max_in_flight: int = _setting(4, _count, "Upstream requests in flight at once, at most.")
    request_timeout: float = _setting(
        30.0, _seconds, "Seconds an upstream request may take (connect: at most 10) before retry."
    )
    lease_seconds: float = _setting(
        120.0, _seconds, "Seconds a claimed item is leased before it goes back to the queue."
    )
    claim_size: int = _setting(1000, _count, "Items the sender claims from the outbox at a time.")
    poll_interval: float = _setting(
        0.5, _seconds, "Seconds the sender waits before looking again at an empty outbox."
    )
    backoff_base: float = _setting(
        1.0, _seconds, "First retry delay in seconds after an upstream failure (doubles, jittered)."
    )
    backoff_cap: float = _setting(300.0, _seconds, "Longest retry delay in seconds.")
    pause_retry: float = _setting(
        60.0, _seconds, "Seconds between tries while paused on rejected credentials (401/403)."
    )
    dry_run_keep: int = _setting(
        1000, _count, "Dry run: how many of the last request bodies the store keeps."
    )
    cookie_name: str = _setting("rokt_edge", _cookie_name, "Name of the edge's visitor cookie.")
    cookie_domain: str | None = _setting(
        None, _text, "Domain of the visitor cookie (e.g. shop.example); unset: this host only."
    )
    cookie_max_age_days: int = _setting(
        365, _count, "Days the visitor cookie lives, refreshed on every beacon (browsers cap 400)."
    )
    attribution_window_days: int = _setting(
        30,
        _count,
        "Days a click id stays attached to its visitor (cookie and identity store), counted "
        "from the click's first sighting.",
    )
    remember_identifiers: bool = _setting(
        True,
        _flag,
        "Remember each visitor's email and mobile as SHA-256 only, and add them (hashed) to a "
        "later conversion of that visitor that lacks them.",
    )
    dedup_window_hours: int = _setting(
        24,
        _count,
        "Hours within which two copies of one conversion (same mapping, conversion "
        "type and confirmation ref, other message ids) count as one: the later is skipped.",
    )
    backlog_max_requests: int = _setting(
        100_000,
        _count,
        "Requests stored and not processed yet, at most; beyond, intake answers 503 with "
        "Retry-After until processing catches up.",
    )
    backlog_max_seconds: float = _setting(
        60.0,
        _seconds,
        "Seconds the oldest request not processed yet may wait; beyond, intake answers 503 "
        "with Retry-After until processing catches up.",
    )
    beacon_max_bytes: int = _setting(65536, _count, "Largest beacon body accepted (413 above).")
    beacon_max_events: int = _setting(100, _count, "Most events in one beacon request (413 above).")
    client_rate_limit: float = _setting(
        20.0, _rate, "Beacon requests per second per client IP (429 above); 0: no limit."
    )
    client_rate_burst: int = _setting(
        60, _count, "Beacon requests a client IP may send at once before the rate applies."
    )
    header_line_max_bytes: int = _setting(
        8192, _count, "Longest request line or header line accepted, in bytes (414, 431 above)."
    )
    header_max_bytes: int = _setting(
        32768, _count, "Largest request head (request line and headers), in bytes (431 above)."
    )
    header_timeout: int = _setting(
        10,
        _count,
        "Seconds a client has to send a request's head, from its connection or from its first "
        "byte after a keep-alive pause; then the connection is closed.",
    )
    keep_alive_timeout: int = _setting(
        5,
        _count,
        "Seconds an idle keep-alive connection stays open (behind a load balancer that reuses "
        "connections, set it above the balancer's idle timeout).",
    )
    max_connections: int = _setting(
        2048,
        _count,
        "Connections open at once, at most (fewer if the open-files limit is lower); a request "
        "beyond them gets 503.",
    )
    skip_bots: bool = _setting(True, _flag, "Skip events from known bots (reason `bot`).")
    honor_gpc: bool = _setting(
        True, _flag, "`Sec-GPC: 1` means the event is not forwarded (reason `gpc`)."
    )
    honor_consent: bool = _setting(
        True, _flag, "A denial in `context.consent` means not forwarded (reason `no-consent`)."
    )
    log_format: str = _setting("text", _log_format, "`text` for people, `json` for log pipelines.")
    metrics_interval: float = _setting(
        5.0,
        _seconds,
        "Seconds between renderings of /metrics (a scrape gets the latest; none reads the store).",
    )
    metrics_token: str | None = _setting(
        None,
        _text,
        "Token /metrics requires as `Authorization: Bearer <token>`; unset: /metrics is open.",
        secret=True,
    )
    demo: bool | None = _setting(
        None, _flag, "Serve the /demo pages. Unset: only in dry run; never shows data outside it."
    )

    def __post_init__(self) -> None:
        # Unset (None) means: a dry run exactly when no credentials are set (`load_settings`
        # refuses half of them). Resolved here, so that `dry_run` is always a bool.
        if getattr(self, "dry_run") is None:  # noqa: B009  (typed bool: None only until here)
            object.__setattr__(self, "dry_run", not (self.api_key and self.api_secret))
        # Settings built here rather than by `load_settings` (which resolves it from the
        # environment it is given) find the default store from this process's environment.
        object.__setattr__(self, "database_url", database_location(self.database_url, os.environ))

    @property
    def upstream_url(self) -> str:
        return self.rokt_url or DEFAULT_URLS[self.upstream]


def env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def load_settings(
    environ: Mapping[str, str] | None = None, config_file: str | os.PathLike[str] | None = None
) -> Settings:
    """Build settings: defaults, then the TOML file (if any), then the environment."""
    environ = os.environ if environ is None else environ
    config_file = config_file or environ.get(CONFIG_ENV) or None
    raw: dict[str, tuple[str, Any]] = {}
    if config_file is not None:
        for key, value in _read_config(Path(config_file)).items():
            raw[key] = (f"{config_file}: {key}", value)
    known = {spec.name for spec in fields(Settings)}
    for spec in fields(Settings):
        variable = env_name(spec.name)
        if variable in environ:
            raw[spec.name] = (variable, environ[variable])
    unknown = sorted(set(raw) - known)
    if unknown:
        names = ", ".join(sorted(known))
        raise SettingsError(f"{config_file}: unknown setting {unknown[0]!r}; known: {names}")
    values: dict[str, Any] = {}
    for spec in fields(Settings):
        if spec.name not in raw:
            continue
        where, value = raw[spec.name]
        try:
            values[spec.name] = spec.metadata["parse"](value)
        except ValueError as error:
            shown = "(hidden)" if spec.metadata["secret"] else repr(value)
            raise SettingsError(f"{where} = {shown}: {error}") from None
    key, secret = env_name("api_key"), env_name("api_secret")
    if bool(values.get("api_key")) != bool(values.get("api_secret")):
        # Half a credential used to be a silent dry run that never ended.
        given, missing = (key, secret) if values.get("api_key") else (secret, key)
        raise SettingsError(
            f"{given} is set but {missing} is not: set both to send to Rokt, or neither (with "
            f"{env_name('dry_run')}=true) for a dry run that records what would be sent"
        )
    values["database_url"] = database_location(
        values.get("database_url", DEFAULT_DATABASE_URL), environ
    )
    settings = Settings(**values)
    if not settings.dry_run and not (settings.api_key and settings.api_secret):
        raise SettingsError(
            f"{env_name('dry_run')} = false needs {key} and {secret}: without them nothing can "
            "be sent"
        )
    if settings.upstream == "event-api" and not settings.dry_run and not settings.account_id:
        raise SettingsError(
            f"{env_name('account_id')} is required when {env_name('upstream')} = 'event-api'"
        )
    if settings.lease_seconds <= settings.request_timeout:
        # A lease that can end while its request is still in flight sends the items twice.
        raise SettingsError(
            f"{env_name('lease_seconds')} = {settings.lease_seconds:g} must be more than "
            f"{env_name('request_timeout')} = {settings.request_timeout:g}"
        )
    return settings


def _read_config(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except FileNotFoundError:
        raise SettingsError(f"{path}: config file not found") from None
    except tomllib.TOMLDecodeError as error:
        raise SettingsError(f"{path}: not valid TOML: {error}") from None


def documented_settings() -> list[tuple[str, str, str]]:
    """(environment variable, default, meaning) for every setting, for docs and `--help`."""
    rows = []
    for spec in fields(Settings):
        default = spec.default
        if isinstance(default, tuple):
            shown = ",".join(map(str, default)) or "(none)"
        elif default is None:
            shown = "(unset)"
        else:
            shown = str(default).lower() if isinstance(default, bool) else str(default)
        rows.append((env_name(spec.name), shown, spec.metadata["doc"]))
    return rows
