"""The URL download: address rules, pinned connections, redirects, the deadline and the size cap."""
from __future__ import annotations

import gc
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
import warnings
from pathlib import Path

import pytest

from imgz import fetch
from imgz.errors import InvalidURL
from webhost import WebHost, body, redirect, status, trickle

LOCAL = ["127.0.0.1/32"]
PNG_ISH = bytes(range(256)) * 40


@pytest.fixture
def site():
    with WebHost() as host:
        yield host


class Sink:
    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def __call__(self, chunk: bytes) -> None:
        self.chunks.append(chunk)

    @property
    def data(self) -> bytes:
        return b"".join(self.chunks)


def refused(url: str, **kwargs) -> str:
    kwargs.setdefault("max_bytes", 1 << 20)
    with pytest.raises(InvalidURL) as caught:
        fetch.download(url, Sink(), **kwargs)
    return caught.value.reason


# --- downloads ---------------------------------------------------------------------------------

def test_download_streams_body_and_names_file(site):
    site.routes["/pics/cat%20photo.png"] = body(PNG_ISH)
    sink = Sink()
    got = fetch.download(site.url("/pics/cat%20photo.png?size=big"), sink, max_bytes=1 << 20,
                         allow_nets=LOCAL)
    assert sink.data == PNG_ISH
    assert got == fetch.Fetched(site.url("/pics/cat%20photo.png?size=big"), "cat photo.png",
                                "image/png")


def test_download_sends_plain_headers(site):
    site.routes["/a.png"] = body(b"x")
    fetch.download(site.url("/a.png"), Sink(), max_bytes=10, allow_nets=LOCAL)
    (path, headers), = site.requests
    assert path == "/a.png"
    assert headers["User-Agent"] == "imgz"
    assert headers["Accept"] == "*/*"
    assert headers["Host"] == f"127.0.0.1:{site.port}"


def test_filename_is_empty_without_last_segment(site):
    site.routes["/dir/"] = body(b"x")
    assert fetch.download(site.url("/dir/"), Sink(), max_bytes=10, allow_nets=LOCAL).filename == ""


def test_spaces_in_path_are_escaped(site):
    site.routes["/my%20cat.png"] = body(b"x")
    got = fetch.download(site.url("/my cat.png"), Sink(), max_bytes=10, allow_nets=LOCAL)
    assert site.requests[0][0] == "/my%20cat.png"
    assert got.filename == "my cat.png"


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_redirect_is_followed(site, code):
    site.routes["/start"] = redirect("/middle", code)
    site.routes["/middle"] = redirect(site.url("/final/img.gif"), code)
    site.routes["/final/img.gif"] = body(b"GIF89a", "image/gif")
    sink = Sink()
    got = fetch.download(site.url("/start"), sink, max_bytes=100, allow_nets=LOCAL)
    assert sink.data == b"GIF89a"
    assert got.url == site.url("/final/img.gif")
    assert got.filename == "img.gif"
    assert got.content_type == "image/gif"


def test_redirect_to_private_address_refused(site):
    site.routes["/start"] = redirect(f"http://127.0.0.2:{site.port}/secret")
    assert refused(site.url("/start"), allow_nets=LOCAL) == "address not allowed"


def test_redirect_to_other_scheme_refused(site):
    site.routes["/start"] = redirect("file:///etc/passwd")
    assert refused(site.url("/start"), allow_nets=LOCAL) == "unsupported scheme"


def test_redirect_loop_is_too_many_redirects(site):
    site.routes["/loop"] = redirect("/loop")
    assert refused(site.url("/loop"), allow_nets=LOCAL) == "too many redirects"
    assert len(site.requests) == 6


def test_redirect_limit_is_counted_exactly(site):
    for i in range(3):
        site.routes[f"/r{i}"] = redirect(f"/r{i + 1}")
    site.routes["/r3"] = body(b"ok")
    fetch.download(site.url("/r0"), Sink(), max_bytes=10, allow_nets=LOCAL, max_redirects=3)
    assert refused(site.url("/r0"), allow_nets=LOCAL, max_redirects=2) == "too many redirects"


