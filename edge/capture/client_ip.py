"""The client's IP address and scheme, believing forwarding headers only from trusted proxies.

The socket peer is the client unless the peer is in `ROKT_EDGE_TRUSTED_PROXIES`. Then one header
is read, the one the proxy writes (`ROKT_EDGE_CLIENT_IP_HEADER`): `X-Forwarded-For` (nginx, AWS
load balancers, Cloudflare, most CDNs), `Forwarded` (RFC 7239), `CF-Connecting-IP` or
`True-Client-IP`. Only that one: a proxy passes the client's own copies of the others through
untouched, and anyone can write anything there. In a hop list the right hop is the first one from
the right that is not itself a trusted proxy: hops further left were written by the sender.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from functools import lru_cache

from edge.settings import IPNetwork

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


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
    peer: str | None,
    headers: Mapping[str, str],
    proxies: tuple[IPNetwork, ...],
    header: str = "x-forwarded-for",
) -> str | None:
    """The client's address as text (IPv6 in its canonical compressed form). From a trusted
    proxy without a usable `header`, the proxy itself is the best known address."""
    if not peer:
        return None
    if not _trusted_peer(peer, proxies):
        return _text(peer)
    peer_address = parse_ip(peer)
    value = headers.get(header)
    address: IPAddress | None = None
    if not value:
        pass
    elif header == "x-forwarded-for":
        address = _pick(value.split(","), proxies)
    elif header == "forwarded":
        address = _pick(_forwarded_for(value), proxies)
    else:
        address = parse_ip(value)
    return str(address if address is not None else peer_address)


@lru_cache(maxsize=4096)  # the same peers, request after request
def _trusted_peer(peer: str, proxies: tuple[IPNetwork, ...]) -> bool:
    address = parse_ip(peer)
    return address is not None and _trusted(address, proxies)


@lru_cache(maxsize=4096)
def _text(peer: str) -> str | None:
    """A peer's address in canonical text (an unparseable one: none)."""
    address = parse_ip(peer)
    return str(address) if address is not None else None


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
