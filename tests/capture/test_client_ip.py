"""Client IP and scheme: forwarding headers are believed only from trusted proxies."""

from __future__ import annotations

import ipaddress

import pytest

from edge.capture.client_ip import client_ip, is_https, parse_ip

LB = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8"))


def test_without_trusted_proxies_the_peer_is_the_client_and_headers_are_ignored() -> None:
    spoofed = {
        "x-forwarded-for": "1.1.1.1",
        "forwarded": "for=2.2.2.2",
        "true-client-ip": "3.3.3.3",
    }
    assert client_ip("203.0.113.7", spoofed, ()) == "203.0.113.7"


def test_a_spoofed_header_from_an_untrusted_peer_is_ignored() -> None:
    assert client_ip("203.0.113.7", {"x-forwarded-for": "1.1.1.1"}, LB) == "203.0.113.7"


def test_x_forwarded_for_from_a_trusted_proxy_gives_the_rightmost_untrusted_hop() -> None:
    # The client wrote "6.6.6.6" itself; the proxy appended the real address it saw.
    headers = {"x-forwarded-for": "6.6.6.6, 198.51.100.4, 10.0.0.2"}
    assert client_ip("10.0.0.1", headers, LB) == "198.51.100.4"


def test_forwarded_when_the_proxy_writes_it_and_ipv6_is_kept_whole() -> None:
    headers = {
        "forwarded": 'for="[2001:db8:cafe::17]:4711";proto=https, for=10.0.0.3',
        "x-forwarded-for": "198.51.100.4",
    }
    assert client_ip("10.0.0.1", headers, LB, "forwarded") == "2001:db8:cafe::17"
    assert client_ip("10.0.0.1", headers, LB, "x-forwarded-for") == "198.51.100.4"


def test_only_the_header_the_proxy_writes_is_read() -> None:
    # nginx appends to X-Forwarded-For and passes the client's own Forwarded through untouched:
    # a client that writes Forwarded itself must not choose its address.
    headers = {"forwarded": "for=1.2.3.4", "x-forwarded-for": "198.51.100.4"}
    assert client_ip("10.0.0.1", headers, LB) == "198.51.100.4"
    assert client_ip("10.0.0.1", {"forwarded": "for=1.2.3.4"}, LB) == "10.0.0.1"


@pytest.mark.parametrize("name", ["cf-connecting-ip", "true-client-ip"])
def test_cdn_headers_from_a_trusted_proxy(name: str) -> None:
    assert client_ip("10.0.0.1", {name: "2001:db8::5"}, LB, name) == "2001:db8::5"
    assert client_ip("10.0.0.1", {name: "2001:db8::5"}, LB) == "10.0.0.1"


def test_a_trusted_proxy_without_headers_is_itself_the_client() -> None:
    assert client_ip("10.0.0.1", {}, LB) == "10.0.0.1"


def test_an_unusable_header_leaves_the_proxy_as_the_best_known_address() -> None:
    headers = {"x-forwarded-for": "not-an-ip", "cf-connecting-ip": "198.51.100.9"}
    assert client_ip("10.0.0.1", headers, LB) == "10.0.0.1"


def test_every_hop_trusted_gives_the_leftmost() -> None:
    assert client_ip("10.0.0.1", {"x-forwarded-for": "10.0.0.9, 10.0.0.2"}, LB) == "10.0.0.9"


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("192.0.2.1:8080", "192.0.2.1"),
        ('"[2001:db8::1]:4711"', "2001:db8::1"),
        ("2001:DB8:0:0:0:0:0:1", "2001:db8::1"),
        ("::ffff:192.0.2.1", "192.0.2.1"),
        ("unknown", None),
        ("[2001:db8::1", None),
    ],
)
def test_parse_ip(text: str, address: str | None) -> None:
    parsed = parse_ip(text)
    assert (str(parsed) if parsed else None) == address


def test_https_from_the_request_or_a_trusted_proxy() -> None:
    assert is_https("https", "203.0.113.7", {}, ())
    assert not is_https("http", "203.0.113.7", {"x-forwarded-proto": "https"}, LB)
    assert is_https("http", "10.0.0.1", {"x-forwarded-proto": "https"}, LB)
    assert is_https("http", "10.0.0.1", {"forwarded": "for=1.2.3.4;proto=https"}, LB)
    assert not is_https("http", "10.0.0.1", {"x-forwarded-proto": "http"}, LB)
