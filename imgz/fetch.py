"""The SSRF-safe download of a URL source.

Every address a host resolves to must be public (or listed in the allow nets); the connection then
goes to the address that was checked, never to a second lookup, while the Host header and TLS keep
the URL's host name. Redirects are checked the same way, one wall-clock deadline covers the whole
download, and the body is capped whatever Content-Length says. Proxy environment variables are
ignored because http.client never reads them.
"""
from __future__ import annotations

import contextlib
import functools
import http.client
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from urllib.parse import quote, unquote, urljoin, urlsplit

from imgz.addresses import (HOST_NAME, Address, AllowNets, Judge, Resolver, parse_allow_nets,
                            system_resolve)
from imgz.errors import InvalidURL


CHUNK = 64 * 1024
REDIRECTS = frozenset({301, 302, 303, 307, 308})
USER_AGENT = "imgz"

@dataclass(frozen=True)
class Fetched:
    """What a finished download tells besides its bytes."""

    url: str                    # the final URL, after redirects
    filename: str               # its last path segment, percent-decoded ('' when none); not cleaned
    content_type: str | None    # as the server said; never trusted for the type


def download(url: str, write: Callable[[bytes], None], *, max_bytes: int,
             deadline: float = 30.0, allow_nets: Sequence[str] | AllowNets = (),
             max_redirects: int = 5, resolve: Resolver | None = None) -> Fetched:
    """Fetch url, passing body chunks to write(); raise InvalidURL(reason) on any refusal or failure.

    Exceptions raised by write() pass through untouched. The default resolver is getaddrinfo,
    which also turns odd IPv4 forms (``2130706434``, ``0177.0.0.1``, ``127.1``) into the dotted
    quad that is then judged.
    """
    judge = Judge(parse_allow_nets(allow_nets), resolve or system_resolve)
    clock = _Deadline(deadline)
    for hop in range(max_redirects + 1):
        target = _Target.parse(url)
        addresses = _resolve(judge.resolve, target, clock)
        if not all(judge.allowed(address) for address in addresses):
            raise InvalidURL("address not allowed")
        conn, response = _open(target, [str(a) for a in addresses], clock)
        try:
            location = response.getheader("Location")
            if response.status in REDIRECTS and location:
                if hop == max_redirects:
                    raise InvalidURL("too many redirects")
                url = urljoin(url, location.strip()).partition("#")[0]
                continue
            if not 200 <= response.status < 300:
                raise InvalidURL(f"HTTP {response.status}")
            _stream(response, write, max_bytes, clock)
            return Fetched(url, unquote(target.path.rpartition("/")[2]),
                           response.getheader("Content-Type"))
        finally:
            # With "Connection: close" http.client hands the socket to the response, so
            # closing the connection alone would leave it open.
            response.close()
            conn.close()
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class _Target:
    scheme: str
    host: str       # ASCII: an IDN host is already in its punycode form
    port: int
    path: str
    request_path: str

    @classmethod
    def parse(cls, url: str) -> _Target:
        try:
            parts = urlsplit(url.strip())
            scheme = parts.scheme.lower()
            if scheme not in ("http", "https"):
                raise InvalidURL("unsupported scheme")
            host = parts.hostname or ""
            port = parts.port or (443 if scheme == "https" else 80)
        except ValueError:
            raise InvalidURL("invalid URL") from None
        host = _ascii_host(host)
        # Spaces and other unsafe characters are escaped the way browsers do; '%' is kept so
        # an already escaped path is not escaped twice.
        path = quote(parts.path or "/", safe="/%:@!$&'()*+,;=-._~")
        query = quote(parts.query, safe="/%:@!$&'()*+,;=-._~?")
        return cls(scheme, host, port, parts.path, path + (f"?{query}" if query else ""))


def _ascii_host(host: str) -> str:
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    try:
        name = host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise InvalidURL("invalid host") from None
    if not HOST_NAME.fullmatch(name):
        raise InvalidURL("invalid host")
    return name


class _Deadline:
    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            raise TimeoutError("deadline passed")
        return left

    @property
    def passed(self) -> bool:
        return time.monotonic() >= self.end


class _DeadlineReads:
    """Makes every read of a socket wait at most until the download's deadline.

    A per-read timeout alone is not enough: http.client reads header lines and chunk sizes with
    loops of reads, so a server sending a byte a second would never trip it.
    """

    deadline: _Deadline | None = None

    def recv_into(self, buffer, *args):  # type: ignore[no-untyped-def]
        if self.deadline is not None:
            self.settimeout(self.deadline.left())  # type: ignore[attr-defined]
        return super().recv_into(buffer, *args)  # type: ignore[misc]


