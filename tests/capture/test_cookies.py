"""The visitor cookie: signed, and ignored (never an error) when tampered with or expired."""

from __future__ import annotations

import json
import time

import pytest
from itsdangerous import TimestampSigner
from itsdangerous.encoding import base64_encode

from edge.capture.cookies import SALT, CookieJar, CookiePolicy, Visitor

POLICY = CookiePolicy("rokt_edge", 3600)


def signed(secret: str, data: object) -> str:
    """A cookie value signed the way the jar signs, with any key and payload."""
    return TimestampSigner(secret, salt=SALT).sign(base64_encode(json.dumps(data))).decode()


def value_of(header: str) -> str:
    return header.split(";", 1)[0].split("=", 1)[1]


def test_a_visitor_round_trips() -> None:
    jar = CookieJar("secret", POLICY)
    visitor = Visitor("anon-1", "click-1", 1700000000)
    assert jar.read(value_of(jar.header(visitor, secure=False))) == visitor


def test_the_cookie_attributes() -> None:
    jar = CookieJar("secret", CookiePolicy("rt", 86400, domain="shop.example"))
    header = jar.header(Visitor("a"), secure=True)
    assert header.startswith("rt=")
    assert header.split("; ")[1:] == [
        "Path=/",
        "Max-Age=86400",
        "HttpOnly",
        "SameSite=Lax",
        "Domain=shop.example",
        "Secure",
    ]
    assert "Secure" not in CookieJar("secret", POLICY).header(Visitor("a"), secure=False)


@pytest.mark.parametrize(
    "value",
    ["", "garbage", "eyJhIjoiYSJ9.AAAAAA.tampered", "a.b.c.d"],
)
def test_bad_values_are_ignored(value: str) -> None:
    assert CookieJar("secret", POLICY).read(value) == Visitor()


def test_a_tampered_payload_is_ignored() -> None:
    jar = CookieJar("secret", POLICY)
    genuine = value_of(jar.header(Visitor("anon-1", "click-1"), secure=False))
    forged = signed("another key", {"a": "x", "c": "forged"})
    assert jar.read(forged) == Visitor()
    payload, rest = genuine.split(".", 1)
    assert jar.read(payload[:-2] + "AA." + rest) == Visitor()


def test_a_cookie_signed_with_another_key_is_ignored() -> None:
    old = CookieJar("old key", POLICY).header(Visitor("anon-1"), secure=False)
    assert CookieJar("new key", POLICY).read(value_of(old)) == Visitor()


def test_an_expired_cookie_is_ignored() -> None:
    jar = CookieJar("secret", CookiePolicy("rokt_edge", 1))
    value = value_of(jar.header(Visitor("anon-1"), secure=False))
    time.sleep(2.1)  # itsdangerous timestamps have one-second resolution
    assert jar.read(value) == Visitor()


def test_unexpected_payload_shapes_are_ignored() -> None:
    jar = CookieJar("secret", POLICY)
    assert jar.read(signed("secret", ["a"])) == Visitor()
    assert jar.read(signed("secret", {"a": 5, "c": "", "t": True})) == Visitor()
    assert jar.read(signed("secret", {"a": "anon"})) == Visitor("anon")
    not_json = TimestampSigner("secret", salt=SALT).sign(base64_encode(b"{nope")).decode()
    assert jar.read(not_json) == Visitor()


def test_cookies_signed_by_plain_itsdangerous_are_read_the_same() -> None:
    # given a visitor cookie signed the way earlier versions signed it (itsdangerous as it comes)
    policy = CookiePolicy("rokt_edge", 86400)
    payload = base64_encode(json.dumps({"a": "anon-1", "c": "click-1", "t": 1_700_000_000}))
    value = TimestampSigner("k" * 32, salt=SALT).sign(payload).decode()
    # then the jar, with its faster signer, reads it, and signs the same way itself
    jar = CookieJar("k" * 32, policy)
    assert jar.read(value) == Visitor("anon-1", "click-1", 1_700_000_000)
    ours = jar.header(Visitor("anon-1"), secure=False).split(";")[0].split("=", 1)[1]
    assert TimestampSigner("k" * 32, salt=SALT).unsign(ours) is not None
