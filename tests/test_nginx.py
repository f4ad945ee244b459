"""The README's nginx site in front of imgz with IMGZ_ACCEL=nginx: files keep their headers."""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

import media
from conftest import ROOT, LiveServer
from contract import assert_upload_ok
from imgz.fileheaders import DOCUMENT_CSP

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is not installed")


def readme_snippet(name: str = "nginx-snippet") -> str:
    readme = (ROOT / "README.md").read_text()
    block = readme.split(f"<!-- {name} -->", 1)[1].split(f"<!-- /{name} -->", 1)[0]
    return block.split("```nginx", 1)[1].split("```", 1)[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def fronted(tmp_path_factory):
    """imgz behind the README's nginx site, shared by this module's tests."""
    tmp_path = tmp_path_factory.mktemp("fronted")
    srv = LiveServer(tmp_path / "data", {"IMGZ_ACCEL": "nginx", "IMGZ_TRUST_PROXY": "1"})
    try:
        yield from _behind_nginx(srv, tmp_path)
    finally:
        srv.stop()


def _behind_nginx(srv: LiveServer, tmp_path: Path, s3_endpoint: str = ""):
    port = free_port()
    site = readme_snippet()
    if s3_endpoint:
        site = with_bucket(site, s3_endpoint)
    site = site.replace("listen 80;", f"listen 127.0.0.1:{port};")
    site = site.replace("server 127.0.0.1:8080;", f"server 127.0.0.1:{srv.port};")
    site = site.replace("/srv/imgz/data/images/", f"{srv.data}/images/")
    proc = run_nginx(tmp_path / "nginx", site, port)
    url = f"http://127.0.0.1:{port}"
    try:
        yield srv, url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def with_bucket(site: str, endpoint: str) -> str:
    """The README's site with its S3 location inside the server block, for ``endpoint``."""
    bucket_site = readme_snippet("nginx-s3-snippet")
    bucket_site = bucket_site.replace("https://s3.example.org", endpoint)
    bucket_site = bucket_site.replace("s3.example.org", endpoint.split("://", 1)[1])
    head, _, tail = site.rpartition("}")
    return head + bucket_site + "}" + tail


def run_nginx(prefix: Path, site: str, port: int) -> subprocess.Popen:
    """nginx in its own folder with ``site`` in its http block, once it listens on ``port``."""
    prefix.mkdir()
    user = "user root;" if os.geteuid() == 0 else ""
    (prefix / "nginx.conf").write_text(f"""
{user}
daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log;
events {{ worker_connections 128; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    default_type application/octet-stream;
{site}
}}
""")
    proc = subprocess.Popen([NGINX, "-p", str(prefix), "-c", str(prefix / "nginx.conf")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError((prefix / "error.log").read_text())
            time.sleep(0.05)


def test_files_through_nginx_keep_type_and_security_headers(fronted):
    srv, url = fronted
    data = media.jpeg(800, 600)
    response = requests.post(url + "/api/1/upload", headers={"X-API-Key": srv.key},
                             files={"source": ("front.jpg", data)}, timeout=30)
    image = assert_upload_ok(response)
    assert image["url"].startswith(url + "/images/"), "the answer names the public address"
    for file_url, body in ((image["url"], data), (image["thumb"]["url"], None)):
        got = requests.get(file_url, timeout=10)
        assert got.status_code == 200
        assert got.headers["Content-Type"] == "image/jpeg"
        assert got.headers["X-Content-Type-Options"] == "nosniff"
        assert got.headers["Content-Security-Policy"] == "default-src 'none'; sandbox"
        assert "max-age" in got.headers["Cache-Control"]
        if body is not None:
            assert hashlib.md5(got.content).hexdigest() == image["checksum"]
    part = requests.get(image["url"], headers={"Range": "bytes=10-19"}, timeout=10)
    assert part.status_code == 206 and len(part.content) == 10
    direct = requests.get(image["url"], headers={"Sec-Fetch-Dest": "document"}, timeout=10)
    assert direct.headers["Content-Security-Policy"] == DOCUMENT_CSP
    assert direct.headers["Vary"] == "Sec-Fetch-Dest"


def test_internal_location_is_not_reachable_directly(fronted):
    srv, url = fronted
    image = assert_upload_ok(srv.upload(media.png(40, 30)))
    relpath = image["url"].split("/images/", 1)[1]
    assert requests.get(f"{url}/_imgz_media/{relpath}", timeout=10).status_code == 404


def test_unknown_and_expired_files_stay_404_through_nginx(fronted):
    srv, url = fronted
    assert requests.get(url + "/images/2020/01/01/none.png", timeout=10).status_code == 404
    assert re.search(r"404", requests.get(url + "/images/../imgz.db", timeout=10).text)


# --- files in an S3 bucket (SeaweedFS), handed to nginx as a signed path ---------------------

@pytest.fixture(scope="module")
def fronted_s3(tmp_path_factory, s3_server):
    """imgz on a bucket behind the README's site with its S3 location."""
    bucket = s3_server.bucket.fresh()
    tmp_path = tmp_path_factory.mktemp("fronted-s3")
    srv = LiveServer(tmp_path / "data", bucket.env(accel="nginx", trust_proxy="1"))
    try:
        for _, front in _behind_nginx(srv, tmp_path, bucket.endpoint):
            yield srv, front, bucket
    finally:
        srv.stop()


def _assert_nothing_of_the_bucket(response: requests.Response, bucket) -> None:
    """No x-amz header, no signature, no signed path, in any header or the body."""
    from s3server import ACCESS_KEY

    leaks = ("x-amz-", "signature", "credential", ACCESS_KEY.lower(), bucket.name, "/_imgz_s3")
    for name, value in response.headers.items():
        for text in (name.lower(), value.lower()):
            assert not any(leak in text for leak in leaks), f"{name}: {value}"
    body = response.content.lower()
    assert not any(leak.encode() in body for leak in leaks)


def test_files_of_a_bucket_through_nginx(fronted_s3):
    srv, url, bucket = fronted_s3
    data = media.jpeg(800, 600)
    image = assert_upload_ok(requests.post(url + "/api/1/upload", headers={"X-API-Key": srv.key},
                                           files={"source": ("b.jpg", data)}, timeout=30))
    assert image["url"].startswith(url + "/images/")
    assert len(bucket.keys()) == 3 and srv.local_files() == []
    whole = requests.get(image["url"], timeout=10)
    assert whole.status_code == 200, whole.text
    assert hashlib.md5(whole.content).hexdigest() == image["checksum"]
    assert whole.headers["Content-Type"] == "image/jpeg"
    assert whole.headers["X-Content-Type-Options"] == "nosniff"
    assert whole.headers["Content-Security-Policy"] == "default-src 'none'; sandbox"
    assert "max-age" in whole.headers["Cache-Control"]
    assert whole.headers["ETag"] and whole.headers["Last-Modified"]
    _assert_nothing_of_the_bucket(whole, bucket)

    part = requests.get(image["url"], headers={"Range": "bytes=10-19"}, timeout=10)
    assert part.status_code == 206 and part.content == whole.content[10:20]
    assert part.headers["Content-Range"] == f"bytes 10-19/{len(whole.content)}"
    _assert_nothing_of_the_bucket(part, bucket)

    for condition in ({"If-None-Match": whole.headers["ETag"]},
                      {"If-Modified-Since": whole.headers["Last-Modified"]}):
        same = requests.get(image["url"], headers=condition, timeout=10)
        assert same.status_code == 304 and same.content == b""
        _assert_nothing_of_the_bucket(same, bucket)

    head = requests.head(image["url"], timeout=10)
    assert head.status_code == 200 and head.headers["Content-Length"] == str(len(whole.content))
    _assert_nothing_of_the_bucket(head, bucket)

    thumb = requests.get(image["thumb"]["url"], headers={"Sec-Fetch-Dest": "document"}, timeout=10)
    assert thumb.status_code == 200 and thumb.headers["Content-Security-Policy"] == DOCUMENT_CSP
    _assert_nothing_of_the_bucket(thumb, bucket)


def test_a_file_gone_from_the_bucket_or_the_rows_is_404_through_nginx(fronted_s3):
    srv, url, bucket = fronted_s3
    image = assert_upload_ok(srv.upload(media.png(40, 30)))
    public = url + "/images/" + image["url"].split("/images/", 1)[1]
    bucket.client.delete_object(Bucket=bucket.name,
                                Key=bucket.prefix + image["url"].split("/images/", 1)[1])
    gone = requests.get(public, timeout=10)
    assert gone.status_code == 404
    _assert_nothing_of_the_bucket(gone, bucket)
    assert requests.get(url + "/images/2020/01/01/none.png", timeout=10).status_code == 404
    direct = requests.get(f"{url}/_imgz_s3/{bucket.name}/{bucket.prefix}x.png", timeout=10)
    assert direct.status_code == 404


def test_a_patch_cut_behind_nginx_keeps_what_arrived(fronted):
    """The site's tus location passes chunks on as they arrive: a PATCH whose connection is cut
    counts the bytes that came, so the client sends only the rest again."""
    srv, url = fronted
    tus = {"X-API-Key": srv.key, "Tus-Resumable": "1.0.0"}
    created = requests.post(f"{url}/api/1/tus/", headers={**tus, "Upload-Length": "4000000"}, timeout=10)
    assert created.status_code == 201, created.text
    location = urlsplit(created.headers["Location"]).path
    port = int(url.rsplit(":", 1)[1])
    head = (f"PATCH {location} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-API-Key: {srv.key}\r\n"
            "Tus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\n"
            "Content-Length: 4000000\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head + os.urandom(1_500_000))
        time.sleep(0.5)
    offset = -1
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        answer = requests.head(f"{url}{location}", headers=tus, timeout=10)
        if answer.status_code == 200:
            offset = int(answer.headers["Upload-Offset"])
            if offset > 0:
                break
        time.sleep(0.1)
    assert 0 < offset <= 1_500_000