def test_http_error_status(site):
    assert refused(site.url("/missing.png"), allow_nets=LOCAL) == "HTTP 404"


def test_redirect_without_location_is_an_error_status(site):
    site.routes["/odd"] = status(302)
    assert refused(site.url("/odd"), allow_nets=LOCAL) == "HTTP 302"


@pytest.fixture
def no_connect(monkeypatch):
    def connect(self, address):
        raise AssertionError(f"connection attempted to {address}")

    monkeypatch.setattr(socket.socket, "connect", connect)


@pytest.mark.parametrize("url", [
    "http://127.0.0.2:{port}/",
    "http://[::1]:{port}/",
    "http://[::ffff:127.0.0.2]/",
    "http://[::ffff:7f00:2]:{port}/",
    "http://[64:ff9b::a9fe:a9fe]/",
    "http://10.0.0.1/",
    "http://169.254.169.254/latest/meta-data/",
    "https://192.168.0.1/",
    "http://0.0.0.0:{port}/",
    "http://2130706434:{port}/",
    "http://0177.0.0.2:{port}/",
    "http://0x7f.0.0.2:{port}/",
    "http://127.0.2:{port}/",
    "http://0x7f000002:{port}/",
])
def test_private_target_refused_without_connecting(site, no_connect, url):
    assert refused(url.format(port=site.port), allow_nets=LOCAL) == "address not allowed"
    assert site.requests == []


@pytest.mark.parametrize("url", ["ftp://example.com/a.png", "file:///etc/passwd",
                                 "gopher://example.com/", "javascript:alert(1)", "example.com/a.png"])
def test_other_schemes_refused(no_connect, url):
    assert refused(url) == "unsupported scheme"


@pytest.mark.parametrize("url", ["http://", "http:///a.png", "http://exa mple.com/",
                                 "http://host:99999/", "http://[::1/"])
def test_malformed_urls_refused(no_connect, url):
    assert refused(url) in {"invalid URL", "invalid host"}


def test_unresolvable_host():
    def resolve(host, port):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    assert refused("http://img.invalid/a.png", resolve=resolve) == "could not resolve host"


def test_host_resolving_to_private_address_refused(site, no_connect):
    names = {"img.invalid": ["192.168.5.5"]}
    reason = refused(site.url("/a.png", host="img.invalid"), resolve=lambda h, p: names[h])
    assert reason == "address not allowed"


def test_every_resolved_address_must_be_allowed(site, no_connect):
    names = {"img.invalid": ["127.0.0.1", "10.0.0.7"]}
    reason = refused(site.url("/a.png", host="img.invalid"), allow_nets=LOCAL,
                     resolve=lambda h, p: names[h])
    assert reason == "address not allowed"


def test_connection_is_pinned_to_checked_address(site):
    # img.invalid never resolves in DNS, so reaching the site proves the checked address was used
    lookups = []

    def resolve(host, port):
        lookups.append((host, port))
        return ["127.0.0.1"]

    site.routes["/a.png"] = body(b"pinned")
    sink = Sink()
    got = fetch.download(site.url("/a.png", host="img.invalid"), sink, max_bytes=100,
                         allow_nets=LOCAL, resolve=resolve)
    assert sink.data == b"pinned"
    assert got.url == site.url("/a.png", host="img.invalid")
    assert lookups == [("img.invalid", site.port)]
    assert site.requests[0][1]["Host"] == f"img.invalid:{site.port}"


def test_allowed_host_name_lets_its_address_through(site):
    names = {"img.invalid": ["127.0.0.1"], "cache.invalid": ["127.0.0.1"]}
    site.routes["/a.png"] = body(b"ok")
    url = site.url("/a.png", host="img.invalid")
    resolve = lambda h, p: names[h]  # noqa: E731
    assert refused(url, resolve=resolve) == "address not allowed"
    fetch.download(url, Sink(), max_bytes=10, allow_nets=["cache.invalid"], resolve=resolve)


