"""Remembered identifiers: a visitor's email and mobile, kept by the identity store as SHA-256 only.

Email is Rokt's strongest match key after the click id, yet a conversion often carries neither
email nor mobile: the customer gave them earlier (an identify at sign-up, a form). Each event's
email and mobile (read where the default mappings read them) are normalized by Rokt's rules and
hashed, and only the hashes reach the identity store. A later event of the same visitor that
lacks them gets the hashes in `context.traits`, where the mappings read them; being hashes, they
go to the hashed keys (`other` or `emailsha256`, `mobilesha256`). `context.rokt_edge` records
that they came from the identity store. `ROKT_EDGE_REMEMBER_IDENTIFIERS=false` turns this off.
"""

from __future__ import annotations

from typing import Any, Final

from edge.events import Event
from edge.pipeline.fields import first_present
from edge.pipeline.hashing import hash_text, is_sha256, plausible_mobile, sha256_hex
from edge.pipeline.mapping import DEFAULT_FIELDS
from edge.pipeline.paths import MISSING
from edge.store.values import Identity

EMAIL_SOURCES: Final = DEFAULT_FIELDS["email"]
MOBILE_SOURCES: Final = DEFAULT_FIELDS["mobile"]
FILLED: Final = "identity"


def _text(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def hashed_email(body: dict[str, Any]) -> str | None:
    """SHA-256 of the event's normalized email (as given when already a hash); None when it has
    none that looks like an email."""
    email = _text(first_present(EMAIL_SOURCES, body))
    if email is None or not (is_sha256(email) or "@" in email):
        return None
    return hash_text(email)


def hashed_mobile(body: dict[str, Any], region: str) -> str | None:
    """SHA-256 of the event's mobile's national digits; None when it has no plausible one."""
    value = first_present(MOBILE_SOURCES, body)
    mobile = _text(value) if not isinstance(value, int | float) else str(value)
    if mobile is None:
        return None
    if is_sha256(mobile):
        return mobile.lower()
    digits = plausible_mobile(mobile, region)
    return sha256_hex(digits) if digits is not None else None


def lacks_identifiers(body: dict[str, Any]) -> bool:
    """Whether the event lacks an email or a mobile that the identity store might know."""
    return (
        first_present(EMAIL_SOURCES, body) is MISSING
        or first_present(MOBILE_SOURCES, body) is MISSING
    )


def with_identifiers(event: Event, identity: Identity | None) -> Event:
    """The event with the identity store's hashed email and mobile where it has none (the same
    event when there is nothing to add). `context.rokt_edge` must exist: enrichment or stitching
    made it."""
    if identity is None or not (identity.email_sha256 or identity.mobile_sha256):
        return event
    body = event.body
    added: dict[str, str] = {}
    if identity.email_sha256 and first_present(EMAIL_SOURCES, body) is MISSING:
        added["email"] = identity.email_sha256
    if identity.mobile_sha256 and first_present(MOBILE_SOURCES, body) is MISSING:
        added["phone"] = identity.mobile_sha256
    if not added:
        return event
    body = dict(body)
    context = body["context"] = dict(body.get("context") or {})
    traits = context.get("traits")
    context["traits"] = {**(traits if isinstance(traits, dict) else {}), **added}
    context["rokt_edge"] = {
        **context.get("rokt_edge", {}),
        **dict.fromkeys(added, FILLED),
    }
    return Event(body)
