"""Large uploads with a valid key go to the application while their body arrives
(channel.py, bodypipe.py): the pipe itself, then a real server with IMGZ_STREAM_MB=1, sent to
over raw sockets so that a test decides when each byte leaves."""
from __future__ import annotations

import hashlib
import io
import json
import os
import random
import socket
import threading
import time

import pytest
from PIL import Image

import media
from imgz.bodypipe import BodyCut, BodyPipe

pytestmark = pytest.mark.paired

BOUNDARY = "imgzstreamtestboundary"


# -- the pipe ------------------------------------------------------------------------------------

def test_pipe_reads_what_was_put_in_order_at_any_size():
    wakes = []
    pipe = BodyPipe(10, room=100, wake=lambda: wakes.append(1))
    assert pipe.received(b"abc") == 3
    assert pipe.received(b"defghijXYZ") == 7   # past the length: not taken
    assert pipe.completed and len(pipe) == 10
    assert pipe.read(2) == b"ab"
    assert pipe.read(4) == b"cdef"
    assert pipe.read() == b"ghij"
    assert pipe.read(5) == b"" and pipe.read() == b""
    assert pipe.taken == 10


def test_pipe_reader_waits_for_bytes_then_gets_the_end():
    pipe = BodyPipe(6, room=100, wake=lambda: None)
    got = []
    reader = threading.Thread(target=lambda: got.extend([pipe.read(100), pipe.read(100),
                                                         pipe.read(100)]))
    reader.start()
    time.sleep(0.05)
    assert reader.is_alive()  # nothing to read yet
    pipe.received(b"abc")
    time.sleep(0.05)
    pipe.received(b"def")
    reader.join(5)
    assert b"".join(got) == b"abcdef" and got[-1] == b""


def test_pipe_cut_midway_raises_in_the_reader_and_a_finished_one_does_not():
    pipe = BodyPipe(6, room=100, wake=lambda: None)
    pipe.received(b"abc")
    errors = []

    def read_all():
        try:
            pipe.read()
        except BodyCut as exc:
            errors.append(exc)

    reader = threading.Thread(target=read_all)
    reader.start()
    time.sleep(0.05)
    pipe.cut()
    reader.join(5)
    assert len(errors) == 1 and isinstance(errors[0], ValueError)
    assert "3 of 6" in str(errors[0])
    done = BodyPipe(3, room=100, wake=lambda: None)
    done.received(b"xyz")
    done.cut()
    assert done.read() == b"xyz"


def test_pipe_full_pauses_the_loop_until_half_is_read():
    wakes = []
    pipe = BodyPipe(100, room=10, wake=lambda: wakes.append(1))
    pipe.received(b"0123456789")
    assert pipe.full()
    time.sleep(0.05)
    assert pipe.paused(time.monotonic()) >= 0.04
    assert pipe.read(3) == b"012" and pipe.full() is False and not wakes  # 7 held: not half yet
    assert pipe.read(2) == b"34"
    assert wakes == [1] and not pipe.full()
    paused = pipe.paused(time.monotonic())
    time.sleep(0.02)
    assert pipe.paused(time.monotonic()) == paused  # no longer counting


def test_abandoned_pipe_throws_the_rest_away():
    wakes = []
    pipe = BodyPipe(20, room=5, wake=lambda: wakes.append(1))
    pipe.received(b"01234567")
    pipe.abandon()
    assert wakes and not pipe.full()
    assert pipe.received(b"89abcdefghij") == 12
    assert pipe.completed and pipe.read() == b""


# -- through the server --------------------------------------------------------------------------

def noise_png(width: int = 1200, height: int = 900) -> bytes:
    """A PNG of random pixels (about 3 MB: it does not compress)."""
    rng = random.Random(width * height)
    image = Image.frombytes("RGB", (width, height), rng.randbytes(width * height * 3))
    out = io.BytesIO()
    image.save(out, "PNG", compress_level=1)
    return out.getvalue()


def form(fields: list[tuple[str, str]], filename: str, content: bytes,
         content_type: str = "application/octet-stream") -> bytes:
    out = bytearray()
    for name, value in fields:
        out += (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n"
                f"{value}\r\n").encode()
    out += (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"source\"; "
            f"filename=\"{filename}\"\r\nContent-Type: {content_type}\r\n\r\n").encode()
    out += content + f"\r\n--{BOUNDARY}--\r\n".encode()
    return bytes(out)


