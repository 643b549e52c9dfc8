"""What every upstream is, as the rest of the edge sees it: one `Upstream` object per package.

An upstream package (`capi`, `event_api`) exports `UPSTREAM`: its name (the value of
`ROKT_EDGE_UPSTREAM`), its default base URL, its `Contract` (what the pipeline asks of it: one
body per `Mapped` event, and bodies packed into requests for previews) and its `Wire` (what the
sender asks of it: `edge.delivery.wire`). `edge.upstreams` finds them by name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from edge.delivery.wire import WireFactory
from edge.settings import Settings

Scalar = str | int | float | bool
# A user attribute's value: contract A takes lists of strings there too (custom attributes, on
# the conversion, take scalars only).
UserValue = Scalar | list[str]


class Refused(Exception):
    """An upstream contract cannot send this event as it is; `reason` says why, for people."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(slots=True)
class Mapped:
    """Everything one mapping resolved from one event, normalized and hashed, in Rokt's terms."""

    mapping: str
    message_id: str
    timestamp_ms: int
    event_type: str | None = None  # the mapping's choice for contract B's eventType
    conversion_type: str | None = None
    confirmation_ref: str | None = None
    amount: int | float | None = None
    currency: str | None = None
    custom_attributes: dict[str, Scalar] = field(default_factory=dict)
    audience_name: str | None = None
    audience_member: bool | None = None
    email: str | None = None
    email_sha256: str | None = None
    customer_id: str | None = None
    click_id: str | None = None
    user_attributes: dict[str, UserValue] = field(default_factory=dict)
    ip: str | None = None
    user_agent: str | None = None
    device_type: str | None = None
    idfa: str | None = None
    gaid: str | None = None
    idfv: str | None = None
    android_uuid: str | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    path: str  # below the upstream base URL
    body: Any  # the request's JSON body
    batches: int  # how many mapped events' bodies it holds


class Contract(Protocol):
    """An upstream's wire format: one body per mapped event, and bodies packed into requests."""

    name: str

    def build(self, mapped: Mapped) -> dict[str, Any]:
        """The body for one mapped event; raises Refused when it cannot or may not be sent."""
        ...

    def pack(self, bodies: list[dict[str, Any]]) -> list[UpstreamRequest]:
        """Requests (path below the base URL, body) within the upstream's limits, in order."""
        ...


# The contract for these settings; the second argument names the first mapping, for a contract
# whose ids depend on it (contract B keeps plain message ids as clientEventId for it only).
ContractFactory = Callable[[Settings, str | None], Contract]


@dataclass(frozen=True, slots=True)
class Upstream:
    """One Rokt API: everything the edge needs to know of it, found through `edge.upstreams`."""

    name: str  # as ROKT_EDGE_UPSTREAM names it
    default_url: str  # the base URL when ROKT_EDGE_ROKT_URL is unset (`edge.settings.DEFAULT_URLS`)
    contract: ContractFactory
    wire: WireFactory
