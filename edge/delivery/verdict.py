"""What an upstream's answer to one request means for the events in it, for any contract.

Each contract has a pure classifier (status, headers, body, the request's events) → `Verdict`,
so one sender can deliver to either upstream. The kinds, and what the sender does:

    DELIVERED          every event accepted: mark them delivered
    ALREADY_DELIVERED  the upstream had this request already (409 on a repeated idempotency
                       key): mark them delivered
    PARTIAL            accepted except `failed` (request index → reason): dead-letter those
                       with their reason, mark the others delivered
    REJECTED           the request as a whole was refused as invalid: with one event, `failed`
                       is {0: reason} (dead-letter it); with more, split the request and send
                       the halves, to isolate the bad events
    PAUSE              credentials or configuration are wrong (401, 403, a wrong URL): keep the
                       events, stop sending until an operator acts or a probe succeeds; after a
                       401 with renewable credentials (v1 tokens), renew once and resend first
    RETRY              a transient failure (429, 5xx, the network): resend later, not before
                       `retry_after` seconds when the upstream said so

Every verdict keeps the upstream's trace id (`X-Rokt-Trace-Id`), so that each failure can be
logged with it, and a `message` for people: at most `MESSAGE_CHARS` of it are recorded, and
`redact` hides what it may quote of the data sent before it is logged.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

MESSAGE_CHARS: Final = 500
# Values an upstream message may quote from the data sent: anything in double quotes, anything in
# single quotes except paths ('[1].ip') and .NET type names ('System.Guid'), which say where the
# problem is; emails; and phone-like runs of digits.
_QUOTED = re.compile(r"\"[^\"]*\"|'[^']*'|\S+@\S+|\+?\d[\d ().-]{6,}\d")
_KEPT = ("'[", "'System.")


class Kind(enum.Enum):
    DELIVERED = "delivered"
    ALREADY_DELIVERED = "already_delivered"
    PARTIAL = "partial"
    REJECTED = "rejected"
    PAUSE = "pause"
    RETRY = "retry"


@dataclass(frozen=True, slots=True)
class Verdict:
    kind: Kind
    status: int | None = None  # the HTTP status; None when no answer came (network error)
    failed: Mapping[int, str] = field(default_factory=dict)  # request index → dead-letter reason
    retry_after: float | None = None  # seconds, when the upstream asked for a delay
    trace_id: str | None = None
    message: str = ""

    @property
    def delivered(self) -> bool:
        """Whether the events not in `failed` count as delivered."""
        return self.kind in (Kind.DELIVERED, Kind.ALREADY_DELIVERED, Kind.PARTIAL)


def redact(message: str) -> str:
    """An upstream message fit for a log: quoted values and anything like an email hidden."""
    # Quoted segments are matched in order, so a kept one's closing quote is never taken for
    # the opening quote of the next.
    return _QUOTED.sub(lambda found: found[0] if found[0].startswith(_KEPT) else "…", message)
