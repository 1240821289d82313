"""Who is on the other end: the client address behind trusted proxies, and the key that per-address
limits count it under.

A forwarded header is only as honest as whoever wrote it. Each proxy appends the address it
received the request from, so the header reads `client-supplied…, client, proxy1, …` and only the
entries appended by proxies we trust are true. Walking from the right: the peer, then each entry,
as long as the address we are looking at is a trusted proxy; the first one that is not is the
client. Everything to its left may be forged and is never read.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Literal

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
ForwardedHeader = Literal["x-forwarded-for", "forwarded"]
# Headers as a Starlette/multidict mapping (items() lists repeated headers) or ASGI raw pairs.
Headers = Mapping[str, str] | Iterable[tuple[bytes, bytes]]
UNKNOWN = "unknown"


class TrustedProxies:
    """The proxies whose forwarded header is believed, and which header they write."""

    def __init__(
        self, networks: Iterable[IPNetwork] = (), header: ForwardedHeader = "x-forwarded-for"
    ) -> None:
        self.networks = tuple(networks)
        self.header = header

    @classmethod
    def parse(cls, text: str, header: ForwardedHeader = "x-forwarded-for") -> TrustedProxies:
        """`"10.0.0.1, 10.1.0.0/16, fd00::/8"`; raises ValueError naming a bad entry."""
        networks: list[IPNetwork] = []
        for entry in text.split(","):
            entry = entry.strip()
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or CIDR network") from None
        return cls(networks, header)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def __contains__(self, address: object) -> bool:
        """`"10.0.0.7" in trusted`: the address (a string or an ipaddress object) is a proxy."""
        ip = parse_ip(address) if isinstance(address, str) else address
        if not isinstance(ip, ipaddress.IPv4Address | ipaddress.IPv6Address):
            return False
        return any(ip.version == net.version and ip in net for net in self.networks)


def parse_ip(text: str) -> IPAddress | None:
    """An address as proxies write it (`1.2.3.4`, `1.2.3.4:80`, `[::1]:80`, `"[::1]"`), or None."""
    text = text.strip().strip('"')
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]  # IPv4 with a port
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped  # a dual-stack socket's view of an IPv4 client
    return ip


def _values(headers: Headers, name: str) -> list[str]:
    pairs: Iterable[tuple[str | bytes, str | bytes]]
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    found = []
    for key, value in pairs:
        key_text = key.decode("latin-1") if isinstance(key, bytes) else key
        if key_text.lower() == name:
            found.append(value.decode("latin-1") if isinstance(value, bytes) else value)
    return found


def forwarded_hops(headers: Headers, header: ForwardedHeader) -> list[str]:
    """The addresses in the forwarded header, left (first hop) to right (nearest proxy)."""
    hops: list[str] = []
    for value in _values(headers, header):
        for element in value.split(","):
            if header == "x-forwarded-for":
                hops.append(element.strip())
                continue
            # RFC 7239: `for=192.0.2.60;proto=https;by=…` — an element without `for` is a hop
            # we cannot place, which stops the walk like any unreadable entry.
            node = ""
            for pair in element.split(";"):
                name, _, text = pair.partition("=")
                if name.strip().lower() == "for":
                    node = text.strip()
            hops.append(node)
    return hops


def client_address(peer: str | None, headers: Headers, trusted: TrustedProxies) -> str:
    """The client's address: the peer, unless the peer is a trusted proxy; then the right-most
    entry of the forwarded header that is not a trusted proxy. An entry that is no address (a
    proxy writing `unknown`, an obfuscated `for=_hidden`) ends the walk at the proxy that wrote
    it. When every entry is trusted, the left-most one."""
    current = parse_ip(peer) if peer else None
    if current is None:
        return peer or UNKNOWN
    if current not in trusted:
        return str(current)
    for hop in reversed(forwarded_hops(headers, trusted.header)):
        ip = parse_ip(hop)
        if ip is None:
            break
        current = ip
        if ip not in trusted:
            break
    return str(current)


def limit_key(address: str) -> str:
    """What per-address limits count an address under. IPv6 counts by /64: one subscriber
    usually holds a whole /64, so single IPv6 addresses would give an attacker billions of
    fresh buckets."""
    ip = parse_ip(address)
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))
    return str(ip) if ip is not None else address
