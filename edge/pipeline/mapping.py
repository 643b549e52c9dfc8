"""Mappings: which events go to Rokt (a trigger) and where each Rokt field comes from.

A mapping is what Segment calls a mapping of the "Send" action. Without a mappings file the
built-in presets apply:

    Send            type = "track" and event = "Order Completed"   conversion (+ audience)
    Sync Audience   type = "identify"                               audience update only

Sync Audience also reads the click id from `$.traits.rtid`, after the default sources, as
Segment's "Sync Engage Audience" preset does.

A mappings file (TOML, `ROKT_EDGE_MAPPINGS`) replaces them. Each `[[mapping]]` has a `name`, a
`trigger` (or a `preset` to start from), an optional `event_type` (contract B's `eventType`,
default "conversion"; contract A ignores it) and optional tables: `fields` (replace default
sources), `hashing`, `custom_attributes` and `user_attributes`. The format, with an example:
docs/mappings.md#a-mappings-file.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass, field
from pathlib import Path as FilePath
from types import MappingProxyType
from typing import Any, Final

from edge.pipeline.paths import Path, PathError, parse_path
from edge.pipeline.triggers import Trigger, TriggerSyntaxError, compile_trigger
from edge.upstreams.base import Scalar

MAX_MAPPINGS: Final = 50  # as Segment allows per destination instance
MAX_NAME_LENGTH: Final = 256  # Rokt's limit on attribute names
MAX_EVENT_TYPE_LENGTH: Final = 128  # the Event API's limit on eventType
HASHABLE: Final = ("email", "first_name", "last_name", "mobile", "billing_zip")
CLICK_ID_PARAMS: Final = ("rtid", "rclid")


@dataclass(frozen=True, slots=True)
class Literal:
    """A fixed value written in the mapping instead of a path."""

    value: Scalar


@dataclass(frozen=True, slots=True)
class QueryParameter:
    """The click id inside a URL or query string at `path` (`?utm=x&rtid=abc`), URL-decoded."""

    path: Path
    names: tuple[str, ...] = CLICK_ID_PARAMS


Source = Path | Literal | QueryParameter


def _paths(*texts: str) -> tuple[Source, ...]:
    return tuple(parse_path(text) for text in texts)


def _trait(name: str) -> tuple[Source, ...]:
    """traits, then properties, then ★ context.traits (where analytics.js keeps identify traits)."""
    return _paths(f"$.traits.{name}", f"$.properties.{name}", f"$.context.traits.{name}")


DEFAULT_FIELDS: Final[MappingABC[str, tuple[Source, ...]]] = MappingProxyType(
    {
        "conversion_type": _paths("$.event"),
        "confirmation_ref": _paths("$.properties.order_id"),
        "amount": _paths("$.properties.revenue", "$.properties.total"),
        "currency": _paths("$.properties.currency"),
        "message_id": _paths("$.messageId"),
        "timestamp": _paths("$.timestamp"),
        "email": _trait("email"),
        "customer_id": _paths("$.userId"),
        "first_name": _trait("first_name"),
        "last_name": _trait("last_name"),
        "mobile": _trait("phone"),
        "billing_zip": _trait("address.postal_code"),
        "dob": _paths("$.traits.birthday", "$.properties.birthday"),
        "gender": _paths("$.traits.gender", "$.properties.gender"),
        "user_agent": _paths("$.context.userAgent"),
        "ip": _paths("$.context.ip"),
        "device_type": _paths("$.context.device.type"),
        "advertising_id": _paths("$.context.device.advertisingId"),
        "device_id": _paths("$.context.device.id"),
        "click_id": (
            parse_path('$.integrations["Rokt Conversions API"].rtid'),
            QueryParameter(parse_path("$.context.page.search"), CLICK_ID_PARAMS),
            QueryParameter(parse_path("$.context.page.url"), CLICK_ID_PARAMS),
        ),
        # Audience data has its own default logic (Engage personas, or audience_name and
        # audience_membership in properties or traits); these apply only when a mapping sets them.
        "audience_name": (),
        "audience_membership": (),
    }
)


@dataclass(frozen=True, slots=True)
class Mapping:
    name: str
    trigger: Trigger
    fields: MappingABC[str, tuple[Source, ...]] = field(default_factory=lambda: DEFAULT_FIELDS)
    hashing: MappingABC[str, bool] = field(default_factory=dict)
    custom_attributes: MappingABC[str, tuple[Source, ...]] = field(default_factory=dict)
    user_attributes: MappingABC[str, tuple[Source, ...]] = field(default_factory=dict)
    overridden: frozenset[str] = frozenset()
    event_type: str | None = None  # contract B's eventType; None: the contract's default


PRESETS: Final[MappingABC[str, Mapping]] = MappingProxyType(
    {
        "Send": Mapping("Send", compile_trigger('type = "track" and event = "Order Completed"')),
        # Audience updates only: an identify that happens to carry an `event` is no conversion.
        # The click id also from the user's traits, as Segment's "Sync Engage Audience" preset
        # reads it (Engage's identify calls carry no page); last, since a trait may be kept
        # from an earlier visit while the plugin's and the page's are this visit's.
        "Sync Audience": Mapping(
            "Sync Audience",
            compile_trigger('type = "identify"'),
            fields=MappingProxyType(
                {
                    **DEFAULT_FIELDS,
                    "conversion_type": (),
                    "click_id": (*DEFAULT_FIELDS["click_id"], parse_path("$.traits.rtid")),
                }
            ),
        ),
    }
)


class MappingConfigError(ValueError):
    """A mappings file that cannot be used; the message names the file, the mapping and the key."""


MAPPING_KEYS: Final = frozenset(
    {
        "name",
        "preset",
        "trigger",
        "event_type",
        "fields",
        "hashing",
        "custom_attributes",
        "user_attributes",
    }
)


def default_mappings() -> tuple[Mapping, ...]:
    return tuple(PRESETS.values())


def load_mappings(path: str | FilePath | None) -> tuple[Mapping, ...]:
    """The mappings of a TOML file, or the presets when no file is given."""
    if path is None:
        return default_mappings()
    try:
        with open(path, "rb") as file:
            document = tomllib.load(file)
    except FileNotFoundError:
        raise MappingConfigError(f"{path}: mappings file not found") from None
    except tomllib.TOMLDecodeError as error:
        raise MappingConfigError(f"{path}: not valid TOML: {error}") from None
    return parse_mappings(document, str(path))


def parse_mappings(document: MappingABC[str, Any], origin: str) -> tuple[Mapping, ...]:
    extra = sorted(set(document) - {"mapping"})
    if extra:
        raise MappingConfigError(f"{origin}: unknown key {extra[0]!r}; write [[mapping]] tables")
    tables = document.get("mapping", [])
    if not isinstance(tables, list) or not tables:
        raise MappingConfigError(f"{origin}: no [[mapping]] tables")
    if len(tables) > MAX_MAPPINGS:
        raise MappingConfigError(
            f"{origin}: {len(tables)} mappings; at most {MAX_MAPPINGS} are allowed"
        )
    mappings: list[Mapping] = []
    for number, table in enumerate(tables, start=1):
        mapping = _parse_mapping(table, f"{origin}: mapping {number}")
        if any(existing.name == mapping.name for existing in mappings):
            raise MappingConfigError(
                f"{origin}: mapping {number} ({mapping.name!r}): name: used by an earlier mapping"
            )
        mappings.append(mapping)
    return tuple(mappings)


def _parse_mapping(table: Any, where: str) -> Mapping:
    if not isinstance(table, dict):
        raise MappingConfigError(f"{where}: must be a table")
    name = table.get("name")
    if not isinstance(name, str) or not name.strip():
        raise MappingConfigError(f"{where}: name: required, a non-empty string")
    where = f"{where} ({name!r})"
    unknown = sorted(set(table) - MAPPING_KEYS)
    if unknown:
        known = ", ".join(sorted(MAPPING_KEYS))
        raise MappingConfigError(f"{where}: {unknown[0]}: unknown key; known keys: {known}")
    base = _preset(table.get("preset"), where)
    trigger_text = table.get("trigger")
    if trigger_text is None:
        if base is None:
            raise MappingConfigError(f"{where}: trigger: required (or name a preset)")
        trigger = base.trigger
    elif isinstance(trigger_text, str):
        try:
            trigger = compile_trigger(trigger_text)
        except TriggerSyntaxError as error:
            raise MappingConfigError(f"{where}: trigger: {error}\n{error.caret()}") from None
    else:
        raise MappingConfigError(f"{where}: trigger: must be a string")
    fields = dict(base.fields if base else DEFAULT_FIELDS)
    overrides = _table(table, "fields", where)
    for key, spec in overrides.items():
        if key not in DEFAULT_FIELDS:
            known = ", ".join(DEFAULT_FIELDS)
            raise MappingConfigError(f"{where}: fields.{key}: unknown field; fields are {known}")
        fields[key] = _sources(spec, f"{where}: fields.{key}")
    if ("audience_name" in overrides) != ("audience_membership" in overrides):
        raise MappingConfigError(
            f"{where}: fields: audience_name and audience_membership are set together"
        )
    hashing = dict(base.hashing if base else {})
    for key, flag in _table(table, "hashing", where).items():
        if key not in HASHABLE:
            raise MappingConfigError(
                f"{where}: hashing.{key}: not hashable; hashable fields are {', '.join(HASHABLE)}"
            )
        if not isinstance(flag, bool):
            raise MappingConfigError(f"{where}: hashing.{key}: must be true or false")
        hashing[key] = flag
    event_type = _event_type(table.get("event_type"), where)
    return Mapping(
        name=name.strip(),
        trigger=trigger,
        fields=MappingProxyType(fields),
        hashing=MappingProxyType(hashing),
        custom_attributes=_attributes(table, "custom_attributes", where, base),
        user_attributes=_attributes(table, "user_attributes", where, base),
        overridden=frozenset(overrides) | (base.overridden if base else frozenset()),
        event_type=event_type if event_type is not None else (base.event_type if base else None),
    )


def _event_type(value: Any, where: str) -> str | None:
    if value is None:
        return None
    text = value.strip() if isinstance(value, str) else ""
    if not text or len(text) > MAX_EVENT_TYPE_LENGTH:
        raise MappingConfigError(
            f"{where}: event_type: must be a string of 1 to {MAX_EVENT_TYPE_LENGTH} characters"
        )
    return text


def _preset(value: Any, where: str) -> Mapping | None:
    if value is None:
        return None
    if value not in PRESETS:
        names = ", ".join(repr(name) for name in PRESETS)
        raise MappingConfigError(f"{where}: preset: {value!r} is not a preset; presets: {names}")
    return PRESETS[value]


def _table(table: MappingABC[str, Any], key: str, where: str) -> dict[str, Any]:
    value = table.get(key, {})
    if not isinstance(value, dict):
        raise MappingConfigError(f"{where}: {key}: must be a table")
    return value


# Attribute names the standard fields already fill; an extra attribute may not overwrite them.
STANDARD_ATTRIBUTES: Final = {
    "custom_attributes": frozenset({"conversiontype", "confirmationref", "amount", "currency"}),
    "user_attributes": frozenset(
        {"firstname", "firstnamesha256", "lastname", "lastnamesha256", "mobile", "mobilesha256"}
        | {"billingzipcode", "billingzipsha256", "dob", "gender"}
    ),
}


def _attributes(
    table: MappingABC[str, Any], key: str, where: str, base: Mapping | None
) -> MappingABC[str, tuple[Source, ...]]:
    attributes = dict(getattr(base, key)) if base else {}
    for name, spec in _table(table, key, where).items():
        if len(name) > MAX_NAME_LENGTH or not name.strip():
            raise MappingConfigError(
                f"{where}: {key}.{name[:40]}: names are 1 to {MAX_NAME_LENGTH} characters"
            )
        if name in STANDARD_ATTRIBUTES[key] or name.startswith("segment_"):
            raise MappingConfigError(
                f"{where}: {key}.{name}: set by a standard field; override that field instead"
            )
        attributes[name] = _sources(spec, f"{where}: {key}.{name}")
    return MappingProxyType(attributes)


def _sources(spec: Any, where: str) -> tuple[Source, ...]:
    """A path ("$.a.b"), a list of fallbacks, a literal, or {value = literal}."""
    items = spec if isinstance(spec, list) else [spec]
    if not items:
        raise MappingConfigError(f"{where}: an empty list; give at least one path or value")
    sources: list[Source] = []
    for item in items:
        if isinstance(item, dict):
            if set(item) != {"value"}:
                raise MappingConfigError(f"{where}: a literal is written {{ value = ... }}")
            item = item["value"]
            if isinstance(item, bool | int | float | str):
                sources.append(Literal(item))
                continue
        if isinstance(item, str) and item.startswith("$"):
            try:
                sources.append(parse_path(item))
            except PathError as error:
                raise MappingConfigError(f"{where}: path {item!r}: {error}") from None
        elif isinstance(item, bool | int | float | str):
            sources.append(Literal(item))
        else:
            raise MappingConfigError(f"{where}: {item!r} is neither a path nor a scalar value")
    return tuple(sources)
