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

import pytest
import requests

import media
from conftest import ROOT, LiveServer
from contract import assert_upload_ok
from imgz.files import DOCUMENT_CSP

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is not installed")


def readme_snippet() -> str:
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- nginx-snippet -->", 1)[1].split("<!-- /nginx-snippet -->", 1)[0]
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


def _behind_nginx(srv: LiveServer, tmp_path: Path):
    port = free_port()
    site = readme_snippet()
    site = site.replace("listen 80;", f"listen 127.0.0.1:{port};")
    site = site.replace("http://127.0.0.1:8080", srv.url)
    site = site.replace("/srv/imgz/data/images/", f"{srv.data}/images/")
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    user = "user root;" if os.geteuid() == 0 else ""
    (prefix / "nginx.conf").write_text(f"""
{user}
daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log;
events {{ worker_connections 64; }}
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
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(proc.stderr.read().decode() if proc.stderr else "nginx failed")
            time.sleep(0.05)
    try:
        yield srv, url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


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
