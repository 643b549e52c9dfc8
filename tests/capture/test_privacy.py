"""Consent and GPC decide whether an event may be forwarded."""

from __future__ import annotations

from typing import Any

import pytest

from edge.capture.privacy import GPC, NO_CONSENT, consent_denied, privacy_skip


@pytest.mark.parametrize(
    ("consent", "denied"),
    [
        ({"ads": False}, True),
        ({"ads": True}, False),
        ({"categoryPreferences": {"Advertising": False, "Analytics": True}}, True),
        ({"categoryPreferences": {"Marketing": False}}, True),
        ({"categoryPreferences": {"Analytics": False}}, False),
        ({"ads": "no"}, False),  # only an explicit false is a denial
        (None, False),
        ("denied", False),
    ],
)
def test_explicit_advertising_denials(consent: Any, denied: bool) -> None:
    body = {"type": "track", "context": {"consent": consent}}
    assert consent_denied(body) is denied


def test_gpc_header_skips_when_honoured() -> None:
    body: dict[str, Any] = {"type": "page"}
    assert privacy_skip(body, "1", honor_gpc=True, honor_consent=True) == GPC
    assert privacy_skip(body, "1", honor_gpc=False, honor_consent=True) is None
    assert privacy_skip(body, "0", honor_gpc=True, honor_consent=True) is None
    assert privacy_skip(body, None, honor_gpc=True, honor_consent=True) is None


def test_consent_denial_skips_when_honoured() -> None:
    body = {"type": "track", "context": {"consent": {"ads": False}}}
    assert privacy_skip(body, None, honor_gpc=True, honor_consent=True) == NO_CONSENT
    assert privacy_skip(body, None, honor_gpc=True, honor_consent=False) is None
