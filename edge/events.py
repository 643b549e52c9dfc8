"""The canonical event: the Segment spec shape that every source produces and one pipeline reads.

`parse_event` checks an incoming object and returns an `Event` whose body is safe for the mapping
to read: the known fields have the right kinds, a `messageId` exists (generated when absent, then
stored, so it stays stable across retries and replays) and so does a `timestamp`. Everything else
in the body is kept as it came, because mappings may read any path.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import random
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

EVENT_TYPES: Final = ("track", "identify", "page", "screen", "group", "alias")
OBJECT_FIELDS: Final = ("properties", "traits", "context", "integrations")
CONTEXT_OBJECTS: Final = ("page", "traits", "device", "personas", "consent")
ID_FIELDS: Final = ("messageId", "userId", "anonymousId", "groupId", "previousId")

# Epoch numbers at or above this are milliseconds: 1e11 seconds is the year 5138, while
# 1e11 milliseconds is 1973, well before any event this service will see.
EPOCH_MS_THRESHOLD: Final = 100_000_000_000
# 9999-12-31T23:59:59.999Z, the last moment a datetime holds; later numbers are not times (and
# would overflow the store's 64-bit integers).
MAX_TIMESTAMP_MS: Final = 253_402_300_799_999
EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


_ids = random.Random()  # seeded from the OS; again in every forked child, so no two share ids
os.register_at_fork(after_in_child=_ids.seed)


def new_message_id() -> str:
    """A random version-4 UUID. Drawn from a generator the OS seeds rather than from
    os.urandom per id, which costs ~50 µs a call on some VMs: ids need to be unique, not secret."""
    return str(uuid.UUID(int=_ids.getrandbits(128), version=4))


ARRIVAL_IDS: Final = uuid.UUID("5f4c7a2e-7e1b-4b8e-9d3a-0c2f4e6a8b1d")


class ArrivalDefaults:
    """What `parse_event` fills in for an event of a stored request (`edge.processing`): its time
    of arrival, and a message id derived from the request and the event's place in it. Intake
    and processing read the same body with the same defaults, so they see the same events.

    An event's time is also put right for the sender's clock (`on_the_edge_clock`), from the
    request's `sentAt` (Segment's libraries send one) or the event's own."""

    def __init__(self, received_at: float, body: bytes, sent_at: Any = None) -> None:
        self.received_at = received_at
        self.body = body
        self.sent_at_ms = parse_timestamp(sent_at)
        self._digest: str | None = None
        self._check_text = may_hold_surrogates(body)

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.received_at, UTC)

    def message_id(self, index: int) -> str:
        if self._digest is None:
            self._digest = hashlib.sha256(self.body).hexdigest()
        return str(uuid.uuid5(ARRIVAL_IDS, f"{self.received_at!r}/{index}/{self._digest}"))

    def parse(self, raw: Any, index: int) -> Event:
        """The event `raw`, the `index`th of the request; EventError when it cannot be used,
        text that is no text included (what could not be stored or sent is refused here)."""
        if self._check_text and not is_text(raw):
            raise EventError("", NOT_TEXT, index)
        event = parse_event(raw, index, now=self.now, new_id=lambda: self.message_id(index))
        if raw.get("timestamp") is not None:  # else it is the time of arrival already
            sent_at_ms = parse_timestamp(event.body.get("sentAt")) or self.sent_at_ms
            on_the_edge_clock(event.body, round(self.received_at * 1000), sent_at_ms)
        return event


def on_the_edge_clock(body: dict[str, Any], received_ms: int, sent_at_ms: int | None) -> None:
    """An event's `timestamp` moved from the sender's clock to the edge's, in place.

    Device clocks are often minutes or hours off, and Rokt reads the time to attribute a
    conversion to its click (the Event API refuses anything over 5 minutes ahead of its own
    clock). With `sentAt`, the sender's time of sending, Segment's correction applies:
    timestamp = receivedAt - (sentAt - timestamp). Without it, only a time after the edge
    received the event is certainly wrong, and becomes the time it was received. The time as
    sent is kept as `originalTimestamp`, as Segment keeps it."""
    stamp = parse_timestamp(body["timestamp"])
    if stamp is None:  # parse_event refuses such an event: not one of its bodies
        return
    corrected = stamp if sent_at_ms is None else stamp - (sent_at_ms - received_ms)
    corrected = max(0, min(corrected, received_ms))
    if corrected != stamp:
        body["originalTimestamp"] = body["timestamp"]
        body["timestamp"] = iso_ms(corrected)


def iso_ms(stamp: int) -> str:
    """Epoch milliseconds (0 to `MAX_TIMESTAMP_MS`) as `iso_text` writes them."""
    seconds, milliseconds = divmod(stamp, 1000)
    return f"{_second(seconds)}.{milliseconds:03d}Z"


@functools.lru_cache(maxsize=256)  # events arriving together share their second
def _second(seconds: int) -> str:
    return (EPOCH + timedelta(seconds=seconds)).isoformat(timespec="seconds").removesuffix("+00:00")


