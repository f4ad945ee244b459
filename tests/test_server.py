"""The server under slow, idle and keyless clients: real ``app.py serve``, raw loopback sockets.

Attack sockets come from other loopback addresses (127.0.1.x, 127.0.2.x: all of 127/8 is local
on Linux), so the per-address cap and the deadlines can each be seen, while the legitimate
client comes from 127.0.0.1. Every test is bounded in sockets and in time; a request that hangs
fails on its client timeout.
"""
from __future__ import annotations

import contextlib
import http.client
import itertools
import resource
import socket
import threading
import time
from typing import Iterator

import pytest
import requests

import media
from conftest import LiveServer
from contract import assert_error, assert_upload_ok

ANSWER_WITHIN = 10  # seconds: generous; a request that hangs is the failure
PNG = media.png(64, 48)
BIG = 5_000_000  # a body well past body.KEYLESS_BODY


@pytest.fixture(autouse=True, scope="module")
def open_files() -> Iterator[None]:
    """Room for a thousand sockets in this process too."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def connect(srv: LiveServer, source: str, timeout: float = ANSWER_WITHIN) -> socket.socket:
    return socket.create_connection(("127.0.0.1", srv.port), timeout=timeout, source_address=(source, 0))


@contextlib.contextmanager
def held(srv: LiveServer, count: int, sources: list[str], payload: bytes) -> Iterator[list[socket.socket]]:
    """``count`` sockets spread over ``sources``, each having sent ``payload`` and waiting."""
    socks: list[socket.socket] = []
    try:
        for i in range(count):
            sock = connect(srv, sources[i % len(sources)])
            sock.sendall(payload)
            socks.append(sock)
        yield socks
    finally:
        for sock in socks:
            sock.close()


@contextlib.contextmanager
def dripping(socks: list[socket.socket], every: float, text: bytes) -> Iterator[None]:
    """Send the next byte of ``text`` on every socket each ``every`` seconds, in a thread."""
    stop = threading.Event()

    def drip() -> None:
        at = 0
        while not stop.wait(every):
            for sock in socks:
                with contextlib.suppress(OSError):
                    sock.send(text[at % len(text):at % len(text) + 1])
            at += 1

    thread = threading.Thread(target=drip, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)


def sources(prefix: str, count: int) -> list[str]:
    return [f"{prefix}.{i}" for i in range(1, count + 1)]


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """Whether the server closes the socket (EOF or reset) within ``within`` seconds."""
    sock.settimeout(0.2)
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if sock.recv(65536) == b"":
                return True
        except socket.timeout:
            continue
        except OSError:
            return True
    return False


def assert_served(srv: LiveServer, file_path: str) -> None:
    """A fresh page, a file and a keyed upload, each answered with its right status."""
    assert requests.get(srv.url + "/", timeout=ANSWER_WITHIN).status_code == 200
    assert requests.get(srv.url + file_path, timeout=ANSWER_WITHIN).status_code == 200
    response = requests.post(srv.url + "/api/1/upload", headers={"X-API-Key": srv.key},
                             files={"source": ("a.png", media.png(40, 30))}, timeout=ANSWER_WITHIN)
    assert_upload_ok(response)


def uploaded_path(srv: LiveServer) -> str:
    image = assert_upload_ok(srv.upload(PNG))
    return "/" + image["url"].split("/", 3)[3]


# ---------------------------------------------------------------------------------------------
# Idle and slow connections

@pytest.fixture(scope="module")
def plain(tmp_path_factory) -> Iterator[LiveServer]:
    """A server with the default settings, shared: each test's clients come from addresses of
    their own and are gone when it ends."""
    srv = LiveServer(tmp_path_factory.mktemp("plain"))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def quick_deadline(tmp_path_factory) -> Iterator[LiveServer]:
    """A header deadline (and body grace) of one second: a drip is cut off within two."""
    srv = LiveServer(tmp_path_factory.mktemp("deadline"), {"IMGZ_HEADER_TIMEOUT": "1"})
    yield srv
    srv.stop()


def test_a_thousand_half_request_lines_do_not_stop_the_server(plain):
    srv = plain
    path = uploaded_path(srv)
    # 20 addresses x 50 sockets: under the per-address cap, so only the deadlines hold them
    with held(srv, 1000, sources("127.0.1", 20), b"GET / HT"):
        assert_served(srv, path)


def test_dripping_request_lines_do_not_stop_the_server(plain):
    srv = plain
    path = uploaded_path(srv)
    with held(srv, 300, sources("127.0.2", 10), b"G") as socks, dripping(socks, 0.4, b"ET / HTTP/1.1\r\n"):
        time.sleep(1.0)  # a drip or two has gone out, and the server has checked its deadlines
        assert_served(srv, path)


def test_a_dripping_head_is_cut_off_at_the_header_deadline(quick_deadline):
    srv = quick_deadline
    # a byte every 0.2 s: five or more arrive before the deadline, which they do not put off
    with held(srv, 3, ["127.0.3.1"], b"G") as socks, dripping(socks, 0.2, b"ET / HTTP/1.1\r\nX-A: b\r\n"):
        assert all(closed_by_server(sock, 8) for sock in socks)
    assert requests.get(srv.url + "/", timeout=ANSWER_WITHIN).status_code == 200


def test_a_dripping_body_is_cut_off_by_its_rate(quick_deadline):
    srv = quick_deadline
    head = (f"POST /api/1/upload HTTP/1.1\r\nHost: x\r\nX-API-Key: {srv.key}\r\n"
            "Content-Type: application/octet-stream\r\nContent-Length: 100000\r\n\r\n").encode()
    with held(srv, 3, ["127.0.3.2"], head) as socks, dripping(socks, 0.2, b"x"):
        assert all(closed_by_server(sock, 10) for sock in socks)


def test_an_idle_keep_alive_connection_still_gets_its_next_answer_in_time(quick_deadline):
    srv = quick_deadline
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=ANSWER_WITHIN)
    # idle for 0.4 s between requests, under the 1 s deadline, while the connection as a whole
    # lives past it: the deadline counts from the end of the previous answer
    for index in range(4):
        if index:
            time.sleep(0.4)
        conn.request("GET", "/")
        response = conn.getresponse()
        response.read()
        assert response.status == 200
    conn.close()


# ---------------------------------------------------------------------------------------------
# Connections per address

@pytest.fixture(scope="module")
def capped(tmp_path_factory) -> Iterator[LiveServer]:
    """Five connections per address and 2 MB for keyless bodies: the two caps below, each
    tested from addresses of its own."""
    srv = LiveServer(tmp_path_factory.mktemp("capped"), {"IMGZ_CONNECTIONS_PER_ADDRESS": "5",
                                                         "IMGZ_KEYLESS_SPOOL_MB": "2"})
    yield srv
    srv.stop()


def test_one_address_gets_no_more_than_its_connections(capped):
    srv = capped
    with held(srv, 5, ["127.0.4.1"], b"GET / HT"):
        time.sleep(0.5)  # all five accepted
        with connect(srv, "127.0.4.1") as extra:
            extra.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = extra.recv(65536)
        assert answer.startswith(b"HTTP/1.1 503") or answer == b""
        assert requests.get(srv.url + "/", timeout=ANSWER_WITHIN).status_code == 200
        with connect(srv, "127.0.4.2") as other:
            other.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert other.recv(65536).startswith(b"HTTP/1.1 200")


def test_behind_a_trusted_proxy_there_is_no_per_address_cap(make_server):
    srv = make_server(connections_per_address="2", trust_proxy="1")
    with held(srv, 4, ["127.0.4.3"], b"GET / HT"):
        with connect(srv, "127.0.4.3") as extra:
            extra.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 192.0.2.7\r\n"
                          b"Connection: close\r\n\r\n")
            assert extra.recv(65536).startswith(b"HTTP/1.1 200")
        head = upload_head("", {"X-API-Key": "imgz_wrong", "X-Forwarded-For": "192.0.2.7"})
        assert_error(answer_to_head(srv, head, source="127.0.4.3"), 401, 100, "Invalid API key.")


# ---------------------------------------------------------------------------------------------
# Bodies without a valid key

def upload_head(query: str = "", headers: dict[str, str] | None = None, *, length: int = BIG,
                content_type: str = "multipart/form-data; boundary=b0undary") -> bytes:
    lines = [f"POST /api/1/upload{query} HTTP/1.1", "Host: 127.0.0.1", f"Content-Type: {content_type}",
             f"Content-Length: {length}", *(f"{k}: {v}" for k, v in (headers or {}).items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class Raw:
    """An answer read off a raw socket, shaped like requests' for the contract helpers."""

    def __init__(self, sock: socket.socket) -> None:
        response = http.client.HTTPResponse(sock)
        response.begin()
        self.status_code = response.status
        self.headers = {k.title(): v for k, v in response.getheaders()}
        self.headers = requests.structures.CaseInsensitiveDict(self.headers)
        self.content = response.read()
        self.text = self.content.decode()

    def json(self):
        import json

        return json.loads(self.content)


