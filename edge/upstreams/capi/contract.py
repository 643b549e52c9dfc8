"""Contract A: Rokt's Conversions API, in mParticle's batch format (docs/upstreams.md).

`build_batch` turns one `Mapped` into one batch (one user, its audience event first, then its
conversion) and enforces locally what the upstream would reject for the whole batch: advertising
ids that are not UUIDs, non-scalar or over-long attributes (a conversion type over the value
limit refuses the conversion, saying so), too many attributes, an over-sized batch, no
identifier at all. `pack` groups batches into requests within the upstream's limits (by the
one rule the sender packs stored batches with, `edge.delivery.packing`).
"""

from __future__ import annotations

import uuid
from typing import Any, Final, TypeVar

from edge.delivery import packing
from edge.jsontext import encode
from edge.upstreams.base import Mapped, Refused, Scalar, UpstreamRequest, UserValue

REQUIRED_IDENTIFIER: Final = (
    "At least one of the following is required: iOS Advertising ID, Android Advertising ID, "
    "iOS ID for Vendor, Android UUID, Email, Customer ID, RTID."
)
ROKT_MODULE_ID: Final = "1277"  # Rokt's integration id in mParticle
MAX_ATTRIBUTES: Final = 100
MAX_NAME_CHARS: Final = 256
MAX_VALUE_CHARS: Final = 4096
MAX_BATCH_BYTES: Final = 128 * 1024
MAX_BODY_BYTES: Final = 256 * 1024
MAX_BATCHES_PER_REQUEST: Final = 100
EVENTS_PATH: Final = "/events"  # one batch
BULK_EVENTS_PATH: Final = "/bulkevents"  # a JSON array of batches
# The upstream parses these as System.Guid: one bad value gets the whole batch rejected.
UUID_DEVICE_FIELDS: Final = ("ios_advertising_id", "android_advertising_id", "ios_idfv")
# What counts for the required-identifier rule (IP and user agent alone do not).
IDENTIFYING_IDENTITIES: Final = frozenset({"email", "other", "customerid"})
IDENTIFYING_DEVICE: Final = frozenset(
    {"ios_advertising_id", "android_advertising_id", "ios_idfv", "android_uuid"}
)
SOURCE_REQUEST_NAMESPACE: Final = uuid.UUID("6f1d0c1e-4b1a-4f3e-9a43-2c6a0f0e7d11")

Value = TypeVar("Value", bound=UserValue)  # a custom attribute's (Scalar) or a user attribute's


def source_request_id(mapping: str, message_id: str) -> str:
    """Deterministic per (mapping, event), so a retried batch is de-duplicated upstream."""
    return str(uuid.uuid5(SOURCE_REQUEST_NAMESPACE, f"{mapping}\n{message_id}"))


def build_batch(mapped: Mapped, *, click_id_in_other2: bool = True) -> dict[str, Any]:
    """One contract A batch; raises Refused when nothing can or may be sent."""
    events: list[dict[str, Any]] = []
    user_attributes = _limited(mapped, "user attribute", mapped.user_attributes)
    if mapped.audience_name is not None and mapped.audience_member is not None:
        audience_key = f"segment_{mapped.audience_name}"
        if len(audience_key) <= MAX_NAME_CHARS:
            user_attributes[audience_key] = mapped.audience_member
        else:
            mapped.warnings.append(f"user attribute {audience_key[:40]!r}…: name over 256 chars")
        audience: dict[str, Scalar] = {
            "audience_name": mapped.audience_name,
            "status": _status(mapped),
        }
        events.append(
            _event(
                mapped, "other", "audiencemembershipupdate", f"aud_{mapped.message_id}", audience
            )
        )
    too_long = _conversion_type_too_long(mapped.conversion_type)
    if too_long is None:
        conversion = _conversion_attributes(mapped)
        if "conversiontype" in conversion:
            events.append(
                _event(mapped, "transaction", "conversion", mapped.message_id, conversion)
            )
    elif events:
        mapped.warnings.append(
            f"{too_long}; the conversion is left out, the audience update is sent"
        )
        mapped.conversion_type = None  # what was built holds no conversion (nor its dedup key)
    else:
        raise Refused(too_long)
    if not events:
        raise Refused("nothing to send: no conversion type and no audience membership")
    if len(user_attributes) > MAX_ATTRIBUTES:
        dropped = list(user_attributes)[MAX_ATTRIBUTES:]
        mapped.warnings.append(f"more than {MAX_ATTRIBUTES} user attributes; left out: {dropped}")
        user_attributes = dict(list(user_attributes.items())[:MAX_ATTRIBUTES])
    device_info = _device_info(mapped)
    identities = _user_identities(mapped, click_id_in_other2)
    identified = mapped.click_id or identities.keys() & IDENTIFYING_IDENTITIES
    if not (identified or device_info.keys() & IDENTIFYING_DEVICE):
        raise Refused(REQUIRED_IDENTIFIER)
    batch: dict[str, Any] = {
        "environment": "production",
        "source_request_id": source_request_id(mapped.mapping, mapped.message_id),
        "user_identities": identities,
    }
    if user_attributes:
        batch["user_attributes"] = user_attributes
    if device_info:
        batch["device_info"] = device_info
    if mapped.ip:
        batch["ip"] = mapped.ip
    if mapped.click_id:
        batch["integration_attributes"] = {
            ROKT_MODULE_ID: {"passbackconversiontrackingid": mapped.click_id}
        }
    batch["events"] = events
    if _size_bound(batch) > MAX_BATCH_BYTES:
        size = len(encode(batch))
        if size > MAX_BATCH_BYTES:
            raise Refused(f"the batch is {size:,} bytes, over the {MAX_BATCH_BYTES:,}-byte limit")
    return batch


