"""A large upload streams through the server: its memory does not grow with the file."""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest

import media

SIZE_MB = 300


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
def test_300_mb_upload_keeps_server_memory_flat(make_server, tmp_path):
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
