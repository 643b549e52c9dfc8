"""The import map file: which column of an export feeds which Rokt field.

It is written from the tables of Rokt's Hightouch guide: each table (`user_identities`, `event`,
`custom_attributes`, `user_attributes`, `device_info`, `audience`, `hashing`) is a TOML table,
each Rokt field a key, each value the column that feeds it (`{ value = "…" }` a fixed value, a
list the first non-blank of several); `mapping` names the mapping the items are stored under
(default "Send", so that a warehouse copy of an order already sent is a duplicate). Only the
columns you have are needed. An example with every table: docs/import.md#the-map-file.

Environment, event name and custom event type (Hightouch's fixed values) are always set.

Each row becomes a canonical event (a track named by its conversion type, or an identify with
the audience in its traits) that goes through the one pipeline, with a mapping made from this
file (`import_mapping`): the standard fields read the places the row was written to, and the
extra attributes are read from `context.rokt_import`.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass
from pathlib import Path as FilePath
from types import MappingProxyType
from typing import Any, Final

from edge.capture.enrich import INTEGRATION
from edge.pipeline.mapping import (
    DEFAULT_FIELDS,
    HASHABLE,
    MAX_NAME_LENGTH,
    STANDARD_ATTRIBUTES,
    Literal,
    Mapping,
)
from edge.pipeline.paths import Path
from edge.pipeline.triggers import compile_trigger

DEFAULT_MAPPING: Final = "Send"
EXTRAS: Final = "rokt_import"  # context.rokt_import.{custom,user}_attributes: extra attributes
TRIGGER: Final = 'type = "track" or type = "identify"'

# The Hightouch guide's tables: field → where the canonical event carries it.
FIELDS: Final[MappingABC[str, MappingABC[str, tuple[str, ...]]]] = {
    "user_identities": {
        "email": ("traits", "email"),
        "other": ("traits", "email"),  # pre-hashed: sent to `other` (used when email is blank)
        "customerid": ("userId",),
        "other2": ("integrations", INTEGRATION, "rtid"),
    },
    "event": {
        "timestamp_unixtime_ms": ("timestamp",),
        "source_message_id": ("messageId",),
        "ip": ("context", "ip"),
    },
    "custom_attributes": {
        "conversiontype": ("event",),
        "confirmationref": ("properties", "order_id"),
        "amount": ("properties", "revenue"),
        "currency": ("properties", "currency"),
    },
    "user_attributes": {
        "firstname": ("traits", "first_name"),
        "firstnamesha256": ("traits", "first_name"),
        "lastname": ("traits", "last_name"),
        "lastnamesha256": ("traits", "last_name"),
        "mobile": ("traits", "phone"),
        "mobilesha256": ("traits", "phone"),
        "billingzipcode": ("traits", "address", "postal_code"),
        "billingzipsha256": ("traits", "address", "postal_code"),
        "dob": ("traits", "birthday"),
        "gender": ("traits", "gender"),
    },
    "device_info": {
        "http_header_user_agent": ("context", "userAgent"),
        "ios_advertising_id": ("context", "device", "advertisingId"),
        "ios_idfv": ("context", "device", "id"),
        "android_advertising_id": ("context", "device", "advertisingId"),
        "android_uuid": ("context", "device", "id"),
    },
    "audience": {"name": (), "membership": ()},
}
OPEN_SECTIONS: Final = ("custom_attributes", "user_attributes")  # other names: extras
TOP_KEYS: Final = frozenset({"mapping", "hashing", "ip", *FIELDS})
IOS: Final = ("ios_advertising_id", "ios_idfv")
TRUE: Final = frozenset({"true", "yes", "y", "1", "t"})
FALSE: Final = frozenset({"false", "no", "n", "0", "f"})


class MapError(ValueError):
    """A map file that cannot be used; the message names the file and the key."""


class RowError(ValueError):
    """A row that cannot become an event; the message says why."""


@dataclass(frozen=True, slots=True)
class Column:
    name: str


Source = Column | Literal


@dataclass(frozen=True, slots=True)
class ImportMap:
    fields: MappingABC[str, tuple[Source, ...]]  # "section.field" → sources, first present wins
    mapping: Mapping

    @property
    def columns(self) -> dict[str, str]:
        """Every column the map names, with the (first) field it feeds, in order."""
        columns: dict[str, str] = {}
        for key, sources in self.fields.items():
            for source in sources:
                if isinstance(source, Column):
                    columns.setdefault(source.name, key)
        return columns


def load_map(path: str | FilePath) -> ImportMap:
    try:
        with open(path, "rb") as file:
            document = tomllib.load(file)
    except FileNotFoundError:
        raise MapError(f"{path}: map file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise MapError(f"{path}: cannot read: {error}") from None
    except tomllib.TOMLDecodeError as error:
        raise MapError(f"{path}: not valid TOML: {error}") from None
    return parse_map(document, str(path))


def parse_map(document: MappingABC[str, Any], origin: str) -> ImportMap:
    unknown = sorted(set(document) - TOP_KEYS)
    if unknown:
        raise MapError(f"{origin}: {unknown[0]}: unknown key; known: {', '.join(sorted(TOP_KEYS))}")
    fields: dict[str, tuple[Source, ...]] = {}
    if "ip" in document:  # the guide maps `ip` at the top level; [event] ip is the same
        fields["event.ip"] = _sources(document["ip"], f"{origin}: ip")
    for section, known in FIELDS.items():
        table = document.get(section, {})
        if not isinstance(table, dict):
            raise MapError(f"{origin}: {section}: must be a table, as [{section}]")
        for name, spec in table.items():
            where = f"{origin}: {section}.{name}"
            if name not in known and section not in OPEN_SECTIONS:
                raise MapError(f"{where}: unknown field; {section} fields are {', '.join(known)}")
            if name not in known:
                _check_extra(section, name, where)
            fields[f"{section}.{name}"] = _sources(spec, where)
    if not any(key in fields for key in ("custom_attributes.conversiontype", "audience.name")):
        raise MapError(
            f"{origin}: nothing to send: map custom_attributes.conversiontype (conversions) "
            "or audience.name (audience updates)"
        )
    name = document.get("mapping", DEFAULT_MAPPING)
    if not isinstance(name, str) or not name.strip():
        raise MapError(f"{origin}: mapping: must be a non-empty name")
    mapping = import_mapping(name.strip(), fields, document, origin)
    return ImportMap(MappingProxyType(fields), mapping)


def import_mapping(
    name: str, fields: MappingABC[str, Any], document: MappingABC[str, Any], origin: str
) -> Mapping:
    """The mapping of an import: every row is sent (no trigger to match), the standard fields
    as the presets read them, the extra attributes from where `row_event` put them."""
    hashing = document.get("hashing", {})
    if not isinstance(hashing, dict):
        raise MapError(f"{origin}: hashing: must be a table, as [hashing]")
    for key, flag in hashing.items():
        if key not in HASHABLE or not isinstance(flag, bool):
            raise MapError(f"{origin}: hashing.{key}: fields {', '.join(HASHABLE)}; true or false")
    extras: dict[str, dict[str, tuple[Path | Literal, ...]]] = {s: {} for s in OPEN_SECTIONS}
    for key in fields:
        section, _, attribute = key.partition(".")
        if section in OPEN_SECTIONS and attribute not in FIELDS[section]:
            keys = ("context", EXTRAS, section, attribute)
            text = f"$.context.{EXTRAS}.{section}[{json.dumps(attribute)}]"
            extras[section][attribute] = (Path(text, keys),)
    return Mapping(
        name=name,
        trigger=compile_trigger(TRIGGER),
        fields=DEFAULT_FIELDS,
        hashing=MappingProxyType(dict(hashing)),
        custom_attributes=MappingProxyType(extras["custom_attributes"]),
        user_attributes=MappingProxyType(extras["user_attributes"]),
    )


def _check_extra(section: str, name: str, where: str) -> None:
    if not name.strip() or len(name) > MAX_NAME_LENGTH:
        raise MapError(f"{where}: names are 1 to {MAX_NAME_LENGTH} characters")
    if name in STANDARD_ATTRIBUTES[section] or name.startswith("segment_"):
        raise MapError(f"{where}: a standard attribute name; map its own field instead")


def _sources(spec: Any, where: str) -> tuple[Source, ...]:
    """A column name, { value = fixed }, or a list of them (first non-blank wins)."""
    items = spec if isinstance(spec, list) else [spec]
    if not items:
        raise MapError(f"{where}: an empty list; name a column or {{ value = ... }}")
    sources: list[Source] = []
    for item in items:
        if isinstance(item, str) and item.strip():
            sources.append(Column(item))
        elif isinstance(item, dict) and set(item) == {"value"}:
            value = item["value"]
            if not isinstance(value, str | int | float | bool):
                raise MapError(f"{where}: a fixed value is text, a number or true/false")
            sources.append(Literal(value))
        else:
            raise MapError(f"{where}: {item!r}: write a column name or {{ value = ... }}")
    return tuple(sources)


# -- rows ------------------------------------------------------------------------------------


def row_event(row: MappingABC[str, Any], import_map: ImportMap) -> dict[str, Any]:
    """The canonical event of one row; RowError when it has neither conversion nor audience."""
    values: dict[str, Any] = {}
    for key, sources in import_map.fields.items():
        value = _first(sources, row)
        if value is not None:
            values[key] = value
    conversion = values.get("custom_attributes.conversiontype")
    audience = values.pop("audience.name", None)
    if conversion is None and audience is None:
        raise RowError("no conversion type and no audience name")
    body: dict[str, Any] = {"type": "track" if conversion is not None else "identify"}
    if "user_identities.email" in values:
        values.pop("user_identities.other", None)
    ios = any(f"device_info.{name}" in values for name in IOS)
    if ios:
        values.pop("device_info.android_advertising_id", None)
        values.pop("device_info.android_uuid", None)
    for key, value in values.items():
        section, _, name = key.partition(".")
        where = FIELDS[section].get(name)
        if where is None:
            _put(body, ("context", EXTRAS, section, name), value)
        elif where:
            _put(body, where, value if where[0] != "event" else str(value))
    if any(key.startswith("device_info.") and key != "device_info.http_header_user_agent"
           for key in values):  # fmt: skip
        _put(body, ("context", "device", "type"), "ios" if ios else "android")
    if audience is not None:
        member = _membership(values.get("audience.membership", True))
        holder = "properties" if body["type"] == "track" else "traits"
        _put(body, (holder, "audience_name"), str(audience))
        _put(body, (holder, "audience_membership"), member)
    body.setdefault("messageId", "row-" + _digest(row))
    return body


def _first(sources: tuple[Source, ...], row: MappingABC[str, Any]) -> Any:
    for source in sources:
        value = row.get(source.name) if isinstance(source, Column) else source.value
        if isinstance(value, str):
            value = value.strip()
            if "\ufffd" in value:
                raise RowError(f"{_label(source)}: not valid UTF-8")
        if value is not None and value != "":
            return value
    return None


def _label(source: Source) -> str:
    return f"column {source.name!r}" if isinstance(source, Column) else "value"


def _put(body: dict[str, Any], keys: tuple[str, ...], value: Any) -> None:
    holder = body
    for key in keys[:-1]:
        holder = holder.setdefault(key, {})
    holder[keys[-1]] = value


def _membership(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    raise RowError(f"audience.membership: {value!r} is not true or false")


def _digest(row: MappingABC[str, Any]) -> str:
    """A stable key for a row without a message id column: the same row, the same id."""
    text = json.dumps(row, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]
