"""Which URLs harvesting and federation may fetch. A harvest URL comes from a caller, so it could point the
server at its own loopback services or the private network (SSRF, cf. pygeoapi CVE-2026-42352): loopback,
private, link-local, multicast and reserved addresses are refused unless a configured network
(``catalog_harvest_allow``) admits them. Every address the host name resolves to is checked."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit


class RefusedURL(ValueError):
    """The URL may not be fetched; the message says why (safe to show the caller)."""


def _addresses(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise RefusedURL(f"host {host[:100]!r} does not resolve") from exc
    return [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]


def _internal(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return (address.is_loopback or address.is_private or address.is_link_local or address.is_multicast
            or address.is_reserved or address.is_unspecified)


def check_url(url: str, allow: Iterable[str]) -> str:
    """Return ``url`` when it may be fetched, else raise ``RefusedURL``."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RefusedURL("only http:// and https:// URLs with a host can be harvested")
    if parts.username or parts.password:
        raise RefusedURL("URLs with credentials are not accepted")
    networks = [ipaddress.ip_network(net, strict=False) for net in allow]
    for address in _addresses(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)):
        if _internal(address) and not any(address in net for net in networks):
            raise RefusedURL(f"{parts.hostname} resolves to {address}, a loopback/private address that this "
                             f"server is not configured to reach (setting catalog_harvest_allow)")
    return url.strip()
