"""What a start says about where the server can be reached and what its settings expose: the
machine's addresses when it listens on all of them, a warning when links would carry a host a
client chose, or keys would cross a public network in clear."""
from __future__ import annotations

import ipaddress
import subprocess
from typing import Callable

import pytest
import requests

from imgz import reach
from test_cli import serve_and_stop


def test_the_kernel_lists_this_machines_addresses_with_loopback_among_them():
    found = reach.netlink_addresses()
    assert ipaddress.ip_address("127.0.0.1") in found
    ours = {ipaddress.ip_address(a.split("/")[0].split("%")[0]) for a in _ip_addr()}
    if ours:  # the same as iproute2 lists, where it is installed
        assert set(found) == ours


def _ip_addr() -> list[str]:
    try:
        out = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.split()[3] for line in out.splitlines() if len(line.split()) > 3]


LISTED = [ipaddress.ip_address(a) for a in
          ("127.0.0.1", "192.168.1.20", "10.0.0.5", "169.254.3.4", "::1", "fd00::2", "fe80::1",
           "2001:db8:5::7")]


@pytest.mark.parametrize("host, urls", [
    ("0.0.0.0", ["http://127.0.0.1:8080", "http://10.0.0.5:8080", "http://192.168.1.20:8080"]),
    ("0", ["http://127.0.0.1:8080", "http://10.0.0.5:8080", "http://192.168.1.20:8080"]),
    ("::", ["http://[::1]:8080", "http://[2001:db8:5::7]:8080", "http://[fd00::2]:8080"]),
    ("127.0.0.1", []),
    ("192.168.1.20", []),
    ("localhost", []),
])
def test_reach_urls(host, urls):
    assert reach.reach_urls(host, 8080, lambda: LISTED) == urls


def test_without_netlink_the_routed_address_stands_in():
    def refused():
        raise PermissionError("address family not allowed")

    assert reach.machine_addresses(refused) == reach.routed_address()
    assert set(reach.routed_address()) <= set(reach.netlink_addresses())


@pytest.mark.parametrize("host, public", [
    ("img.example.org", True), ("8.8.8.8", True), ("2a00:1450:4001::200e", True), ("[2606:4700::1]", True),
    ("192.168.1.5", False), ("10.1.2.3", False), ("127.0.0.1", False), ("fd00::1", False),
    ("nas", False), ("nas.lan", False), ("nas.local", False), ("box.home.arpa", False),
    ("img.internal", False), ("localhost", False), ("NAS.LAN.", False), ("::ffff:10.0.0.1", False),
])
def test_is_public(host, public):
    assert reach.is_public(host) is public


@pytest.mark.parametrize("host, base_url, warned", [
    ("0.0.0.0", "", ["without IMGZ_BASE_URL"]),
    ("::", "", ["without IMGZ_BASE_URL"]),
    ("192.168.1.5", "", ["without IMGZ_BASE_URL"]),
    ("0.0.0.0", "http://img.example.org", ["in clear"]),
    ("127.0.0.1", "http://img.example.org:8080", ["in clear"]),
    ("0.0.0.0", "http://203.0.113.9", []),  # a documentation address is not global
    ("0.0.0.0", "http://8.8.8.8:8080", ["in clear"]),
    ("0.0.0.0", "https://img.example.org", []),
    ("0.0.0.0", "http://192.168.1.5:8080", []),
    ("0.0.0.0", "http://nas.lan:8080", []),
    ("127.0.0.1", "", []),
    ("::1", "", []),
    ("localhost", "", []),
])
def test_exposure_warnings(host, base_url, warned):
    lines = reach.exposure_warnings(host, base_url)
    assert len(lines) == len(warned)
    for line, words in zip(lines, warned):
        assert line.startswith("imgz: warning: ") and words in line and "\n" not in line


def start(tmp_path, *args: str, env: dict | None = None,
          on_serving: Callable[[list[str]], None] = lambda said: None) -> list[str]:
    """``app.py serve ARGS`` until its serving line, then stopped; what it said on stderr up to
    that line."""
    before: list[str] = []

    def serving(so_far: str) -> None:
        before.extend(so_far.splitlines(True))
        on_serving(before)

    code, text = serve_and_stop("serve", "--port", "0", "--data", str(tmp_path / "data"), *args,
                                env=env, on_serving=serving)
    assert code == 0, text
    return before


def test_a_server_on_every_address_says_where_it_answers_and_answers_there(tmp_path):
    answered = {}

    def visit(said: list[str]) -> None:
        line = next(line for line in said if line.startswith("imgz: reachable at "))
        for url in line.split(" at ", 1)[1].strip().split(", "):
            answered[url] = requests.get(url + "/", timeout=10).status_code

    said = start(tmp_path, "--host", "0.0.0.0", on_serving=visit)
    machine = [a for a in reach.netlink_addresses() if a.version == 4 and not a.is_link_local]
    assert sorted(answered) == sorted(reach.url_of(a, int(_port(said))) for a in machine)
    assert set(answered.values()) == {200}
    assert sum("without IMGZ_BASE_URL" in line for line in said) == 1


def _port(said: list[str]) -> str:
    return said[-1].split(" on http://", 1)[1].split(" ", 1)[0].rsplit(":", 1)[1]


def test_a_server_on_loopback_says_nothing_more(tmp_path):
    said = start(tmp_path, "--host", "127.0.0.1")
    assert len(said) == 1 and said[0].startswith("imgz: serving ")


@pytest.mark.parametrize("base_url, warned", [
    ("http://img.example.org", True), ("https://img.example.org", False),
])
def test_a_public_base_url_over_http_is_warned_of(tmp_path, base_url, warned):
    said = start(tmp_path, "--host", "127.0.0.1", env={"IMGZ_BASE_URL": base_url})
    assert [line for line in said if "warning" in line] == ([
        "imgz: warning: IMGZ_BASE_URL is http:// on the public host img.example.org: API keys, "
        "passwords and session cookies would cross the network in clear; serve it over HTTPS "
        "(README, HTTPS)\n"] if warned else [])
