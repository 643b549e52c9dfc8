"""Contract B: Rokt's Event API.

`build_event` turns one `Mapped` into one EventObject and enforces locally what the Event API
would reject: an `eventTime` outside its window (18 months back, 5 minutes ahead), a name with
the reserved `rokt.` prefix, over-long names, values and event types (an over-long conversion
type refuses the event rather than send a conversion without it), and an event Rokt cannot
attribute (no email, hashed email or click id). `pack` puts at most 100 events in a request.
Which field goes where in `objectData`, and what is left out: docs/upstreams.md#what-is-sent.

`clientEventId` is the message id for the first mapping's events (a UUID5 of it when longer than
36 characters) and a UUID5 of mapping and message id for every other mapping's, so that two
mappings of one event never share an id, and an id never depends on which mappings matched.
The body is built once and stored, so the id is stable across retries.
"""

from __future__ import annotations

import calendar
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Context, Decimal
from typing import Any, Final

from edge.settings import EventApiAuth
from edge.upstreams.base import Mapped, Refused, Scalar, UpstreamRequest, UserValue
from edge.useragent import parse_user_agent

API_VERSION: Final = "2020-05-21"
DEFAULT_EVENT_TYPE: Final = "conversion"
MAX_EVENTS_PER_REQUEST: Final = 100
MAX_ACCOUNT_ID_CHARS: Final = 64
MAX_CLIENT_EVENT_ID_CHARS: Final = 36
MAX_EVENT_TYPE_CHARS: Final = 128
MAX_NAME_CHARS: Final = 256
MAX_VALUE_CHARS: Final = 65536
RESERVED_PREFIX: Final = "rokt."  # case-insensitive
MAX_AGE_MONTHS: Final = 18
MAX_AHEAD: Final = timedelta(minutes=5)
PATHS: Final[Mapping[str, str]] = {"v2": "/v2/events", "v1": "/v1/events"}
# Only previews ever show it: with credentials, settings refuse to start without an account id.
ACCOUNT_ID_UNSET: Final = "(unset: ROKT_EDGE_ACCOUNT_ID)"
CLIENT_EVENT_ID_NAMESPACE: Final = uuid.UUID("3c0f5a0e-8f0e-4d7a-9a5e-5b2f6a7d1e42")
REQUIRED_IDENTIFIER: Final = (
    "The Rokt Event API needs at least one of: email, emailsha256 (hashed email), "
    "passbackconversiontrackingid (the click id)."
)
AUDIENCE_NEEDS_CAPI: Final = "audience updates need contract A (capi); the Event API has none"
NOTHING_TO_SEND: Final = "nothing to send: no conversion type"
GENDER_CODES: Final[Mapping[str, str]] = {"m": "M", "f": "F"}
# Names the standard fields fill (lower-cased): an extra with one of them is left out.
STANDARD_NAMES: Final = frozenset(
    {
        "email", "emailsha256", "passbackconversiontrackingid", "amount", "currency",
        "conversiontype", "confirmationref", "firstname", "firstnamesha256", "lastname",
        "lastnamesha256", "mobile", "mobilesha256", "zipcode", "dob", "gender", "ipaddress",
        "useragent", "devicetype", "os", "osversion", "browser", "browserversion",
    }
)  # fmt: skip
# Mapped.user_attributes keys that standard fields fill; the rest are the mapping's extras.
_PERSONAL: Final = (
    ("firstname", "firstname"),
    ("firstnamesha256", "firstnamesha256"),
    ("lastname", "lastname"),
    ("lastnamesha256", "lastnamesha256"),
    ("mobile", "mobile"),
    ("mobilesha256", "mobilesha256"),
    ("billingzipcode", "zipcode"),
    ("dob", "dob"),
)
_NOT_EXTRAS: Final = frozenset({key for key, _ in _PERSONAL} | {"billingzipsha256", "gender"})


def client_event_id(mapping: str, message_id: str, *, plain: bool) -> str:
    """At most 36 characters, deterministic per (mapping, event); see the module's note."""
    if plain:
        if len(message_id) <= MAX_CLIENT_EVENT_ID_CHARS:
            return message_id
        return str(uuid.uuid5(CLIENT_EVENT_ID_NAMESPACE, message_id))
    return str(uuid.uuid5(CLIENT_EVENT_ID_NAMESPACE, f"{mapping}\n{message_id}"))