def answer_to_head(srv: LiveServer, head: bytes, source: str = "127.0.5.1") -> Raw:
    """Send only the head of a request whose body is never sent; the answer must come anyway."""
    with connect(srv, source) as sock:
        sock.sendall(head)
        return Raw(sock)


@pytest.fixture(scope="module")
def strict(plain) -> LiveServer:
    return plain


EARLY = [
    # (name, query, headers, content type, message)
    ("wrong header key", "", {"X-API-Key": "imgz_wrong"}, None, "Invalid API key."),
    ("wrong query key", "?key=imgz_wrong", {}, None, "Invalid API key."),
    ("wrong header key, right-looking query", "?key=", {"X-API-Key": "nope"}, None, "Invalid API key."),
    ("no key, body not a form", "", {}, "application/octet-stream", "No key provided"),
    ("no key, chunked body not a form", "", {"Transfer-Encoding": "chunked"}, "image/png", "No key provided"),
]


@pytest.mark.parametrize("name,query,headers,content_type,message", EARLY, ids=[c[0] for c in EARLY])
def test_keyless_upload_is_refused_before_its_body(strict, name, query, headers, content_type, message):
    head = upload_head(query, headers, content_type=content_type or "multipart/form-data; boundary=b0undary")
    if "Transfer-Encoding" in headers:
        head = head.replace(f"Content-Length: {BIG}\r\n".encode(), b"")
    assert_error(answer_to_head(strict, head), 401, 100, message)
    assert strict.tmp_files() == []


