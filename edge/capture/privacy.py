"""Consent and Global Privacy Control: whether an event may be forwarded at all.

An event that may not be forwarded is still acknowledged (the browser did nothing wrong), and
recorded as skipped with its reason (`gpc` or `no-consent`), and neither its IP address nor its
user agent is stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

GPC: Final = "gpc"
NO_CONSENT: Final = "no-consent"
# Consent categories that cover advertising: the snippet's `ads`, and the names consent
# managers use in Segment's `context.consent.categoryPreferences`.
AD_CATEGORIES: Final = frozenset({"ads", "advertising", "marketing", "targeting"})


def consent_denied(event_body: Mapping[str, Any]) -> bool:
    """An explicit denial of advertising consent in `context.consent` (absent is not denial)."""
    context = event_body.get("context")
    consent = context.get("consent") if isinstance(context, dict) else None
    if not isinstance(consent, dict):
        return False
    preferences = consent.get("categoryPreferences")
    for source in (consent, preferences if isinstance(preferences, dict) else {}):
        for name, granted in source.items():
            if name.lower() in AD_CATEGORIES and granted is False:
                return True
    return False


def privacy_skip(
    event_body: Mapping[str, Any], gpc_header: str | None, *, honor_gpc: bool, honor_consent: bool
) -> str | None:
    """The reason this event may not be forwarded, or None when it may."""
    if honor_gpc and gpc_header is not None and gpc_header.strip() == "1":
        return GPC
    if honor_consent and consent_denied(event_body):
        return NO_CONSENT
    return None
