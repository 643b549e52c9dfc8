"""Normalization and SHA-256 hashing of personal data, by Rokt's rules.

Rokt matches hashes, so a hash is only useful when both sides normalized the value the same way
before hashing: email and names lowercased and trimmed, a mobile number reduced to the digits of
its national number (`5551234567`: no spaces, dashes or country code). Segment hashes the raw
phone string, which can never match; here a real phone-number library does the reduction, and
says when a value is no plausible phone number at all ("n/a", "-", a stray digit): such a value
has nothing to hash, since the hash of "" or "1" would be one shared by unrelated customers.

A value that already is 64 hexadecimal characters is taken as pre-hashed: it is never hashed
again, only lower-cased, and it always goes to the hashed key.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from typing import Final

import phonenumbers

SHA256_HEX: Final = re.compile(r"[0-9a-fA-F]{64}")


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def is_sha256(value: str) -> bool:
    return SHA256_HEX.fullmatch(value) is not None


def normalize_text(value: str) -> str:
    """Emails, names, zip codes: lowercased and trimmed (Rokt's rule for all text it hashes)."""
    return value.strip().lower()


@lru_cache(maxsize=4096)
def plausible_mobile(value: str, region: str) -> str | None:
    """The digits of a plausible phone number's national number, what Rokt's hash is made of
    ('+1 (323) 867-5309' → '3238675309'), or None for a value that is no plausible number.

    A number without a country code is read as one of `region`. Plausible means possible for
    its country (the library's `is_possible_number`: a length its numbers can have), not known
    to be assigned. A SHA-256 (pre-hashed) value is no phone number: check `is_sha256` first.
    """
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return str(phonenumbers.national_significant_number(number))


def hash_text(value: str) -> str:
    """SHA-256 of an email, name or zip code after normalization; pre-hashed values kept."""
    text = value.strip()
    return text.lower() if is_sha256(text) else sha256_hex(normalize_text(text))


def hash_mobile(value: str, region: str) -> str | None:
    """SHA-256 of a mobile number's national digits; pre-hashed values kept; None when the
    value is no plausible phone number."""
    text = value.strip()
    if is_sha256(text):
        return text.lower()
    national = plausible_mobile(text, region)
    return None if national is None else sha256_hex(national)
