"""Which network addresses a URL source may reach: every public one, and the allowed exceptions.

Refused are the private, shared, loopback, link-local, documentation, multicast and reserved
ranges. An IPv6 address that carries an IPv4 one (mapped, compatible, 6to4, NAT64) is judged as
that IPv4 address too, so a private host cannot hide behind it.
"""
from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass

Resolver = Callable[[str, int], list[str]]
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_REFUSED = tuple(ipaddress.ip_network(net) for net in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/24", "192.0.2.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24",
    "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
    "::/128", "::1/128", "fc00::/7", "fe80::/10", "ff00::/8", "2001:db8::/32",
))
# The last 32 bits of these are an IPv4 address the packet ends up at.
_V4_COMPATIBLE = ipaddress.ip_network("::/96")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
HOST_NAME = re.compile(r"[a-z0-9_](?:[a-z0-9_.-]*[a-z0-9_])?\.?")


def unspecified(host: str | None) -> bool:
    """Whether a host is the any-address (0.0.0.0, 0, ::, [0::0]...): where a server listens,
    never an address to reach it at."""
    if not host:
        return False
    try:
        return ipaddress.ip_address(socket.inet_ntoa(socket.inet_aton(host))).is_unspecified
    except OSError:  # not an IPv4 form inet_aton knows (it takes 0, 0.0 and 0x0 too)
        pass
    try:
        return ipaddress.ip_address(host.strip("[]")).is_unspecified
    except ValueError:
        return False


@dataclass(frozen=True)
class AllowNets:
    """Exceptions to the refused ranges: networks, and host names whose addresses are allowed."""

    nets: tuple[Network, ...] = ()
    hosts: tuple[str, ...] = ()


def parse_allow_nets(values: Sequence[str] | AllowNets) -> AllowNets:
    """Split CIDRs (or bare addresses) from host names; raise ValueError naming a bad entry.

    Host names are kept as names: they are resolved each time an address is judged.
    """
    if isinstance(values, AllowNets):
        return values
    nets: list[Network] = []
    hosts: list[str] = []
    for raw in values:
        value = raw.strip()
        if not value:
            continue
        try:
            nets.append(ipaddress.ip_network(value, strict=False))
            continue
        except ValueError:
            pass
        name = value.lower().rstrip(".")
        # An all-numeric name is a mistyped address, not a host.
        if "/" in value or not HOST_NAME.fullmatch(name) or name.replace(".", "").isdigit():
            raise ValueError(f"not a CIDR or host name: {raw!r}")
        hosts.append(name)
    return AllowNets(tuple(nets), tuple(hosts))


def address_allowed(ip: str, allow_nets: Sequence[str] | AllowNets = (), *,
                    resolve: Resolver | None = None) -> bool:
    """Tell whether a connection to ip may be made; an unparsable ip is refused."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return Judge(parse_allow_nets(allow_nets), resolve or system_resolve).allowed(address)


def unwrap(address: Address) -> Address:
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is not None:
            return embedded
        if address in _V4_COMPATIBLE or address in _NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


class Judge:
    """Judges addresses against the refused ranges and the allow list; allowed host names are
    resolved once, and only when an address would otherwise be refused."""

    def __init__(self, allow: AllowNets, resolve: Resolver) -> None:
        self.allow = allow
        self.resolve = resolve
        self._allowed_hosts: frozenset[Address] | None = None

    def allowed(self, address: Address) -> bool:
        candidates = {address, unwrap(address)}
        if not any(c in net for c in candidates for net in _REFUSED):
            return True
        if any(c in net for c in candidates for net in self.allow.nets if c.version == net.version):
            return True
        return bool(candidates & self._host_addresses())

    def _host_addresses(self) -> frozenset[Address]:
        if self._allowed_hosts is None:
            found: set[Address] = set()
            for host in self.allow.hosts:
                try:
                    found.update(ipaddress.ip_address(a.partition("%")[0])
                                 for a in self.resolve(host, 0))
                except (OSError, ValueError):
                    continue
            self._allowed_hosts = frozenset(found | {unwrap(a) for a in found})
        return self._allowed_hosts


def system_resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))