def iso_text(moment: datetime) -> str:
    """A UTC time as ISO 8601 text to the millisecond (`2025-01-31T12:00:00.000Z`, as
    analytics.js writes times)."""
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class EventError(ValueError):
    """An event that cannot be used; the message says which event and which field."""

    def __init__(self, field: str, problem: str, index: int | None = None) -> None:
        where = "event" if index is None else f"event {index}"
        super().__init__(f"{where}: {field}: {problem}" if field else f"{where}: {problem}")
        self.field = field
        self.problem = problem
        self.index = index


@dataclass(frozen=True, slots=True)
class Event:
    body: dict[str, Any]

    @property
    def type(self) -> str:
        return str(self.body["type"])

    @property
    def message_id(self) -> str:
        return str(self.body["messageId"])

    @property
    def timestamp_ms(self) -> int:
        stamp = parse_timestamp(self.body["timestamp"])
        assert stamp is not None, "parse_event guarantees a readable timestamp"
        return stamp


def parse_event(
    raw: Any,
    index: int | None = None,
    *,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    new_id: Callable[[], str] = lambda: new_message_id(),
) -> Event:
    """Validate one incoming event; raise EventError naming the field that is wrong."""
    if not isinstance(raw, dict):
        raise EventError("", f"must be a JSON object, got {_kind(raw)}", index)
    body = dict(raw)
    kind = body.get("type")
    if kind not in EVENT_TYPES:
        expected = ", ".join(EVENT_TYPES)
        found = "missing" if kind is None else repr(kind)
        raise EventError("type", f"must be one of {expected}; found {found}", index)
    if kind == "track":
        name = body.get("event")
        if not isinstance(name, str) or not name.strip():
            raise EventError("event", "a track call needs a non-empty event name", index)
    for name in ID_FIELDS:
        body[name] = _identifier(body.get(name), name, index)
        if body[name] is None:
            del body[name]
    for name in OBJECT_FIELDS:
        _require_object(body, name, name, index)
    context = body.get("context")
    if isinstance(context, dict):
        # A copy, so that dropping null sub-objects never touches the caller's data.
        context = body["context"] = dict(context)
        for name in CONTEXT_OBJECTS:
            _require_object(context, name, f"context.{name}", index)
    if "messageId" not in body:
        body["messageId"] = new_id()
    if body.get("timestamp") is None:
        body["timestamp"] = iso_text(now())
    elif parse_timestamp(body["timestamp"]) is None:
        raise EventError(
            "timestamp",
            f"{body['timestamp']!r} is neither an ISO 8601 time nor epoch seconds or milliseconds",
            index,
        )
    return Event(body)


# A \\uD800-\\uDFFF escape in JSON text (half of a surrogate pair, or a lone one), or such a
# code point written as UTF-8 bytes (ED A0 80 to ED BF BF: never valid UTF-8, but Python's JSON
# reader lets them through as lone surrogates).
_SURROGATE: Final = re.compile(rb"\\[uU][dD][89a-fA-F]|\xed[\xa0-\xbf]")
NOT_TEXT: Final = (
    "holds a string with an unpaired surrogate (such as \\ud800, or its UTF-8 bytes ED A0 80), "
    "which is not text"
)


def parse_json(raw: bytes) -> Any:
    """A request body's JSON. NaN, Infinity and -Infinity, which Python's reader takes, are not
    JSON: refused (ValueError), as every other reader and Rokt would refuse them."""
    return json.loads(raw, parse_constant=_not_json)


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON value (write a number or a string)")


def may_hold_surrogates(raw: bytes) -> bool:
    """Whether JSON text may decode to strings that are not text (a lone surrogate); only such
    a body needs each event checked (`is_text`). Emoji sent as escaped pairs match too."""
    return _SURROGATE.search(raw) is not None


def is_text(value: Any) -> bool:
    """Whether every string in a decoded JSON value can be stored and sent as UTF-8."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def parse_timestamp(value: Any) -> int | None:
    """Milliseconds since the epoch from ISO 8601 text or epoch seconds/milliseconds; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip()
        if text[4:5] == "-":  # 2025-01-31...: ISO first (a failed float() costs an exception)
            stamp = _iso_ms(text)
            if stamp is not None:
                return stamp
        try:
            number = float(text)
        except ValueError:
            return _iso_ms(text)
        value = number
    if isinstance(value, int | float) and math.isfinite(value) and value >= 0:
        stamp = int(value) if value >= EPOCH_MS_THRESHOLD else round(value * 1000)
        return stamp if stamp <= MAX_TIMESTAMP_MS else None
    return None


def _iso_ms(text: str) -> int | None:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return round(moment.timestamp() * 1000)


def _identifier(value: Any, name: str, index: int | None) -> str | None:
    """Ids may arrive as numbers from some libraries; they are kept as text. Blank means absent."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise EventError(name, f"must be a string, got {_kind(value)}", index)
    text = value.strip() if isinstance(value, str) else str(value)
    return text or None


def _require_object(container: dict[str, Any], key: str, field: str, index: int | None) -> None:
    value = container.get(key)
    if value is None:
        container.pop(key, None)
    elif not isinstance(value, dict):
        raise EventError(field, f"must be an object, got {_kind(value)}", index)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
