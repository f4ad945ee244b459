"""Resumable uploads on real servers: continued through another process on the same data and
database, and after a restart; a PATCH whose connection is cut keeps what arrived; the gate
refuses bodies without a key or a session early; no upload id ever reaches a log."""
from __future__ import annotations

import hashlib
import logging
import os
import socket
import time

import pytest

import media
from conftest import LiveServer
from contract import assert_upload_ok
from people import add_user, sign_in
from tusclient import Tus

pytestmark = pytest.mark.paired


def _large_png(size: int) -> bytes:
    """A real PNG made about ``size`` bytes long by a text chunk of random letters."""
    image = media.png(320, 240, color=(200, 30, 90))
    text = b"note\0" + os.urandom(size // 2).hex().encode()
    return image[:33] + media.png_chunk(b"tEXt", text) + image[33:]


def _received(image: dict) -> str:
    """The md5 of the file as the server received it."""
    return image["source_checksum"] or image["checksum"]


def _no_id_in_logs(srv: LiveServer, locations: list[str]) -> None:
    lines = srv.stdout + srv.stderr
    for location in locations:
        upload_id = location.rsplit("/", 1)[1]
        assert not [line for line in lines if upload_id in line]


@pytest.fixture
def pair(tmp_path):
    first = LiveServer(tmp_path / "shared")
    second = LiveServer(tmp_path / "shared")
    second.key = first.key
    yield first, second
    first.stop()
    second.stop()


def test_a_resume_through_another_process(pair):
    a, b = pair
    data = _large_png(3 * 1024 * 1024)
    location = Tus(a).location(len(data), "long.png")
    half = len(data) // 2
    assert Tus(a).send(location, data[:half], 512 * 1024) == half
    assert Tus(b).offset(location) == half
    assert Tus(b).send(location, data, 700 * 1024, start=half) == len(data)
    image = assert_upload_ok(Tus(a).finish(location, title="Across"))
    assert _received(image) == hashlib.md5(data).hexdigest() and image["title"] == "Across"
    assert Tus(b).finish(location).status_code == 404
    _no_id_in_logs(a, [location])
    _no_id_in_logs(b, [location])


def test_a_resume_after_a_restart(tmp_path):
    srv = LiveServer(tmp_path / "data")
    key = srv.key
    data = _large_png(2 * 1024 * 1024)
    location = Tus(srv).location(len(data), "restart.png")
    Tus(srv).send(location, data[:1_000_000], 300_000)
    srv.stop()
    again = LiveServer(tmp_path / "data")
    again.key = key
    try:
        tus = Tus(again)
        assert tus.offset(location) == 1_000_000
        tus.send(location, data, 400_000, start=1_000_000)
        image = assert_upload_ok(tus.finish(location))
        assert _received(image) == hashlib.md5(data).hexdigest()
        _no_id_in_logs(srv, [location])
        _no_id_in_logs(again, [location])
    finally:
        again.stop()


def _cut_patch(srv: LiveServer, location: str, offset: int, body: bytes, total: int,
               headers: dict[str, str]) -> None:
    """Send a PATCH announcing ``total`` bytes, send ``body`` (fewer), then drop the connection."""
    lines = [f"PATCH {location} HTTP/1.1", f"Host: 127.0.0.1:{srv.port}", "Tus-Resumable: 1.0.0",
             f"Upload-Offset: {offset}", "Content-Type: application/offset+octet-stream",
             f"Content-Length: {total}", *(f"{k}: {v}" for k, v in headers.items())]
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        for start in range(0, len(body), 64 * 1024):
            sock.sendall(body[start:start + 64 * 1024])
        time.sleep(0.3)


def _offset_becomes(tus: Tus, location: str, wanted: int, within: float = 15) -> int:
    """The upload's offset once it is ``wanted`` (or the last one seen); 423 while the cut
    PATCH is being stored."""
    deadline = time.monotonic() + within
    found = -1
    while True:
        answer = tus.head(location)
        assert answer.status_code in (200, 423), answer.status_code
        if answer.status_code == 200:
            found = int(answer.headers["Upload-Offset"])
        if found == wanted or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def test_a_cut_patch_keeps_what_arrived(make_server):
    srv = make_server()
    data = _large_png(2 * 1024 * 1024)
    tus = Tus(srv)
    location = tus.location(len(data), "cut.png")
    tus.send(location, data[:300_000], 300_000)
    _cut_patch(srv, location, 300_000, data[300_000:1_100_000], len(data) - 300_000,
               {"X-API-Key": srv.key})
    assert _offset_becomes(tus, location, 1_100_000) == 1_100_000
    tus.send(location, data, 1 << 20, start=1_100_000)
    image = assert_upload_ok(tus.finish(location))
    assert _received(image) == hashlib.md5(data).hexdigest()
    _no_id_in_logs(srv, [location])


def test_a_cut_patch_of_a_signed_in_browser_keeps_what_arrived(make_server):
    srv = make_server()
    add_user(srv.config.database, "ann")
    session, token = sign_in(srv.url, "ann")
    tus = Tus(srv, auth={"X-CSRFToken": token}, session=session)
    data = _large_png(1024 * 1024)
    location = tus.location(len(data), "page.png")
    cookie = "; ".join(f"{c.name}={c.value}" for c in session.cookies)
    _cut_patch(srv, location, 0, data[:600_000], len(data), {"Cookie": cookie, "X-CSRFToken": token})
    assert _offset_becomes(tus, location, 600_000) == 600_000
    tus.send(location, data, 1 << 20, start=600_000)
    assert _received(assert_upload_ok(tus.finish(location))) == hashlib.md5(data).hexdigest()


def _answer_before_the_body(srv: LiveServer, headers: dict[str, str]) -> str:
    """The status line the server answers a 50 MB PATCH with before any of its body is sent."""
    lines = ["PATCH /api/1/tus/" + "A" * 48 + " HTTP/1.1", f"Host: 127.0.0.1:{srv.port}",
             "Tus-Resumable: 1.0.0", "Upload-Offset: 0",
             "Content-Type: application/offset+octet-stream", "Content-Length: 50000000",
             *(f"{k}: {v}" for k, v in headers.items())]
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        return sock.recv(4096).split(b"\r\n", 1)[0].decode()


def test_the_gate_refuses_bodies_without_a_key_or_a_session_early(make_server):
    srv = make_server(guest_uploads=1)
    assert " 401 " in _answer_before_the_body(srv, {}) + " "
    assert " 401 " in _answer_before_the_body(srv, {"X-API-Key": "imgz_wrong"}) + " "
    assert " 401 " in _answer_before_the_body(srv, {"Cookie": "imgz_session=x"}) + " "
    assert " 401 " in _answer_before_the_body(srv, {"X-CSRFToken": "x"}) + " "


def test_waitress_lines_naming_an_upload_are_masked(caplog):
    from imgz import logpaths

    logpaths.install()
    with caplog.at_level(logging.INFO, logger="waitress"):
        logging.getLogger("waitress").info("Client disconnected while serving %s",
                                           "/api/1/tus/SecretUploadId123")
        logging.getLogger("waitress").info("Client disconnected while serving /api/1/tus/Other9/finish")
    text = caplog.text
    assert "SecretUploadId123" not in text and "Other9" not in text
    assert "/api/1/tus/***" in text and "/api/1/tus/***/finish" in text
    assert logpaths.mask("/password/abc") == "/password/***"
    assert logpaths.mask("/image/x/delete/0123") == "/image/x/delete/***"