def test_next_address_tried_when_first_refuses_connection(site):
    site.routes["/a.png"] = body(b"second")
    sink = Sink()
    # ::1 may be missing here or have nothing listening: either way the connection fails
    fetch.download(site.url("/a.png", host="img.invalid"), sink, max_bytes=10,
                   allow_nets=["::1/128", *LOCAL], resolve=lambda h, p: ["::1", "127.0.0.1"])
    assert sink.data == b"second"


def test_connection_refused():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert refused(f"http://127.0.0.1:{port}/", allow_nets=LOCAL) == "connection failed"


# --- deadline ----------------------------------------------------------------------------------

def test_trickling_body_times_out(site):
    site.routes["/slow.png"] = trickle()
    start = time.monotonic()
    assert refused(site.url("/slow.png"), allow_nets=LOCAL, deadline=1) == "timed out"
    assert time.monotonic() - start < 2


def test_trickling_status_line_times_out(site):
    site.routes["/slow.png"] = trickle(head=True)
    start = time.monotonic()
    assert refused(site.url("/slow.png"), allow_nets=LOCAL, deadline=1) == "timed out"
    assert time.monotonic() - start < 2


def test_slow_resolver_times_out():
    release = threading.Event()

    def resolve(host, port):
        release.wait(10)
        return ["8.8.8.8"]

    start = time.monotonic()
    try:
        assert refused("http://slow.invalid/", resolve=resolve, deadline=0.5) == "timed out"
    finally:
        release.set()
    assert time.monotonic() - start < 1.5


def test_deadline_covers_redirects(site):
    site.routes["/start"] = redirect("/slow.png")
    site.routes["/slow.png"] = trickle()
    start = time.monotonic()
    assert refused(site.url("/start"), allow_nets=LOCAL, deadline=1) == "timed out"
    assert time.monotonic() - start < 2


# --- size cap ----------------------------------------------------------------------------------

def test_content_length_over_limit_refused_before_reading(site):
    site.routes["/big.png"] = body(b"x" * 5000)
    sink = Sink()
    with pytest.raises(InvalidURL, match="too large"):
        fetch.download(site.url("/big.png"), sink, max_bytes=4999, allow_nets=LOCAL)
    assert sink.chunks == []


def test_body_exactly_at_limit_is_accepted(site):
    site.routes["/a.png"] = body(b"x" * 5000, length=-1)
    sink = Sink()
    fetch.download(site.url("/a.png"), sink, max_bytes=5000, allow_nets=LOCAL)
    assert len(sink.data) == 5000


@pytest.mark.parametrize("kind", ["no content-length", "chunked"])
def test_unannounced_oversized_body_is_too_large(site, kind):
    data = os.urandom(300_000)
    site.routes["/big.png"] = body(data, length=-1, chunked=kind == "chunked")
    sink = Sink()
    with pytest.raises(InvalidURL, match="too large"):
        fetch.download(site.url("/big.png"), sink, max_bytes=100_000, allow_nets=LOCAL)
    assert len(sink.data) <= 100_000


def test_bytes_beyond_a_false_small_content_length_are_never_taken(site):
    # HTTP ends the body at Content-Length, so the extra bytes are not part of the download
    site.routes["/liar.png"] = body(b"a" * 10 + b"b" * 200_000, length=10)
    sink = Sink()
    fetch.download(site.url("/liar.png"), sink, max_bytes=1000, allow_nets=LOCAL)
    assert sink.data == b"a" * 10


def test_body_shorter_than_content_length(site):
    site.routes["/cut.png"] = body(b"x" * 10, length=100)
    assert refused(site.url("/cut.png"), allow_nets=LOCAL) == "connection closed early"