def head(srv, body: bytes, *, key_in: str = "header", extra: str = "") -> bytes:
    target = "/api/1/upload" + (f"?key={srv.key}" if key_in == "query" else "")
    key = f"X-API-Key: {srv.key}\r\n" if key_in == "header" else ""
    return (f"POST {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n{key}"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
            f"Content-Length: {len(body)}\r\n{extra}\r\n").encode()


def read_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP answer off the socket: status, headers (lower-case names), body."""
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(65536)
        if not piece:
            raise ConnectionError(f"closed after {data!r}")
        data += piece
    top, _, rest = data.partition(b"\r\n\r\n")
    lines = top.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        piece = sock.recv(65536)
        if not piece:
            break
        rest += piece
    return status, headers, rest[:length]


def wait_for(check, seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


def spooled_bytes(srv) -> int:
    """Bytes in the upload files being written under <data>/tmp."""
    total = 0
    for name in srv.tmp_files():
        try:
            total += os.path.getsize(srv.data / name)
        except OSError:
            pass
    return total


@pytest.fixture
def streaming(make_server):
    return make_server(stream_mb=1, header_timeout=2, body_min_rate_kb=50)


@pytest.mark.parametrize("key_in", ["header", "query"])
def test_upload_is_written_while_its_body_arrives(streaming, key_in):
    srv = streaming
    content = noise_png()
    body = form([("title", "streamed")], "noise.png", content, "image/png")
    half = len(body) // 2
    with socket.create_connection(("127.0.0.1", srv.port), timeout=60) as sock:
        sock.sendall(head(srv, body, key_in=key_in) + body[:half])
        # the server writes the upload before the rest is sent: it does not wait for the body
        assert wait_for(lambda: spooled_bytes(srv) >= half - 64 * 1024), srv.tmp_files()
        sock.sendall(body[half:])
        status, headers, answer = read_answer(sock)
    assert status == 200, answer
    image = json.loads(answer)["image"]
    assert image["title"] == "streamed"
    sent = hashlib.md5(content).hexdigest()
    assert (image["source_checksum"] or image["checksum"]) == sent
    assert headers.get("connection", "").lower() != "close"
    assert srv.rows() == 1


def test_streamed_video_keeps_its_checksums_and_loses_its_tags(streaming):
    srv = streaming
    content = media.clip("mp4", size="1280x720", seconds=4, rate=30,
                         tags={"location": "+48.8584+002.2945/", "title": "Trip"})
    assert len(content) > 2_000_000  # well past IMGZ_STREAM_MB
    body = form([], "trip.mp4", content, "video/mp4")
    with socket.create_connection(("127.0.0.1", srv.port), timeout=60) as sock:
        sock.sendall(head(srv, body))
        for at in range(0, len(body), 256 * 1024):
            sock.sendall(body[at:at + 256 * 1024])
        status, _, answer = read_answer(sock)
    assert status == 200, answer
    image = json.loads(answer)["image"]
    stored = srv.stored_bytes(image["url"])
    assert image["source_checksum"] == hashlib.md5(content).hexdigest()
    assert image["checksum"] == hashlib.md5(stored).hexdigest()
    assert b"+48.8584" not in stored and image["title"] == "Trip"


def test_expect_continue_is_answered_before_the_body(streaming):
    srv = streaming
    body = form([], "noise.png", noise_png(), "image/png")
    with socket.create_connection(("127.0.0.1", srv.port), timeout=60) as sock:
        sock.sendall(head(srv, body, extra="Expect: 100-continue\r\n"))
        first = sock.recv(1024)
        assert first.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(body)
        status, _, answer = read_answer(sock)
    assert status == 200, answer


def test_cut_midway_stores_nothing_and_frees_its_stream(streaming):
    srv = streaming
    body = form([], "noise.png", noise_png(), "image/png")
    for _ in range(3):   # more cuts than the server has streams: each one gives its own back
        sock = socket.create_connection(("127.0.0.1", srv.port), timeout=60)
        sock.sendall(head(srv, body) + body[:len(body) // 2])
        assert wait_for(lambda: spooled_bytes(srv) > 0)
        sock.close()
        assert wait_for(lambda: not srv.tmp_files()), srv.tmp_files()
    assert srv.rows() == 0 and not srv.stored_files()
    test_upload_is_written_while_its_body_arrives(srv, "header")


def test_stalled_body_is_cut_off_and_nothing_is_stored(streaming):
    srv = streaming
    body = form([], "noise.png", noise_png(), "image/png")
    with socket.create_connection(("127.0.0.1", srv.port), timeout=60) as sock:
        sock.sendall(head(srv, body) + body[:len(body) // 3])
        sock.settimeout(30)
        closed = sock.recv(1024)   # the server gives up on a body that stopped coming
    assert closed == b"" or closed.startswith(b"HTTP/1.1 ")
    assert wait_for(lambda: not srv.tmp_files()), srv.tmp_files()
    assert srv.rows() == 0
    assert srv.get("/healthz").status_code == 200


def test_answer_before_the_whole_body_closes_the_connection_gracefully(streaming):
    srv = streaming
    # more fields than a form may have, then a large part: refused once the count is past
    fields = [(f"f{i}", "x") for i in range(10_050)]
    body = form(fields, "noise.png", noise_png(1400, 1000), "image/png")
    with socket.create_connection(("127.0.0.1", srv.port), timeout=60) as sock:
        sock.sendall(head(srv, body))

        def send_rest():
            try:
                for at in range(0, len(body), 64 * 1024):
                    sock.sendall(body[at:at + 64 * 1024])
            except OSError:
                pass  # the server closed: what it answered is still read below

        sender = threading.Thread(target=send_rest)
        sender.start()
        status, headers, answer = read_answer(sock)
        sender.join(30)
    assert status == 413, answer
    assert json.loads(answer)["error"]["message"].startswith("Too many form fields")
    assert headers["connection"].lower() == "close"
    assert wait_for(lambda: not srv.tmp_files()), srv.tmp_files()
    assert srv.rows() == 0


def test_next_request_on_the_connection_is_answered_after_a_streamed_one(streaming):
    srv = streaming
    body = form([], "noise.png", noise_png(), "image/png")
    follow = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    with socket.create_connection(("127.0.0.1", srv.port), timeout=60) as sock:
        sock.sendall(head(srv, body) + body + follow)
        first = read_answer(sock)
        second = read_answer(sock)
    assert first[0] == 200 and second[0] == 200
    assert json.loads(first[2])["image"]["extension"] == "png"


def test_two_at_once_beyond_the_streams_still_upload(streaming):
    srv = streaming
    content = noise_png()
    body = form([], "noise.png", content, "image/png")
    results = []

    def one():
        with socket.create_connection(("127.0.0.1", srv.port), timeout=120) as sock:
            sock.sendall(head(srv, body))
            for at in range(0, len(body), 128 * 1024):
                sock.sendall(body[at:at + 128 * 1024])
                time.sleep(0.002)
            results.append(read_answer(sock))

    threads = [threading.Thread(target=one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert [r[0] for r in results] == [200] * 4
    sums = {json.loads(r[2])["image"]["checksum"] for r in results}
    assert sums == {hashlib.md5(content).hexdigest()}
    assert srv.rows() == 4


def test_stream_off_receives_whole_bodies_first(make_server):
    srv = make_server(stream_mb=0)
    body = form([], "noise.png", noise_png(), "image/png")
    with socket.create_connection(("127.0.0.1", srv.port), timeout=60) as sock:
        sock.sendall(head(srv, body) + body[:len(body) // 2])
        time.sleep(1)
        assert spooled_bytes(srv) == 0   # held by the server, not yet an upload file
        sock.sendall(body[len(body) // 2:])
        status, _, answer = read_answer(sock)
    assert status == 200, answer


def test_a_body_still_arriving_holds_no_place_in_the_upload_queue(make_server):
    # one place in all (one worker, no queue): a slow sender must not take it while it sends
    srv = make_server(stream_mb=1, workers=1, upload_queue=0)
    content = noise_png()
    body = form([], "noise.png", content, "image/png")
    with socket.create_connection(("127.0.0.1", srv.port), timeout=60) as sock:
        sock.sendall(head(srv, body) + body[:len(body) // 2])
        assert wait_for(lambda: spooled_bytes(srv) > 0)
        small = srv.upload(media.png(64, 64))
        assert small.status_code == 200, small.text
        sock.sendall(body[len(body) // 2:])
        status, _, answer = read_answer(sock)
    assert status == 200, answer
    assert json.loads(answer)["image"]["checksum"] == hashlib.md5(content).hexdigest()
