"""Field resolution: from one event and one mapping to `Mapped`, the fields Rokt will receive.

Each field has an ordered list of sources (first present wins), by default those of
docs/mappings.md#fields, which a mapping may replace. Values are trimmed and blank ones omitted,
then normalized (currency upper-cased, gender to m/f, dob to YYYYMMDD, timestamps from ISO or
epoch, a mobile kept only when it is a plausible phone number) and hashed where the mapping asks.
What cannot be used is dropped with a warning, never failing the whole event: a wrong gender must
not lose a conversion.

`Mapped` (`edge.upstreams.base`) is upstream-neutral: each upstream's contract turns it into
what that upstream receives.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping as MappingABC
from datetime import datetime
from typing import Any, Final
from urllib.parse import parse_qs

from edge.events import Event, parse_timestamp
from edge.pipeline.hashing import (
    hash_mobile,
    hash_text,
    is_sha256,
    normalize_text,
    plausible_mobile,
)
from edge.pipeline.mapping import Literal, Mapping, Source
from edge.pipeline.paths import MISSING, Path
from edge.upstreams.base import Mapped, Scalar, UserValue

CURRENCY: Final = re.compile(r"[A-Z]{3}")
GENDERS: Final[MappingABC[str, str]] = {
    "m": "m", "male": "m", "man": "m",
    "f": "f", "female": "f", "woman": "f",
}  # fmt: skip
PERSONAS_AUDIENCE_CLASSES: Final = frozenset({"audience", "journey_step"})


def first_present(sources: tuple[Source, ...], document: MappingABC[str, Any]) -> Any:
    """The first source with a usable value: strings trimmed, blanks and nulls skipped."""
    for source in sources:
        kind = type(source)
        if kind is Path:
            value: Any = source.get(document)  # type: ignore[union-attr]
        elif kind is Literal:
            value = source.value  # type: ignore[union-attr]
        else:
            value = _query_parameter(source.path.get(document), source.names)  # type: ignore[union-attr]
        if type(value) is str:
            value = value.strip()
            if value:
                return value
        elif value is not MISSING and value is not None:
            return value
    return MISSING


def _query_parameter(value: Any, names: tuple[str, ...]) -> Any:
    """Reads `?a=1&rtid=x` and whole URLs alike; parse_qs does the URL-decoding."""
    if not isinstance(value, str):
        return MISSING
    query = value.split("?", 1)[1] if "?" in value else value
    found = parse_qs(query.split("#", 1)[0])
    for name in names:
        if found.get(name):
            return found[name][-1]
    return MISSING


def resolve(event: Event, mapping: Mapping, phone_region: str) -> Mapped:
    """Resolve every field of `mapping` from `event`."""
    body = event.body
    fields_ = mapping.fields

    def get(name: str) -> Any:
        return first_present(fields_[name], body)

    timestamp = get("timestamp")
    stamp = parse_timestamp(timestamp)
    mapped = Mapped(
        mapping=mapping.name,
        message_id=_text(get("message_id")) or event.message_id,
        timestamp_ms=stamp if stamp is not None else event.timestamp_ms,
        event_type=mapping.event_type,
    )
    if stamp is None and timestamp is not MISSING:
        mapped.warnings.append("timestamp: unreadable, the event's own timestamp was used")
    _conversion(mapped, get)
    for name, sources in mapping.custom_attributes.items():
        value = _extra(mapped, f"custom attribute {name!r}", sources, body)
        if value is not None:
            mapped.custom_attributes[name] = value
    _audience(mapped, mapping, body)
    _identities(mapped, mapping, get, phone_region)
    for name, sources in mapping.user_attributes.items():
        user_value = _user_extra(mapped, f"user attribute {name!r}", sources, body)
        if user_value is not None:
            mapped.user_attributes[name] = user_value
    _device(mapped, get)
    return mapped


def _conversion(mapped: Mapped, get: Any) -> None:
    mapped.conversion_type = _text(get("conversion_type"))
    mapped.confirmation_ref = _text(get("confirmation_ref"))
    amount = get("amount")
    if amount is not MISSING:
        mapped.amount = _number(amount)
        if mapped.amount is None:
            mapped.warnings.append(f"amount: {amount!r} is not a number; left out")
    currency = get("currency")
    if currency is not MISSING:
        code = str(currency).strip().upper()
        if CURRENCY.fullmatch(code):
            mapped.currency = code
        else:
            mapped.warnings.append(f"currency: {currency!r} is not an ISO 4217 code; left out")


def _identities(mapped: Mapped, mapping: Mapping, get: Any, region: str) -> None:
    hashing = mapping.hashing
    email = _text(get("email"))
    if email is not None:
        if is_sha256(email) or hashing.get("email"):
            mapped.email_sha256 = hash_text(email)
        else:
            mapped.email = normalize_text(email)
    mapped.customer_id = _text(get("customer_id"))
    mapped.click_id = _text(get("click_id"))
    attributes = mapped.user_attributes
    for name, key in (("first_name", "firstname"), ("last_name", "lastname")):
        _personal(attributes, get(name), key, f"{key}sha256", hashing.get(name), hash_text)
    mobile = _text(get("mobile"))
    if mobile is not None:
        _mobile(mapped, mobile, hashing.get("mobile"), region)
    _personal(
        attributes, get("billing_zip"), "billingzipcode", "billingzipsha256",
        hashing.get("billing_zip"), hash_text,
    )  # fmt: skip
    dob = get("dob")
    if dob is not MISSING:
        normal = _dob(dob)
        if normal is None:
            mapped.warnings.append(f"dob: {dob!r} is not a date; left out")
        else:
            attributes["dob"] = normal
    gender = get("gender")
    if gender is not MISSING:
        code = GENDERS.get(str(gender).strip().lower())
        if code is None:
            mapped.warnings.append(f"gender: {gender!r} is neither male nor female; left out")
        else:
            attributes["gender"] = code


def _personal(
    attributes: dict[str, UserValue],
    value: Any,
    plain_key: str,
    hashed_key: str,
    hash_it: bool | None,
    hasher: Any,
) -> None:
    text = _text(value)
    if text is None:
        return
    if hash_it or is_sha256(text):
        attributes[hashed_key] = hasher(text)
    else:
        attributes[plain_key] = text


def _mobile(mapped: Mapped, text: str, hash_it: bool | None, region: str) -> None:
    """The mobile, plain or hashed, only when it is a plausible phone number (or pre-hashed):
    a placeholder such as "n/a" or "-" would hash to a value shared by unrelated customers.
    The warning says what is wrong, not the value: warnings are shown to operators."""
    if hash_it or is_sha256(text):
        digest = hash_mobile(text, region)
        if digest is not None:
            mapped.user_attributes["mobilesha256"] = digest
            return
    elif plausible_mobile(text, region) is not None:
        mapped.user_attributes["mobile"] = text
        return
    mapped.warnings.append("mobile: not a plausible phone number; left out")


def _device(mapped: Mapped, get: Any) -> None:
    mapped.ip = _text(get("ip"))
    mapped.user_agent = _text(get("user_agent"))
    device_type = _text(get("device_type"))
    mapped.device_type = device_type.lower() if device_type else None
    advertising_id = _text(get("advertising_id"))
    device_id = _text(get("device_id"))
    if mapped.device_type == "ios":
        mapped.idfa, mapped.idfv = advertising_id, device_id
    elif mapped.device_type == "android":
        mapped.gaid, mapped.android_uuid = advertising_id, device_id


def _audience(mapped: Mapped, mapping: Mapping, body: MappingABC[str, Any]) -> None:
    """Audience data: the mapping's paths when given, else Engage's or the custom properties."""
    name: Any = MISSING
    membership: Any = MISSING
    if "audience_name" in mapping.overridden:
        name = first_present(mapping.fields["audience_name"], body)
        membership = first_present(mapping.fields["audience_membership"], body)
    else:
        personas = body.get("context", {}).get("personas", {})
        key = personas.get("computation_key") if isinstance(personas, dict) else None
        audience_class = personas.get("computation_class") if isinstance(personas, dict) else None
        if isinstance(key, str) and key and _text(audience_class) in PERSONAS_AUDIENCE_CLASSES:
            name = key
            membership = _first_of(body, ("properties", "traits"), key)
        else:
            name = _first_of(body, ("properties", "traits"), "audience_name")
            membership = _first_of(body, ("properties", "traits"), "audience_membership")
    if name is MISSING or (isinstance(name, str) and not name.strip()):
        return
    member = _boolean(membership)
    if member is None:
        mapped.warnings.append(
            f"audience {name!r}: membership {membership!r} is not true or false; no update sent"
        )
        return
    mapped.audience_name = str(name).strip()
    mapped.audience_member = member


def _extra(
    mapped: Mapped, label: str, sources: tuple[Source, ...], body: MappingABC[str, Any]
) -> Scalar | None:
    """A custom attribute's value: a scalar, else None (a list or object left out, warned)."""
    value = first_present(sources, body)
    if value is MISSING:
        return None
    if isinstance(value, dict | list):
        mapped.warnings.append(
            f"{label}: only scalar values can be sent, not {type(value).__name__}; left out"
        )
        return None
    scalar: Scalar = value
    return scalar