@pytest.mark.parametrize("fmt", ["txt", "redirect"])
def test_early_refusal_answers_in_the_query_format(strict, fmt):
    answer = answer_to_head(strict, upload_head(f"?key=imgz_wrong&format={fmt}"))
    assert answer.status_code == 401
    assert answer.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert answer.text == "Invalid API key."


def test_keyless_clients_holding_their_bodies_hold_no_disk(strict):
    body = b"x" * (BIG - 10)  # all but 10 bytes
    answers = []
    socks = []
    try:
        for i in range(20):
            sock = connect(strict, f"127.0.5.{10 + i}")
            socks.append(sock)
            sock.sendall(upload_head("", {"X-API-Key": "imgz_wrong"}))
            answers.append(Raw(sock))
            with contextlib.suppress(OSError):
                sock.sendall(body)
        assert [a.status_code for a in answers] == [401] * 20
        assert strict.tmp_files() == []
    finally:
        for sock in socks:
            sock.close()


def test_a_valid_key_in_the_body_still_uploads_a_large_body(strict):
    padding = "p" * 1_500_000  # past body.KEYLESS_BODY: the gate must let it through
    response = requests.post(strict.url + "/api/1/upload", data={"key": strict.key, "title": padding[:10],
                                                                 "description": "d"},
                             files={"source": ("a.png", PNG), "pad": ("pad.bin", padding.encode())},
                             timeout=60)
    # a second file part is thrown away by the application; the upload stands
    assert_upload_ok(response)


def test_a_valid_header_key_uploads_a_large_body(strict):
    large = media.png(1200, 900)
    response = requests.post(strict.url + "/api/1/upload", headers={"X-API-Key": strict.key},
                             files={"source": ("big.png", large)}, timeout=60)
    assert_upload_ok(response)


def test_keyless_bodies_past_the_spool_cap_get_503(capped):
    srv = capped
    head = upload_head(length=1_500_000)
    with connect(srv, "127.0.6.1") as holder:
        holder.sendall(head + b"y" * 1_400_000)  # a form, no key: counted, held
        time.sleep(0.5)
        answer = answer_to_head(srv, head, source="127.0.6.2")
        assert_error(answer, 503, 503, "Server busy - retry in 10 s")
        assert answer.headers["Retry-After"] == "10"
    # the holder's bytes are given back when it goes (a moment later: the server has to see it)
    deadline = time.monotonic() + 5
    for attempt in itertools.count(3):
        with connect(srv, f"127.0.6.{attempt}") as after:
            with contextlib.suppress(OSError):  # a 503 comes before the body is read
                after.sendall(head + b"y" * 1_500_000)
            answer = Raw(after)
        if answer.status_code != 503 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert_error(answer, 401, 100, "No key provided")