def event_time(timestamp_ms: int) -> str:
    """UTC RFC 3339 with milliseconds, as the reference writes it: 2020-05-22T10:21:29.339Z."""
    moment = datetime.fromtimestamp(timestamp_ms // 1000, UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{timestamp_ms % 1000:03d}Z"


def parse_event_time(text: str) -> int:
    """Epoch milliseconds of an `eventTime`; ValueError when it is not RFC 3339."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone")
    return round(moment.timestamp() * 1000)


def check_time_window(timestamp_ms: int, now: float) -> None:
    """Raise Refused when the Event API would reject this time (`now` in epoch seconds).

    The sender calls this again at send time: an event may age out while it waits.
    """
    current = datetime.fromtimestamp(now, UTC)
    if timestamp_ms > (current + MAX_AHEAD).timestamp() * 1000:
        raise Refused(
            f"eventTime {_shown(timestamp_ms)} is more than 5 minutes in the future; the Event "
            "API rejects it (is the source's clock right?)"
        )
    if timestamp_ms < _months_before(current, MAX_AGE_MONTHS).timestamp() * 1000:
        raise Refused(
            f"eventTime {_shown(timestamp_ms)} is older than {MAX_AGE_MONTHS} months; the Event "
            "API rejects it"
        )


def outside_time_window(event: Mapping[str, Any], now: float) -> str | None:
    """For the sender: why a built EventObject may no longer be sent, or None when it may."""
    try:
        check_time_window(parse_event_time(str(event.get("eventTime"))), now)
    except ValueError:
        return f"eventTime {event.get('eventTime')!r} is not an RFC 3339 time"
    except Refused as refusal:
        return refusal.reason
    return None


def _months_before(moment: datetime, months: int) -> datetime:
    year, month = divmod(moment.year * 12 + moment.month - 1 - months, 12)
    day = min(moment.day, calendar.monthrange(year, month + 1)[1])
    return moment.replace(year=year, month=month + 1, day=day)


def _shown(timestamp_ms: int) -> str:
    try:
        return event_time(timestamp_ms)
    except (OverflowError, ValueError, OSError):
        return f"{timestamp_ms} ms"


def build_event(
    mapped: Mapped,
    *,
    plain_id: bool,
    now: float,
    metadata: Sequence[tuple[str, str]] = (),
    default_event_type: str = DEFAULT_EVENT_TYPE,
) -> dict[str, Any]:
    """One EventObject; raises Refused when it cannot or may not be sent."""
    if mapped.conversion_type is None:
        raise Refused(AUDIENCE_NEEDS_CAPI if mapped.audience_name else NOTHING_TO_SEND)
    if mapped.audience_name is not None:
        mapped.warnings.append(
            f"audience {mapped.audience_name!r}: not sent; {AUDIENCE_NEEDS_CAPI}"
        )
    event_type = mapped.event_type or default_event_type
    if len(event_type) > MAX_EVENT_TYPE_CHARS:
        raise Refused(f"eventType {event_type[:40]!r}…: over {MAX_EVENT_TYPE_CHARS} characters")
    if event_type == DEFAULT_EVENT_TYPE and len(mapped.conversion_type) > MAX_VALUE_CHARS:
        # Sent as conversiontype only with this event type (see `_object_data`)
        raise Refused(
            f"conversion type: {len(mapped.conversion_type):,} characters, over the Event "
            f"API's {MAX_VALUE_CHARS:,}-character limit"
        )
    check_time_window(mapped.timestamp_ms, now)
    data = _object_data(mapped, event_type)
    names = {entry["name"] for entry in data}
    if not names & {"email", "emailsha256", "passbackconversiontrackingid"}:
        raise Refused(REQUIRED_IDENTIFIER)
    event: dict[str, Any] = {
        "clientEventId": client_event_id(mapped.mapping, mapped.message_id, plain=plain_id),
        "eventType": event_type,
        "eventTime": event_time(mapped.timestamp_ms),
    }
    if metadata:
        event["metaData"] = [{"name": name, "value": value} for name, value in metadata]
    event["objectData"] = data
    return event


def _object_data(mapped: Mapped, event_type: str) -> list[dict[str, str]]:
    standard: list[tuple[str, Scalar | None]] = [
        ("email", mapped.email),
        ("emailsha256", mapped.email_sha256),
        ("passbackconversiontrackingid", mapped.click_id),
        ("amount", _amount(mapped.amount) if mapped.amount is not None else None),
        ("currency", mapped.currency),
        # The reference: "only applicable if the default conversion event type is provided".
        ("conversiontype", mapped.conversion_type if event_type == DEFAULT_EVENT_TYPE else None),
        ("confirmationref", mapped.confirmation_ref),
    ]
    extras = _extras(mapped, "custom attribute", mapped.custom_attributes)
    attributes = mapped.user_attributes
    personal: list[tuple[str, Scalar | None]] = [
        (name, value)
        for key, name in _PERSONAL
        if not isinstance(value := attributes.get(key), list)  # `fields` sets no list here
    ]
    if "billingzipsha256" in attributes:
        mapped.warnings.append(
            "billing zip: the Event API has no hashed zip code (zipcode is plain text); left out"
        )
    gender = attributes.get("gender")
    personal.append(("gender", GENDER_CODES.get(str(gender)) if gender is not None else None))
    user_extras = _extras(
        mapped,
        "user attribute",
        {key: value for key, value in attributes.items() if key not in _NOT_EXTRAS},
    )
    device: list[tuple[str, Scalar | None]] = [
        ("ipaddress", mapped.ip),
        ("useragent", mapped.user_agent),
    ]
    if mapped.user_agent is not None and len(mapped.user_agent) <= MAX_VALUE_CHARS:
        agent = parse_user_agent(mapped.user_agent)
        device += [
            ("DeviceType", agent.device_type),
            ("os", agent.os),
            ("osversion", agent.os_version),
            ("browser", agent.browser),
            ("browserversion", agent.browser_version),
        ]
    data: list[dict[str, str]] = []
    seen: set[str] = set()
    for name, value in standard + extras + personal + user_extras + device:
        if value is None:
            continue
        text = _text(value)
        if len(text) > MAX_VALUE_CHARS:
            mapped.warnings.append(f"{name}: value over {MAX_VALUE_CHARS:,} characters; left out")
        elif name.lower() in seen:  # only extras can repeat: a custom and a user attribute
            mapped.warnings.append(f"{name}: set twice by the mapping; the first value is sent")
        else:
            seen.add(name.lower())
            data.append({"name": name, "value": text})
    return data


def _extras(
    mapped: Mapped, label: str, attributes: Mapping[str, UserValue]
) -> list[tuple[str, Scalar | None]]:
    """A mapping's extra attributes; a reserved name refuses the event (it is a configuration
    mistake that would get every request rejected), other bad names are left out, and so is a
    user attribute's list of strings: every objectData value is one string, and the reference
    gives no way to send several (joining them would invent a format Rokt never documented)."""
    kept: list[tuple[str, Scalar | None]] = []
    for name, value in attributes.items():
        if name.lower().startswith(RESERVED_PREFIX):
            raise Refused(
                f"{label} {name!r}: the {RESERVED_PREFIX} name prefix is reserved for Rokt; "
                "rename it in the mapping"
            )
        if len(name) > MAX_NAME_CHARS:
            mapped.warnings.append(f"{label} {name[:40]!r}…: name over {MAX_NAME_CHARS} chars")
        elif name.lower() in STANDARD_NAMES:
            mapped.warnings.append(f"{label} {name!r}: a standard field has this name; left out")
        elif isinstance(value, list):
            mapped.warnings.append(
                f"{label} {name!r}: a list; the Event API sends single string values only "
                "(contract A sends lists); left out"
            )
        else:
            kept.append((name, value))
    return kept


def _amount(value: int | float) -> str:
    """Money with at least two decimals ("85.00", "99.99", "100.255"), as the reference shows."""
    number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    exponent = number.as_tuple().exponent
    if isinstance(exponent, int) and exponent > -2:
        # With the digits the number has: the default context's 28 cannot quantize 1e26.
        digits = Context(prec=max(28, number.adjusted() + 3))
        number = number.quantize(Decimal("0.01"), context=digits)
    return format(number, "f")


def _text(value: Scalar) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class EventApiContract:
    """Contract B as the pipeline sees it: build one event, pack events."""

    name = "event-api"

    def __init__(
        self,
        account_id: str | None,
        *,
        auth: EventApiAuth = "v2",
        plain_ids_for: str | None = None,
        metadata: Sequence[tuple[str, str]] = (),
        default_event_type: str = DEFAULT_EVENT_TYPE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`plain_ids_for` names the mapping whose events keep their message id as
        clientEventId (None: every mapping's are derived); `clock` gives epoch seconds."""
        if account_id is not None and not 0 < len(account_id) <= MAX_ACCOUNT_ID_CHARS:
            raise ValueError(f"account id: 1 to {MAX_ACCOUNT_ID_CHARS} characters")
        if not 0 < len(default_event_type) <= MAX_EVENT_TYPE_CHARS:
            raise ValueError(f"event type: 1 to {MAX_EVENT_TYPE_CHARS} characters")
        self.account_id = account_id
        self.path = PATHS[auth]
        self.plain_ids_for = plain_ids_for
        self.metadata = tuple(metadata)
        self.default_event_type = default_event_type
        self.clock = clock

    def build(self, mapped: Mapped) -> dict[str, Any]:
        return build_event(
            mapped,
            plain_id=mapped.mapping == self.plain_ids_for,
            now=self.clock(),
            metadata=self.metadata,
            default_event_type=self.default_event_type,
        )

    def pack(self, bodies: list[dict[str, Any]]) -> list[UpstreamRequest]:
        """Requests of at most 100 events each, in order (the Event API sets no byte limit)."""
        account = self.account_id or ACCOUNT_ID_UNSET
        return [
            UpstreamRequest(
                self.path,
                {"accountId": account, "events": bodies[start : start + MAX_EVENTS_PER_REQUEST]},
                len(bodies[start : start + MAX_EVENTS_PER_REQUEST]),
            )
            for start in range(0, len(bodies), MAX_EVENTS_PER_REQUEST)
        ]
