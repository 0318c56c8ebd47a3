"""Where the ``http`` executor may connect: ``--http-allow`` / ``--http-deny``.

A rule is a host name (``metadata.internal``; ``*.example.com`` also matches
every subdomain), an IP address or a CIDR network. A target is refused when
its host name, or the address the connection is actually made to, matches a
``--http-deny`` rule and does not match a ``--http-allow`` rule (an allowed
host name trusts every address it resolves to).

The check sits in urllib3's connection creation: the executor resolves the
name itself and connects only to an address that passed, so what is checked
is what is connected to (no second lookup, no DNS-rebinding window), and
obfuscated literals such as ``2130706433`` or ``0x7f.0.0.1`` are judged by the
address they resolve to. Redirects open new connections and are checked the
same way, before anything is sent.

IPv6 forms of an IPv4 address (mapped ``::ffff:a.b.c.d``, compatible
``::a.b.c.d``, NAT64 ``64:ff9b::a.b.c.d``) are judged as that IPv4 address
too, so that ``[64:ff9b::7f00:1]`` is loopback to the rules. And whatever the
rules, a job may not call the worker's own server (its ``--api-url``: the
host and port, the addresses they resolve to, and every loopback address on
that port when the server is local): a job could otherwise use the API as
the worker, without a token when the server has none. ``--http-allow``
naming the server's host or address lifts that.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from taskframe.core import PermanentError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
#: RFC 6052's well-known NAT64 prefix: the last 32 bits are an IPv4 address.
NAT64 = ipaddress.ip_network("64:ff9b::/96")
#: Deprecated IPv4-compatible IPv6 addresses (::a.b.c.d; :: and ::1 are not).
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
_PORTS = {"http": 80, "https": 443}

#: Link-local networks (where cloud metadata services listen) and AWS's IPv6 metadata address.
DEFAULT_DENY = "169.254.0.0/16,fe80::/10,fd00:ec2::254"
#: The strict profile the README documents, for workers running less trusted jobs.
STRICT_DENY = (
    DEFAULT_DENY + ",0.0.0.0/8,127.0.0.0/8,::/128,::1/128,10.0.0.0/8,172.16.0.0/12,"
    "192.168.0.0/16,100.64.0.0/10,fc00::/7"
)


class TargetDenied(PermanentError):
    """The target host or address is refused by the worker's ``--http-*`` rules."""


@dataclass(frozen=True)
class Rules:
    """A parsed ``--http-allow`` or ``--http-deny`` list."""

    names: frozenset[str] = frozenset()
    suffixes: tuple[str, ...] = ()
    networks: tuple[Network, ...] = ()

    def match_name(self, host: str) -> str | None:
        """The rule matching host name ``host`` (already normalised), if any."""
        if host in self.names:
            return host
        for suffix in self.suffixes:
            if host.endswith(suffix):
                return "*" + suffix
        return None

    def match_address(self, address: Address) -> str | None:
        """The network containing ``address`` or its IPv4 form (:func:`as_ipv4`), if any."""
        candidates = {address, as_ipv4(address)}
        for network in self.networks:
            if any(candidate in network for candidate in candidates):
                return str(network)
        return None


def parse_rules(text: str | Iterable[str] | Rules | None) -> Rules:
    """Parse a comma- or space-separated list of host names, addresses and networks.

    Raises ``ValueError`` on a malformed entry (argparse reports it as a usage error).
    """
    if isinstance(text, Rules):
        return text
    if text is None:
        return Rules()
    entries = text.replace(",", " ").split() if isinstance(text, str) else list(text)
    entries = [item for entry in entries for item in _expand(entry)]
    names: set[str] = set()
    suffixes: list[str] = []
    networks: list[Network] = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            continue
        except ValueError:
            pass
        name = normalise_host(entry)
        if name.startswith(("*.", ".")):
            suffixes.append("." + name.lstrip("*."))
        elif name and all(part for part in name.split(".")) and "/" not in name:
            names.add(name)
        else:
            raise ValueError(f"not a host name, address or network: {entry!r}")
    return Rules(frozenset(names), tuple(suffixes), tuple(networks))


def _expand(entry: str) -> list[str]:
    """``@default`` and ``@strict`` stand for the lists above."""
    if not entry.startswith("@"):
        return [entry]
    profiles = {"@default": DEFAULT_DENY, "@strict": STRICT_DENY}
    if entry.lower() not in profiles:
        raise ValueError(f"unknown profile {entry!r} (use @default or @strict)")
    return profiles[entry.lower()].split(",")


