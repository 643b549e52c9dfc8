"""Normalization and hashing, checked against known SHA-256 digests."""

from __future__ import annotations

import pytest

from edge.pipeline.hashing import hash_mobile, hash_text, is_sha256, plausible_mobile, sha256_hex

TEST_EMAIL_SHA256 = "973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b"


def test_sha256_is_lowercase_hex_of_utf8() -> None:
    assert sha256_hex("test@example.com") == TEST_EMAIL_SHA256
    assert sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


@pytest.mark.parametrize(
    ("value", "digest"),
    [
        # email: lowercased and trimmed first
        (" User@Example.com ", "b4c9a289323b21a01c3e940f150eb9b8c542587f1abfd8f0e1cc1ffc5e475514"),
        ("TEST@example.com", TEST_EMAIL_SHA256),
        # names: lowercased and trimmed
        ("John", "96d9632f363564cc3032521409cf22a852f2032eec099ed5967c0d000cec607a"),
        (" DOE ", "799ef92a11af918e3fb741df42934f3b568ed2d93ac1df74f1b8d41a27932a6f"),
        # billing zip
        ("12345", "5994471abb01112afcc18159f6cc74b4f511b99806da59b3caf5a9c173cacfc5"),
    ],
)
def test_text_is_normalized_then_hashed(value: str, digest: str) -> None:
    assert hash_text(value) == digest


@pytest.mark.parametrize(
    ("value", "region", "national"),
    [
        ("+1 (323) 867-5309", "US", "3238675309"),
        ("323-867-5309", "US", "3238675309"),
        ("(323) 867 5309", "US", "3238675309"),
        ("+44 20 7946 0958", "US", "2079460958"),  # the country code decides, not the region
        ("020 7946 0958", "GB", "2079460958"),  # the national trunk 0 is not part of the number
        ("+39 06 1234 5678", "US", "0612345678"),  # Italy keeps its leading zero
    ],
)
def test_mobile_numbers_become_national_digits(value: str, region: str, national: str) -> None:
    assert plausible_mobile(value, region) == national


@pytest.mark.parametrize("value", ["n/a", "-", "x", "1", "12", "", "not a phone 12-34"])
def test_a_value_that_is_no_plausible_phone_number_has_no_digits_to_hash(value: str) -> None:
    # Given what shops put in a phone field when there is none: placeholders, a stray digit
    # When it is read as a phone number of the shop's region
    national = plausible_mobile(value, "US")

    # Then there is nothing to hash (SHA-256 of "" or "1" would be shared by unrelated people)
    assert national is None
    assert hash_mobile(value, "US") is None


def test_mobile_hash_matches_rokts_form() -> None:
    expected = "d3d2ab878af46f2dae0bc9179c5ee11e590b64c8a151171a10cace70de9baae7"
    assert hash_mobile("+1 (323) 867-5309", "US") == expected
    assert hash_mobile("323.867.5309", "US") == expected
    assert sha256_hex("3238675309") == expected


def test_pre_hashed_values_are_never_hashed_again() -> None:
    upper = TEST_EMAIL_SHA256.upper()
    assert is_sha256(upper)
    assert hash_text(f" {upper} ") == TEST_EMAIL_SHA256
    assert hash_mobile(TEST_EMAIL_SHA256, "US") == TEST_EMAIL_SHA256


def test_near_misses_are_not_taken_as_hashes() -> None:
    assert not is_sha256(TEST_EMAIL_SHA256[:-1])
    assert not is_sha256(TEST_EMAIL_SHA256[:-1] + "g")
