"""Which addresses a URL source may reach: the refused ranges, IPv4 inside IPv6, the allow list."""
from __future__ import annotations

import socket

import pytest

from imgz import addresses

REFUSED = [
    "0.0.0.0", "0.255.255.255", "10.0.0.1", "10.255.255.255", "100.64.0.1", "100.127.255.254",
    "127.0.0.1", "127.255.255.254", "169.254.169.254", "172.16.0.1", "172.31.255.255",
    "192.0.0.8", "192.0.2.1", "192.168.1.1", "198.18.0.1", "198.19.255.255", "198.51.100.7",
    "203.0.113.9", "224.0.0.1", "239.255.255.250", "240.0.0.1", "255.255.255.255",
    "::", "::1", "fc00::1", "fd12:3456::1", "fe80::1", "febf::1", "ff02::1", "2001:db8::1",
    # IPv4 wrapped in IPv6 is judged as the IPv4 inside
    "::ffff:127.0.0.1", "::ffff:10.1.2.3", "::ffff:169.254.169.254", "::127.0.0.1",
    "::10.0.0.1", "64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "2002:7f00:1::1", "2002:c0a8:101::1",
    "not an address", "",
]
ALLOWED = [
    "8.8.8.8", "1.1.1.1", "93.184.215.14", "100.63.255.255", "100.128.0.0", "172.15.255.255",
    "172.32.0.0", "192.169.0.1", "198.17.255.255", "223.255.255.255",
    "2606:4700::1", "2a00:1450:4001::200e", "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1",
]


@pytest.mark.parametrize("ip", REFUSED)
def test_address_refused(ip):
    assert not addresses.address_allowed(ip)


@pytest.mark.parametrize("ip", ALLOWED)
def test_address_allowed(ip):
    assert addresses.address_allowed(ip)


@pytest.mark.parametrize("ip, allow, expected", [
    ("127.0.0.1", ["127.0.0.1/32"], True),
    ("127.0.0.2", ["127.0.0.1/32"], False),
    ("::ffff:127.0.0.1", ["127.0.0.1/32"], True),
    ("10.1.2.3", ["10.0.0.0/8"], True),
    ("10.1.2.3", ["10.1.2.3"], True),
    ("fd00::5", ["fd00::/64"], True),
    ("fd00:1::5", ["fd00::/64"], False),
    ("192.168.1.9", ["cache.internal"], True),
    ("192.168.1.10", ["cache.internal"], False),
])
def test_allow_nets_are_exceptions(ip, allow, expected):
    names = {"cache.internal": ["192.168.1.9"]}
    assert addresses.address_allowed(ip, allow, resolve=lambda host, port: names[host]) is expected


def test_allow_net_host_that_does_not_resolve_allows_nothing():
    def resolve(host, port):
        raise socket.gaierror("no such host")

    assert not addresses.address_allowed("10.0.0.1", ["gone.internal"], resolve=resolve)


def test_parse_allow_nets_splits_networks_from_hosts():
    parsed = addresses.parse_allow_nets([" 10.0.0.0/8", "192.168.1.5", "Minio.local.", "", "fd00::/8"])
    assert [str(n) for n in parsed.nets] == ["10.0.0.0/8", "192.168.1.5/32", "fd00::/8"]
    assert parsed.hosts == ("minio.local",)


@pytest.mark.parametrize("bad", ["10.0.0.0/33", "10.0.0.300", "exa mple", "http://host/", "host/8",
                                 "-x"])
def test_parse_allow_nets_refuses_bad_entries(bad):
    with pytest.raises(ValueError, match="not a CIDR or host name"):
        addresses.parse_allow_nets([bad])