def _literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(normalise_host(host))
    except ValueError:
        return None


def normalise_host(host: str) -> str:
    """Lower-case, without brackets or a trailing dot."""
    return host.strip().strip("[]").rstrip(".").lower()


def as_ipv4(address: Address) -> Address:
    """The IPv4 address an IPv6 address embeds (mapped, compatible, NAT64), else itself."""
    if not isinstance(address, ipaddress.IPv6Address):
        return address
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in NAT64:
        return embedded
    if address in IPV4_COMPATIBLE and int(address) > 1:  # :: and ::1 are IPv6's own
        return embedded
    return address


@functools.lru_cache(maxsize=32)
def server_targets(api_urls: str | None) -> tuple[tuple[str, int], ...]:
    """(host, port) of each of the worker's ``--api-url`` URLs (comma-separated)."""
    found = []
    for url in (api_urls or "").split(","):
        try:
            parts = urlsplit(url.strip())
            port = parts.port or _PORTS.get(parts.scheme.lower())
        except ValueError:
            continue
        if parts.hostname and port:
            found.append((normalise_host(parts.hostname), port))
    return tuple(dict.fromkeys(found))


@functools.lru_cache(maxsize=64)
def _addresses(host: str) -> frozenset[Address]:
    """What a server host name resolves to (looked up once: it is the worker's own server)."""
    literal = _literal(host)
    if literal is not None:
        return frozenset({as_ipv4(literal)})
    try:
        infos = socket.getaddrinfo(host, None, 0, socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return frozenset()
    return frozenset(as_ipv4(ipaddress.ip_address(str(i[4][0]).split("%")[0])) for i in infos)


def _local(address: Address) -> bool:
    return address.is_loopback or address.is_unspecified


@dataclass(frozen=True)
class Policy:
    """The ``--http-allow`` and ``--http-deny`` rules of one worker."""

    allow: Rules = Rules()
    deny: Rules = parse_rules(DEFAULT_DENY)
    servers: tuple[tuple[str, int], ...] = ()
    """The worker's own server(s): (host, port) of each ``--api-url``."""

    def check_name(self, host: str) -> bool:
        """Refuse a denied host name; True when the name is explicitly allowed."""
        host = normalise_host(host)
        if self.allow.match_name(host):
            return True
        rule = self.deny.match_name(host)
        if rule:
            raise TargetDenied(f"host {host!r} is denied by the worker's --http-deny ({rule})")
        return False

    def refusal(self, host: str, address: str, port: int | None = None) -> str | None:
        """Why connecting to ``address`` (resolved from ``host``) on ``port`` is refused."""
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 scope id
        if self.allow.match_address(ip):
            return None
        server = self.own_server(host, ip, port)
        if server is not None:
            return (
                f"{host}:{port} is the worker's own server ({server}, its --api-url); "
                "--http-allow naming it lifts this"
            )
        rule = self.deny.match_address(ip)
        if rule is None:
            return None
        shown = "" if _literal(host) == ip else f"{host!r} resolves to "
        return f"{shown}{ip}, denied by the worker's --http-deny ({rule})"

    def own_server(self, host: str, address: Address, port: int | None) -> str | None:
        """The ``host:port`` of the worker's server that this target reaches, if any."""
        if port is None:
            return None
        target = as_ipv4(address)
        for server_host, server_port in self.servers:
            if server_port != port:
                continue
            known = _addresses(server_host)
            if (
                normalise_host(host) == server_host
                or target in known
                or (_local(target) and any(_local(a) for a in known))
            ):
                return f"{server_host}:{server_port}"
        return None

    def check_resolved(self, host: str, port: int) -> None:
        """For proxied requests: refuse when any address ``host`` resolves to is denied.

        The proxy makes its own lookup, so this is a best effort; the proxy
        should enforce the same rules.
        """
        if self.check_name(host):
            return
        try:
            infos = socket.getaddrinfo(normalise_host(host), port, 0, socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            return  # the proxy will report the name as it sees it
        for *_, sockaddr in infos:
            reason = self.refusal(host, str(sockaddr[0]), port)
            if reason:
                raise TargetDenied(reason)


def __getattr__(name: str) -> Any:
    """``GuardedAdapter`` on first use: it needs requests and urllib3 (about 0.1 s to
    import), which a process that never makes a request (a starting worker, the
    server) need not pay for."""
    if name == "GuardedAdapter":
        from taskframe.plugins.http_adapter import GuardedAdapter

        return GuardedAdapter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
