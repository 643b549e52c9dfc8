"""Normalization and SHA-256 hashing of personal data, by Rokt's rules.

Rokt matches hashes, so a hash is only useful when both sides normalized the value the same way
before hashing: email and names lowercased and trimmed, a mobile number reduced to the digits of
its national number (`5551234567`: no spaces, dashes or country code). Segment hashes the raw
phone string, which can never match; here a real phone-number library does the reduction.

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
NON_DIGITS: Final = re.compile(r"\D")


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def is_sha256(value: str) -> bool:
    return SHA256_HEX.fullmatch(value) is not None


def normalize_text(value: str) -> str:
    """Emails, names, zip codes: lowercased and trimmed (Rokt's rule for all text it hashes)."""
    return value.strip().lower()


@lru_cache(maxsize=4096)
def normalize_mobile(value: str, region: str) -> str:
    """The digits of the national number: '+1 (323) 867-5309' → '3238675309'.

    A number without a country code is read as one of `region`. A value the library cannot read
    as a phone number keeps its digits only, which is still closer to Rokt's form than the raw text.
    """
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return NON_DIGITS.sub("", value)
    return str(phonenumbers.national_significant_number(number))


def hash_text(value: str) -> str:
    """SHA-256 of an email, name or zip code after normalization; pre-hashed values kept."""
    text = value.strip()
    return text.lower() if is_sha256(text) else sha256_hex(normalize_text(text))


def hash_mobile(value: str, region: str) -> str:
    """SHA-256 of a mobile number's national digits; pre-hashed values kept."""
    text = value.strip()
    return text.lower() if is_sha256(text) else sha256_hex(normalize_mobile(text, region))