def test_write_errors_pass_through(site):
    site.routes["/a.png"] = body(b"x" * 10)

    def write(chunk):
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        fetch.download(site.url("/a.png"), write, max_bytes=100, allow_nets=LOCAL)


# --- sockets are closed ------------------------------------------------------------------------

def client_sockets_to(port: int) -> set[str]:
    """Inodes of this process's open TCP sockets whose peer is port."""
    peers = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if os.path.exists(table):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if int(fields[2].rsplit(":", 1)[1], 16) == port:
                    peers.add(fields[9])
    mine = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            mine.add(link[8:-1])
    return peers & mine


@pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="needs Linux /proc")
@pytest.mark.parametrize("path", ["/ok.png", "/missing", "/big.png", "/r", "/slow.png",
                                  "/cut.png", "/liar.png"])
def test_no_socket_left_open(site, path):
    site.routes.update({
        "/ok.png": body(b"ok"), "/big.png": body(b"x" * 5000, length=-1), "/r": redirect("/ok.png"),
        "/slow.png": trickle(), "/cut.png": body(b"x", length=10),
        "/liar.png": body(b"x" * 100, length=10),
    })
    error = None
    gc.collect()  # objects other tests left behind must not warn inside the block below
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always", ResourceWarning)
        try:
            fetch.download(site.url(path), Sink(), max_bytes=1000, allow_nets=LOCAL, deadline=1)
        except InvalidURL as exc:
            error = exc  # its traceback keeps the download's frames, and their objects, alive
        still_open = client_sockets_to(site.port)
        del error
        gc.collect()
    assert site.requests
    assert still_open == set()
    assert [w for w in warned if issubclass(w.category, ResourceWarning)] == []


# --- TLS ---------------------------------------------------------------------------------------

@pytest.fixture
def tls_site(tmp_path):
    """A site speaking TLS with a self-signed certificate for img.test, noting the SNI it sees."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs the openssl command to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", "/CN=img.test",
                    "-addext", "subjectAltName=DNS:img.test", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    names = []
    context.sni_callback = lambda sock, name, ctx: names.append(name)
    with WebHost(tls=context) as host:
        host.sni = names  # type: ignore[attr-defined]
        host.cert = cert  # type: ignore[attr-defined]
        yield host


def test_tls_verifies_certificate_and_sends_url_host(tls_site):
    tls_site.routes["/a.png"] = body(b"x")
    url = tls_site.url("/a.png", host="img.test", scheme="https")
    reason = refused(url, allow_nets=LOCAL, resolve=lambda h, p: ["127.0.0.1"])
    assert reason == "certificate not valid"
    assert tls_site.sni == ["img.test"]


def test_tls_to_plain_server_fails(site):
    assert refused(site.url("/a.png", scheme="https"), allow_nets=LOCAL) == "TLS error"


@pytest.fixture
def trusting(monkeypatch, tls_site):
    """Make the download trust the site's certificate, as if a public CA had signed it."""
    context = fetch._tls_context.__wrapped__()
    context.load_verify_locations(tls_site.cert)
    monkeypatch.setattr(fetch, "_tls_context", lambda: context)


def test_tls_download_pinned_with_url_host(tls_site, trusting):
    tls_site.routes["/a.png"] = body(b"secure")
    sink = Sink()
    got = fetch.download(tls_site.url("/a.png", host="img.test", scheme="https"), sink,
                         max_bytes=100, allow_nets=LOCAL, resolve=lambda h, p: ["127.0.0.1"])
    assert sink.data == b"secure"
    assert got.filename == "a.png"
    assert tls_site.sni == ["img.test"]
    assert tls_site.requests[0][1]["Host"] == f"img.test:{tls_site.port}"


def test_tls_host_name_mismatch_refused(tls_site, trusting):
    tls_site.routes["/a.png"] = body(b"secure")
    url = tls_site.url("/a.png", host="other.test", scheme="https")
    reason = refused(url, allow_nets=LOCAL, resolve=lambda h, p: ["127.0.0.1"])
    assert reason == "certificate not valid"
