"""A large upload streams through the server: its memory does not grow with the file."""
from __future__ import annotations

import base64
import json
import shutil
import subprocess
import threading

import pytest
import requests

import media

# Twice the bound below: a server that held the body even once in memory would pass it.
SIZE_MB = 100


def _kib(pid: int, field: str) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)


def _big_jpeg(path, size: int) -> None:
    """A valid JPEG followed by `size` bytes of data, as phones append videos to photos."""
    with open(path, "wb") as fh:
        fh.write(media.jpeg(800, 600))
        block = bytes(range(256)) * 4096
        written = 0
        while written < size:
            fh.write(block)
            written += len(block)


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl to stream the upload from disk")
def test_a_large_upload_keeps_server_memory_flat(make_server, tmp_path):
    srv = make_server(max_upload_mb=SIZE_MB + 50)
    big = tmp_path / "big.jpg"
    _big_jpeg(big, SIZE_MB * 1_000_000)
    warm = srv.upload(media.jpeg(800, 600))
    assert warm.status_code == 200
    before = _kib(srv.pid, "VmRSS")
    result = subprocess.run(
        ["curl", "-sS", "--fail-with-body", "-H", f"X-API-Key: {srv.key}",
         "-F", f"source=@{big};filename=big.jpg", srv.url + "/api/1/upload"],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    image = json.loads(result.stdout)["image"]
    peak = _kib(srv.pid, "VmHWM")
    grew_mb = (peak - before) / 1024
    print(f"peak RSS grew by {grew_mb:.1f} MB for a {SIZE_MB} MB upload")
    assert grew_mb < 50
    assert image["width"] == 800 and image["size"] < 1_000_000, "the appended data was removed"
    assert srv.tmp_files() == []


@pytest.mark.parametrize("key", ["imgz_wrong", None])
def test_a_large_form_from_a_client_without_a_valid_key_is_not_held_twice(make_server, key):
    """A refused or keyless client's urlencoded body is not kept in memory many times over."""
    srv = make_server(max_upload_mb=100)
    assert srv.get("/").status_code == 200
    before = _kib(srv.pid, "VmRSS")
    # the bound grows with the size: four bodies held at once, with the copies parsing makes of
    # each (about twelve bodies), would pass it at any size from 4 MB up
    size = 20_000_000
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if key:
        headers["X-API-Key"] = key
    body = b"format=txt&source=" + b"A" * size
    responses = []

    def send() -> None:
        responses.append(requests.post(srv.url + "/api/1/upload", data=body, headers=headers,
                                       timeout=120))

    senders = [threading.Thread(target=send) for _ in range(4)]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()
    assert [r.status_code for r in responses] == [401] * 4
    grew_mb = (_kib(srv.pid, "VmHWM") - before) / 1024
    print(f"peak RSS grew by {grew_mb:.0f} MB for 4 x {size // 1_000_000} MB bodies")
    # one body at a time: parsing holds about three copies of one body, never of four
    assert grew_mb < 4 * size / 1_048_576 + 30


# The bound is twice the size, and what a server holding the file would need grows with it
# (the text and the decoded file together are 2.3 times the size): any size shows it.
B64_MB = 15


def _b64_jpeg() -> tuple[str, bytes]:
    """A ~15 MB JPEG (a photo with data appended, which arrival strips) as base64 text."""
    head = media.jpeg(800, 600)
    block = bytes(range(256)) * 4096
    body = head + block * (B64_MB * 1_000_000 // len(block))
    return base64.b64encode(body).decode(), head


@pytest.mark.parametrize("form", ["multipart", "urlencoded"])
def test_a_base64_source_costs_at_most_twice_its_size(make_server, form):
    srv = make_server(max_upload_mb=B64_MB + 20)
    text, _ = _b64_jpeg()
    warm = srv.upload(base64.b64encode(media.jpeg(800, 600)).decode())
    assert warm.status_code == 200, warm.text
    before = _kib(srv.pid, "VmRSS")
    headers = {"X-API-Key": srv.key}
    if form == "multipart":
        # a field without a file name: a string part, as browsers and curl -F source=<file send it
        response = requests.post(srv.url + "/api/1/upload", files={"source": (None, text)},
                                 headers=headers, timeout=300)
    else:
        # the body requests would make of data={"source": text, "title": "big"}, made at once:
        # of the base64 alphabet only + / = need escaping
        escaped = text.replace("+", "%2B").replace("/", "%2F").replace("=", "%3D")
        body = f"source={escaped}&title=big".encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        response = requests.post(srv.url + "/api/1/upload", data=body, headers=headers, timeout=300)
    assert response.status_code == 200, response.text
    image = response.json()["image"]
    grew_mb = (_kib(srv.pid, "VmHWM") - before) / 1024
    print(f"peak RSS grew by {grew_mb:.1f} MB for a {B64_MB} MB file sent as base64 ({form})")
    assert grew_mb < 2 * B64_MB
    assert image["width"] == 800 and image["size"] < 1_000_000, "the appended data was removed"
    assert srv.rows() == 2 and srv.tmp_files() == []
