"""What the delivery loop needs to know about each upstream, behind one small interface.

The sender (`sender.py`) is the same for both contracts: claim, pack, POST, then act on the
`Verdict` (`verdict.py`). What differs is each upstream's `Wire` (`edge.upstreams.*.wire`), which
the sender is given (`WireFactory`: the upstream's `wire`):

                  CapiWire (contract A)               EventApiWire (contract B)
    not sent      older than 30 days (the data-age    outside the Event API's window (18
                  limit): dead-lettered `expired`     months back): `expired`; a stored body
                                                      that is no Event API event: `rejected`
    grouping      ≤ 100 batches and ≤ 256 KB          ≤ 100 events
    request       /events (one batch),                /v2/events (/v1/events with v1 auth),
                  /bulkevents [a,b,…]                 {"accountId": …, "events": [a,b,…]}
    auth          Basic key:secret, on the client     Basic rpub:rsec, or a v1 bearer token and
                                                      an Idempotency-Key (`auth`)
    answers       `capi.responses.classify`           `event_api.responses.classify`

Both build a request's body from the stored JSON texts joined, never decoding and re-encoding
them; contract B also decodes each event once, for its time and its clientEventId (an answer's
unprocessed records name events by it; v1's Idempotency-Key is made from them).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Protocol

import httpx

from edge.delivery.verdict import Verdict
from edge.settings import Settings
from edge.store.outbox import Claims
from edge.store.values import DeadLetter, ItemId

# Contract A's data-age limit; the sender forgets deliveries older than that, whatever the upstream.
MAX_AGE_SECONDS: Final = 30 * 24 * 3600


class Request:
    """Claimed items sent as one upstream request, in order: the path, the exact body, and
    (contract B) the decoded events, against which the answer is read."""

    __slots__ = ("claims", "content", "events", "path")

    def __init__(
        self,
        claims: Claims,
        path: str,
        content: bytes,
        events: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        self.claims = claims
        self.path = path
        self.content = content
        self.events = events

    @property
    def ids(self) -> Sequence[ItemId]:
        return self.claims.ids


class Wire(Protocol):
    """One upstream contract, as the sender sees it."""

    name: str

    @property
    def client_auth(self) -> tuple[str, str] | None:
        """Basic credentials for every request of the client, or None (the wire sends its own)."""
        ...

    def prepare(self, claims: Claims, now: float) -> tuple[list[DeadLetter], list[Request]]:
        """Dead letters for the claims that may no longer be sent (`now`: epoch seconds), and
        the rest packed into requests within the upstream's limits, in order."""
        ...

    def split(self, request: Request) -> tuple[Request, Request]:
        """The request's first and second halves (to isolate a bad item)."""
        ...

    def bind(self, client: httpx.AsyncClient) -> None:
        """Get ready to send through `client`; called before the first `send` (not in dry run)."""
        ...

    async def send(self, client: httpx.AsyncClient, request: Request) -> Verdict:
        """POST the request and judge the answer; raises httpx.HTTPError (timeouts included)
        when no answer came or it could not be read."""
        ...


# An upstream's wire for these settings; the clock gives epoch seconds (for Retry-After dates).
WireFactory = Callable[[Settings, Callable[[], float]], Wire]
