"""Where a server can be reached, and what its address settings would expose: said at start.

This machine's addresses come from the kernel's routing socket (netlink, RTM_GETADDR: every
address of every interface, both families); where netlink is refused, the address a UDP socket
would send from stands in for the IPv4 ones (connecting a UDP socket sends nothing).
"""
from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

from .addresses import Address, unspecified, unwrap

# linux/netlink.h and linux/rtnetlink.h
_NETLINK_ROUTE = 0
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_RTM_NEWADDR, _RTM_GETADDR = 20, 22
_NLM_F_REQUEST, _NLM_F_DUMP = 0x1, 0x300
_IFA_ADDRESS, _IFA_LOCAL = 1, 2
_HEADER = struct.Struct("=IHHII")   # nlmsghdr: length, type, flags, sequence, port
_IFADDR = struct.Struct("=BBBBI")   # ifaddrmsg: family, prefix length, flags, scope, interface
_ATTR = struct.Struct("=HH")        # rtattr: length, type

# Names that never leave a home or company network (RFC 6761, 6762, 8375 and common use).
PRIVATE_SUFFIXES = ("localhost", "local", "lan", "home", "home.arpa", "internal", "intranet",
                    "localdomain", "corp", "private", "test", "invalid")


def _align(n: int) -> int:
    return (n + 3) & ~3


def netlink_addresses() -> list[Address]:
    """Every address of every interface of this machine, as the kernel lists them."""
    request = _HEADER.pack(_HEADER.size + _IFADDR.size, _RTM_GETADDR, _NLM_F_REQUEST | _NLM_F_DUMP,
                           1, 0) + _IFADDR.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
    found: list[Address] = []
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_ROUTE) as sock:
        sock.settimeout(2)
        sock.bind((0, 0))
        sock.sendall(request)
        while True:
            data = sock.recv(1 << 16)
            offset = 0
            while offset + _HEADER.size <= len(data):
                length, kind = _HEADER.unpack_from(data, offset)[:2]
                if kind == _NLMSG_DONE:
                    return found
                if kind == _NLMSG_ERROR or length < _HEADER.size:
                    raise OSError("netlink refused the address listing")
                if kind == _RTM_NEWADDR:
                    found.extend(_address_of(data, offset + _HEADER.size, offset + length))
                offset += _align(length)


def _address_of(data: bytes, start: int, end: int) -> list[Address]:
    """The interface's own address in one RTM_NEWADDR message (IFA_LOCAL is ours on a
    point-to-point link, where IFA_ADDRESS is the other end's)."""
    attrs: dict[int, bytes] = {}
    at = start + _IFADDR.size
    while at + _ATTR.size <= end:
        length, kind = _ATTR.unpack_from(data, at)
        if length < _ATTR.size:
            break
        attrs[kind] = data[at + _ATTR.size:at + length]
        at += _align(length)
    raw = attrs.get(_IFA_LOCAL) or attrs.get(_IFA_ADDRESS)
    return [ipaddress.ip_address(raw)] if raw and len(raw) in (4, 16) else []


def routed_address() -> list[Address]:
    """The IPv4 address this machine would send from, when it has a route out; else none."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect(("192.0.2.1", 9))  # a documentation address: only the route is looked up
            return [ipaddress.ip_address(sock.getsockname()[0])]
    except OSError:
        return []


def machine_addresses(listing: Callable[[], list[Address]] = netlink_addresses) -> list[Address]:
    try:
        return listing()
    except OSError:  # a sandbox without netlink sockets
        return routed_address()


def url_of(address: Address | str, port: int) -> str:
    address = ipaddress.ip_address(address)
    return f"http://[{address}]:{port}" if address.version == 6 else f"http://{address}:{port}"


def reach_urls(host: str, port: int,
               lister: Callable[[], Iterable[Address]] = machine_addresses) -> list[str]:
    """Where a server listening on ``host`` can be reached: loopback first, then this machine's
    other addresses of that family (link-local ones left out: they need an interface name).
    A server on one address is reached there alone, and said so by its serving line: []."""
    if not unspecified(host):
        return []
    version = 6 if ":" in host else 4  # waitress listens on :: for IPv6 alone
    loopback = ipaddress.ip_address("::1" if version == 6 else "127.0.0.1")
    others = sorted({a for a in lister()
                     if a.version == version and not a.is_loopback and not a.is_link_local}, key=int)
    return [url_of(a, port) for a in (loopback, *others)]


def is_loopback(host: str) -> bool:
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def is_public(host: str) -> bool:
    """Whether a URL's host is reached over the internet: a global address, or a name with a
    dot outside the names kept for private networks. Nothing is resolved."""
    host = host.lower().rstrip(".")
    try:
        return unwrap(ipaddress.ip_address(host.strip("[]"))).is_global
    except ValueError:
        pass
    if "." not in host:
        return False
    return not any(host == s or host.endswith("." + s) for s in PRIVATE_SUFFIXES)


def exposure_warnings(host: str, base_url: str) -> list[str]:
    """One line for each way the address settings expose the server's users."""
    warnings = []
    if not base_url and not is_loopback(host):
        warnings.append(f"imgz: warning: listening on {host} without IMGZ_BASE_URL: links in "
                        "answers name whatever host a client sends; set IMGZ_BASE_URL to the "
                        "address people use")
    if base_url:
        parts = urlsplit(base_url)
        if parts.scheme == "http" and parts.hostname and is_public(parts.hostname):
            warnings.append(f"imgz: warning: IMGZ_BASE_URL is http:// on the public host "
                            f"{parts.hostname}: API keys, passwords and session cookies would "
                            "cross the network in clear; serve it over HTTPS (README, HTTPS)")
    return warnings