class _DeadlineSocket(_DeadlineReads, socket.socket):
    pass


class _DeadlineSSLSocket(_DeadlineReads, ssl.SSLSocket):
    pass


@functools.cache
def _tls_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.sslsocket_class = _DeadlineSSLSocket
    context.set_alpn_protocols(["http/1.1"])
    return context


class _PinnedConnection(http.client.HTTPConnection):
    """An HTTP(S) connection to a fixed address that still speaks the URL's host name."""

    def __init__(self, target: _Target, ip: str, clock: _Deadline) -> None:
        super().__init__(target.host, target.port)
        self.ip = ip
        self.clock = clock
        self.tls = target.scheme == "https"
        # Decides whether the Host header carries the port.
        self.default_port = 443 if self.tls else 80

    def connect(self) -> None:
        family = socket.AF_INET6 if ":" in self.ip else socket.AF_INET
        sock = _DeadlineSocket(family, socket.SOCK_STREAM)
        try:
            # The handshake is bounded as a whole by this timeout (the ssl module turns it into
            # a deadline), so it is set before wrapping.
            sock.settimeout(self.clock.left())
            sock.connect((self.ip, self.port))
            if self.tls:
                sock = _tls_context().wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise
        sock.deadline = self.clock
        self.sock = sock


_HEADERS = {"User-Agent": USER_AGENT, "Accept": "*/*", "Connection": "close"}


def _open(target: _Target, addresses: list[str],
          clock: _Deadline) -> tuple[_PinnedConnection, http.client.HTTPResponse]:
    """Connect to the first address that answers, send the GET and read the response head."""
    failure = InvalidURL("connection failed")
    for ip in addresses:
        conn = _PinnedConnection(target, ip, clock)
        try:
            with _network_errors(clock):
                conn.connect()
        except InvalidURL as exc:
            conn.close()
            if exc.reason != "connection failed":
                raise
            failure = exc
            continue
        try:
            with _network_errors(clock):
                conn.request("GET", target.request_path, headers=_HEADERS)
                return conn, conn.getresponse()
        except BaseException:
            conn.close()
            raise
    raise failure


def _stream(response: http.client.HTTPResponse, write: Callable[[bytes], None],
            max_bytes: int, clock: _Deadline) -> None:
    if response.length is not None and response.length > max_bytes:
        raise InvalidURL("too large")
    received = 0
    while True:
        with _network_errors(clock):
            chunk = response.read1(CHUNK)
        if not chunk:
            break
        received += len(chunk)
        if received > max_bytes:
            raise InvalidURL("too large")
        write(chunk)
        if clock.passed:
            raise InvalidURL("timed out")
    # read1() reports a body cut short of its Content-Length as a plain end of data.
    if response.length:
        raise InvalidURL("connection closed early")


def _resolve(resolve: Resolver, target: _Target, clock: _Deadline) -> list[Address]:
    """Resolve the host within the deadline; a literal IP is its own answer."""
    try:
        return [ipaddress.ip_address(target.host)]
    except ValueError:
        pass
    # getaddrinfo cannot be interrupted, so it runs in a thread that is abandoned at the deadline.
    outcome: list = []

    def run() -> None:
        try:
            outcome.append([ipaddress.ip_address(a) for a in resolve(target.host, target.port)])
        except (OSError, UnicodeError, ValueError):
            outcome.append([])

    worker = threading.Thread(target=run, name="imgz-resolve", daemon=True)
    worker.start()
    with _network_errors(clock):
        worker.join(clock.left())
    if worker.is_alive():
        raise InvalidURL("timed out")
    if not outcome or not outcome[0]:
        raise InvalidURL("could not resolve host")
    return outcome[0]


@contextlib.contextmanager
def _network_errors(clock: _Deadline) -> Iterator[None]:
    """Turn what the network can raise into InvalidURL with a short reason."""
    try:
        yield
    except InvalidURL:
        raise
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise InvalidURL(_reason(exc, clock)) from exc


def _reason(exc: BaseException, clock: _Deadline) -> str:
    if clock.passed or isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "certificate not valid"
    if isinstance(exc, ssl.SSLError):
        return "TLS error"
    if isinstance(exc, http.client.IncompleteRead):
        return "connection closed early"
    if isinstance(exc, OSError):
        return "connection failed"
    if isinstance(exc, http.client.HTTPException):
        return "invalid response"
    return "invalid URL"