def _size_bound(value: Any) -> int:
    """An upper bound of the encoded size, far cheaper than encoding (repr is C code): JSON
    takes at most four bytes per character of repr: a character repr shows as itself is at
    most four UTF-8 bytes, and one it escapes (at least four characters, as \\x00) becomes at
    most six bytes (\\u0000). Almost every batch is far below the limit by this bound, so it is
    encoded only when the bound comes near."""
    return 4 * len(repr(value))


def _conversion_type_too_long(conversion_type: str | None) -> str | None:
    """Why a conversion type cannot be sent (over the value limit), or None when it can."""
    if conversion_type is None or len(conversion_type) <= MAX_VALUE_CHARS:
        return None
    return (
        f"conversion type: {len(conversion_type):,} characters, over Rokt's "
        f"{MAX_VALUE_CHARS:,}-character limit"
    )


def _status(mapped: Mapped) -> str:
    return "add" if mapped.audience_member else "drop"


def _event(
    mapped: Mapped, kind: str, name: str, message_id: str, attributes: dict[str, Scalar]
) -> dict[str, Any]:
    return {
        "event_type": "custom_event",
        "data": {
            "custom_event_type": kind,
            "event_name": name,
            "source_message_id": message_id,
            "timestamp_unixtime_ms": mapped.timestamp_ms,
            "custom_attributes": attributes,
        },
    }


def _conversion_attributes(mapped: Mapped) -> dict[str, Scalar]:
    standard: dict[str, Scalar | None] = {
        "conversiontype": mapped.conversion_type,
        "confirmationref": mapped.confirmation_ref,
        "amount": mapped.amount,
        "currency": mapped.currency,
    }
    attributes = {key: value for key, value in standard.items() if value is not None}
    attributes.update(mapped.custom_attributes)
    attributes = _limited(mapped, "custom attribute", attributes)
    if len(attributes) > MAX_ATTRIBUTES:
        dropped = list(attributes)[MAX_ATTRIBUTES:]
        mapped.warnings.append(f"more than {MAX_ATTRIBUTES} custom attributes; left out: {dropped}")
        attributes = dict(list(attributes.items())[:MAX_ATTRIBUTES])
    return attributes


def _limited(mapped: Mapped, label: str, attributes: dict[str, Value]) -> dict[str, Value]:
    """Attributes within the name and value limits (each string of a list within the value
    limit); the others dropped with a warning."""
    kept: dict[str, Value] = {}
    for name, value in attributes.items():
        if len(name) > MAX_NAME_CHARS:
            mapped.warnings.append(f"{label} {name[:40]!r}…: name over {MAX_NAME_CHARS} chars")
        elif _over_long(value):
            mapped.warnings.append(f"{label} {name!r}: value over {MAX_VALUE_CHARS} chars")
        else:
            kept[name] = value
    return kept


def _over_long(value: UserValue) -> bool:
    if isinstance(value, str):
        return len(value) > MAX_VALUE_CHARS
    return isinstance(value, list) and any(len(item) > MAX_VALUE_CHARS for item in value)


def _user_identities(mapped: Mapped, click_id_in_other2: bool) -> dict[str, str]:
    identities: dict[str, str] = {}
    if mapped.email_sha256:
        identities["other"] = mapped.email_sha256
    elif mapped.email:
        identities["email"] = mapped.email
    if mapped.customer_id:
        identities["customerid"] = mapped.customer_id
    if mapped.click_id and click_id_in_other2:
        identities["other2"] = mapped.click_id
    return identities


def _device_info(mapped: Mapped) -> dict[str, str]:
    candidates = {
        "http_header_user_agent": mapped.user_agent,
        "ios_advertising_id": mapped.idfa,
        "android_advertising_id": mapped.gaid,
        "ios_idfv": mapped.idfv,
        "android_uuid": mapped.android_uuid,
    }
    info: dict[str, str] = {}
    for key, value in candidates.items():
        if value is None:
            continue
        if key in UUID_DEVICE_FIELDS and not _is_uuid(value):
            mapped.warnings.append(f"device_info.{key}: {value!r} is not a UUID; left out")
            continue
        info[key] = value
    return info


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


class CapiContract:
    """Contract A as the pipeline sees it: build one body, pack bodies."""

    name = "capi"

    def __init__(self, *, click_id_in_other2: bool = True) -> None:
        self.click_id_in_other2 = click_id_in_other2

    def build(self, mapped: Mapped) -> dict[str, Any]:
        return build_batch(mapped, click_id_in_other2=self.click_id_in_other2)

    def pack(self, bodies: list[dict[str, Any]]) -> list[UpstreamRequest]:
        return pack(bodies)


def path_for(batches: int) -> str:
    """Where a request of this many batches goes: `/events` for one, `/bulkevents` for more."""
    return EVENTS_PATH if batches == 1 else BULK_EVENTS_PATH


def pack(batches: list[dict[str, Any]]) -> list[UpstreamRequest]:
    """Requests of at most 100 batches and 256 KB each, in order, packed by their encoded
    sizes as the sender packs the stored texts (`packing.pack`); one batch goes to /events."""
    sizes = [len(encode(batch)) for batch in batches]
    requests = []
    for group in packing.pack(sizes, MAX_BATCHES_PER_REQUEST, MAX_BODY_BYTES):
        count = group.stop - group.start
        body = batches[group.start] if count == 1 else batches[group]
        requests.append(UpstreamRequest(path_for(count), body, count))
    return requests
