"""What the server knows of a request once its headers are in, and the gate's word on it.

The channel (channel.py) asks its server's ``Gate`` (gate.py) for a ``Decision`` before any of a
body is read; connections are counted per ``client_group``.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Protocol

WSGIApp = Callable[..., Iterable[bytes]]
# In the environ of a request whose body still arrives while the application runs.
ENVIRON_STREAMED = "imgz.streamed"


@dataclass(frozen=True)
class Head:
    """What is known of a request once its headers are parsed; headers use waitress's names."""

    method: str
    path: str
    query: str
    headers: Mapping[str, str]  # e.g. "X_API_KEY", "CONTENT_TYPE"
    content_length: int | None  # None for a chunked body
    client: str


@dataclass(frozen=True)
class Decision:
    """The gate's word on a request with a body: go on (keyed or not), or answer now;
    ``keep_cut``: if the connection is cut mid-body, the application gets what arrived;
    ``stream``: a large body may go to the application while it arrives (a keyed request's, never
    with ``keep_cut``)."""

    keyed: bool = False
    answer: WSGIApp | None = None
    keep_cut: bool = False
    stream: bool = False


GO_ON = Decision()
KEYED = Decision(keyed=True)
STREAMED = Decision(keyed=True, stream=True)


class Gate(Protocol):
    def decide(self, head: Head) -> Decision:
        """Called on the server's loop thread: must be quick and never wait on a lock."""

    def busy(self, head: Head) -> WSGIApp:
        """The answer when the spool for keyless bodies is full."""


def client_group(address: str) -> str:
    """The name connections are counted under: the IPv4 address, or the IPv6 /64."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)
