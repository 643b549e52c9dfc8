"""The client's IP address and scheme, believing forwarding headers only from trusted proxies.

The socket peer is the client unless the peer is in `ROKT_EDGE_TRUSTED_PROXIES`. Then the
forwarding headers are read, in this order, first usable wins: `Forwarded` (RFC 7239),
`X-Forwarded-For`, `CF-Connecting-IP`, `True-Client-IP`. In a hop list the right hop is the first
one from the right that is not itself a trusted proxy: hops further left were written by
whoever sent the request, and anyone can write anything there.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Final

from edge.settings import IPNetwork

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
SINGLE_VALUE_HEADERS: Final = ("cf-connecting-ip", "true-client-ip")


@lru_cache(maxsize=4096)  # the same peers and proxies, request after request
def parse_ip(text: str) -> IPAddress | None:
    """An address from a header value: quotes, IPv6 brackets and ports are stripped."""
    value = text.strip().strip('"')
    if value.startswith("["):  # "[2001:db8::1]:4711"
        value = value[1 : value.find("]")] if "]" in value else ""
    elif value.count(":") == 1:  # "192.0.2.1:8080"
        value = value.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def _trusted(address: IPAddress, proxies: Iterable[IPNetwork]) -> bool:
    return any(address in network for network in proxies)


def _forwarded_for(value: str) -> list[str]:
    hops = []
    for element in value.split(","):
        for pair in element.split(";"):
            name, _, item = pair.partition("=")
            if name.strip().lower() == "for":
                hops.append(item)
    return hops


def _pick(hops: list[str], proxies: tuple[IPNetwork, ...]) -> IPAddress | None:
    """The rightmost hop that is not a trusted proxy; None when the list is unusable."""
    chosen: IPAddress | None = None
    for hop in reversed(hops):
        address = parse_ip(hop)
        if address is None:
            return None
        chosen = address
        if not _trusted(address, proxies):
            return address
    return chosen  # every hop is a trusted proxy: the leftmost is the best we know


def client_ip(
    peer: str | None, headers: Mapping[str, str], proxies: tuple[IPNetwork, ...]
) -> str | None:
    """The client's address as text (IPv6 in its canonical compressed form)."""
    peer_address = parse_ip(peer) if peer else None
    if peer_address is None or not _trusted(peer_address, proxies):
        return str(peer_address) if peer_address else None
    forwarded = headers.get("forwarded")
    if forwarded:
        address = _pick(_forwarded_for(forwarded), proxies)
        if address is not None:
            return str(address)
    forwarded_for = headers.get("x-forwarded-for")
    if forwarded_for:
        address = _pick(forwarded_for.split(","), proxies)
        if address is not None:
            return str(address)
    for name in SINGLE_VALUE_HEADERS:
        value = headers.get(name)
        address = parse_ip(value) if value else None
        if address is not None:
            return str(address)
    return str(peer_address)


def request_hosts(
    peer: str | None, headers: Mapping[str, str], proxies: tuple[IPNetwork, ...]
) -> list[str]:
    """The hosts the browser may have addressed: `Host`, and from a trusted proxy (which often
    forwards to the edge under another name) `X-Forwarded-Host` and `Forwarded: host=` too."""
    hosts = [headers.get("host", "")]
    peer_address = parse_ip(peer) if peer else None
    if peer_address is not None and _trusted(peer_address, proxies):
        hosts.append(headers.get("x-forwarded-host", "").split(",")[0])
        for pair in headers.get("forwarded", "").split(",")[0].split(";"):
            name, _, value = pair.partition("=")
            if name.strip().lower() == "host":
                hosts.append(value.strip().strip('"'))
    return [host.strip().lower() for host in hosts if host.strip()]


def is_https(
    scheme: str, peer: str | None, headers: Mapping[str, str], proxies: tuple[IPNetwork, ...]
) -> bool:
    """Whether the browser's connection is https: the request's own scheme, or, from a trusted
    proxy, `X-Forwarded-Proto` or `Forwarded: proto=`."""
    if scheme == "https":
        return True
    peer_address = parse_ip(peer) if peer else None
    if peer_address is None or not _trusted(peer_address, proxies):
        return False
    proto = headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    if not proto:
        for element in headers.get("forwarded", "").split(",")[:1]:
            for pair in element.split(";"):
                name, _, value = pair.partition("=")
                if name.strip().lower() == "proto":
                    proto = value.strip().strip('"').lower()
    return proto == "https"