def _user_extra(
    mapped: Mapped, label: str, sources: tuple[Source, ...], body: MappingABC[str, Any]
) -> UserValue | None:
    """A user attribute's value: a scalar, or a list of strings (trimmed, blanks and nulls
    dropped, omitted when nothing is left, as a blank value is); None for what cannot be sent
    (an object, a list holding anything but strings), with a warning."""
    value = first_present(sources, body)
    if value is MISSING:
        return None
    if isinstance(value, list):
        strings: list[str] = []
        for item in value:
            if isinstance(item, str):
                if item.strip():
                    strings.append(item.strip())
            elif item is not None:
                mapped.warnings.append(
                    f"{label}: a list is sent only when its items are strings, not "
                    f"{type(item).__name__}; left out"
                )
                return None
        return strings or None
    if isinstance(value, dict):
        mapped.warnings.append(
            f"{label}: only scalars and lists of strings can be sent, not dict; left out"
        )
        return None
    scalar: Scalar = value
    return scalar


def _first_of(body: MappingABC[str, Any], containers: tuple[str, ...], key: str) -> Any:
    for container in containers:
        holder = body.get(container)
        if isinstance(holder, dict) and holder.get(key) is not None:
            return holder[key]
    return MISSING


def _text(value: Any) -> str | None:
    if value is MISSING or value is None or isinstance(value, dict | list):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    return text or None


def _number(value: Any) -> int | float | None:
    """Amounts stay numbers (0 included, which Segment drops); numeric text becomes a number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
        if not math.isfinite(number):
            return None
        return int(number) if number.is_integer() and "." not in value else number
    return None


def _boolean(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"true", "false"}:
        return value.strip().lower() == "true"
    return None


def _dob(value: Any) -> str | None:
    """YYYYMMDD from a date or datetime (ISO 8601, also with slashes), or YYYYMMDD text."""
    text = str(value).strip().replace("/", "-")
    if len(text) == 8 and text.isascii() and text.isdigit():
        text = f"{text[:4]}-{text[4:6]}-{text[6:]}"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return f"{moment.year:04d}{moment.month:02d}{moment.day:02d}"
