"""A stop (SIGTERM, as systemd sends it) lets requests in progress finish and ends the process
cleanly: exit status 0, no traceback, no new connection taken meanwhile, idle ones not waited for."""
from __future__ import annotations

import json
import signal
import socket
import time
import uuid
from pathlib import Path

import pytest

import media
from conftest import LiveServer


@pytest.fixture
def srv(tmp_path):
    server = LiveServer(tmp_path / "data")
    try:
        yield server
    finally:
        server.stop()


def stopped(srv: LiveServer) -> tuple[int, str]:
    """SIGTERM; the exit status and everything the server said on stderr."""
    srv.proc.send_signal(signal.SIGTERM)
    code = srv.proc.wait(timeout=60)
    srv.proc.stderr.close()  # its reader thread ends at the end of the stream
    return code, "".join(srv.stderr)


def upload_head(srv: LiveServer, body: bytes, boundary: str) -> bytes:
    return (f"POST /api/1/upload HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\n"
            f"X-API-Key: {srv.key}\r\nExpect: 100-continue\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()


def multipart(data: bytes, boundary: str) -> bytes:
    return (f"--{boundary}\r\nContent-Disposition: form-data; name=\"source\"; filename=\"a.jpg\"\r\n"
            f"Content-Type: image/jpeg\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()


def read_answer(sock: socket.socket) -> tuple[int, bytes]:
    """The status and body of one answer (Content-Length framed), read to the end."""
    raw = b""
    while b"\r\n\r\n" not in raw:
        raw += sock.recv(65536)
    head, _, body = raw.partition(b"\r\n\r\n")
    length = int(next(line.split(b":", 1)[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:")))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(head.split(b" ", 2)[1]), body


def test_an_upload_under_way_is_answered_and_no_new_connection_is_taken(srv):
    boundary = uuid.uuid4().hex
    body = multipart(media.jpeg(1200, 900), boundary)
    with socket.create_connection(("127.0.0.1", srv.port), timeout=60) as sock:
        sock.sendall(upload_head(srv, body, boundary))
        # the server has the headers once it asks for the body
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue")
        srv.proc.send_signal(signal.SIGTERM)
        # it stops listening at once but waits for this body: no other connection gets in
        with pytest.raises(ConnectionRefusedError):
            for _ in range(200):  # until the loop has seen the signal (one poll at most)
                socket.create_connection(("127.0.0.1", srv.port), timeout=5).close()
                time.sleep(0.05)
        sock.sendall(body)
        status, answer = read_answer(sock)
    assert status == 200, answer
    assert json.loads(answer)["image"]["width"] == 1200
    assert srv.proc.wait(timeout=60) == 0
    said = "".join(srv.stderr)
    assert said.rstrip().endswith("imgz: stopped") and "Traceback" not in said
    assert "unanswered" not in said


def closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(100) == b""
    except ConnectionResetError:  # half a request is dropped at once
        return True


@pytest.mark.parametrize("held", ["keep-alive", "half a request line"])
def test_idle_connections_do_not_hold_the_stop(srv, held):
    with socket.create_connection(("127.0.0.1", srv.port), timeout=60) as sock:
        if held == "keep-alive":
            sock.sendall(f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\n\r\n".encode())
            assert read_answer(sock)[0] == 200
        else:
            sock.sendall(b"GET /imag")
        code, said = stopped(srv)
        assert closed(sock)
    assert code == 0 and "Traceback" not in said and "unanswered" not in said
    assert said.rstrip().endswith("imgz: stopped")


def descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_stop_after_uploads_ends_the_workers_too(srv):
    """systemd's KillMode=mixed signals imgz alone: its fork server and workers must end with it."""
    for _ in range(2):
        assert srv.upload(media.jpeg(640, 480)).status_code == 200
    helpers = descendants(srv.pid)
    assert helpers, "the fork server and a worker run"
    code, said = stopped(srv)
    assert code == 0 and "Traceback" not in said
    for _ in range(200):  # they end when their pipes to imgz close
        if not any(running(pid) for pid in helpers):
            break
        time.sleep(0.05)
    assert not [pid for pid in helpers if running(pid)]
