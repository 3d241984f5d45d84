"""The Host-header rule that keeps a web page from reaching the service by DNS rebinding.

A page on `evil.example` can make its name resolve to 127.0.0.1 and then talk to a loopback service as if it were
its own origin; the one thing it cannot change is the `Host` header, which still says `evil.example`. So a
request is answered only when its Host is:

- a loopback name: `localhost`, `*.localhost`, `ip6-localhost`;
- an IP literal (`127.0.0.1:8788`, `[::1]`, `10.0.0.5`): a page can only send that Host from that address's own
  origin, so it is never a rebinding;
- the name the service was told to bind (`--host myhost.lan`);
- one of the configured `allowed_hosts` (`--allowed-hosts`, `MEMORY_SPINE_ALLOWED_HOSTS`): `name`, `name:port`,
  `.example.com` for the domain and its subdomains, or `*` to turn the check off.

The same rule holds for every bind address, 0.0.0.0 included: reached by IP it works as before; reached by a DNS
name (a container's service name, a load balancer's), that name must be configured. The MCP HTTP server (the
mcp SDK's transport security) refuses the same requests; this module is the service's copy of the rule, with
configured names and IP literals on top. Everything else is answered 421 by `RequestMiddleware`.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable

LOOPBACK_NAMES = frozenset({"localhost", "ip6-localhost", "ip6-loopback"})


def split_host(header: str) -> tuple[str, str | None]:
    """`Host` header value -> (lower-case name or address, port or None); `[::1]:80` -> (`::1`, `80`)."""
    value = header.strip().lower()
    if value.startswith("["):
        address, _, rest = value[1:].partition("]")
        return address, (rest[1:] if rest.startswith(":") else None)
    if value.count(":") == 1:
        name, _, port = value.partition(":")
        return name, port
    return value, None  # a bare name, or an unbracketed IPv6 address (not valid in Host, judged as written)


def is_loopback(host: str, *, resolve: bool = False) -> bool:
    """A loopback name or address (a bind or a Host that only this machine reaches); `resolve`: look names up too."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        if not resolve:
            return False
    import socket

    try:
        return all(ipaddress.ip_address(info[4][0]).is_loopback for info in socket.getaddrinfo(host, None))
    except (OSError, ValueError):
        return False


@functools.lru_cache(maxsize=1024)
def _is_ip(name: str) -> bool:
    # Cached: asked for every request's Host (parsing an address was 2 % of the event loop under concurrent
    # ingest); bounded, so a client sending many Host values only churns it.
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class HostCheck:
    """Decides whether a request's Host header is one this service answers for."""

    def __init__(self, allowed: Iterable[str] = (), bind_host: str | None = None) -> None:
        entries = [a.strip().lower() for a in allowed if a.strip()]
        self.open = "*" in entries
        self.names: set[str] = set()  # bare names: any port
        self.with_port: set[tuple[str, str]] = set()
        self.suffixes: list[str] = []  # ".example.com": the domain and its subdomains
        for entry in entries:
            if entry.startswith(("*.", ".")):
                self.suffixes.append("." + entry.lstrip("*."))
                continue
            name, port = split_host(entry)
            if port is None:
                self.names.add(name)
            else:
                self.with_port.add((name, port))
        if bind_host and not _is_ip(bind_host) and bind_host not in ("", "0.0.0.0", "::"):
            self.names.add(bind_host.lower())

    def allows(self, header: bytes | None) -> bool:
        """True if a request with this Host header (None: absent) may be answered."""
        if self.open:
            return True
        if not header:
            # HTTP/1.1 requires Host; a browser always sends one, so its absence is not a rebinding. HTTP/1.0
            # clients and raw sockets may omit it.
            return True
        try:
            name, port = split_host(header.decode("ascii"))
        except UnicodeDecodeError:
            return False
        name = name.rstrip(".")  # "localhost." is "localhost"
        if name in LOOPBACK_NAMES or name.endswith(".localhost") or _is_ip(name):
            return True
        if name in self.names or (port is not None and (name, port) in self.with_port):
            return True
        return any(name.endswith(s) or name == s[1:] for s in self.suffixes)
