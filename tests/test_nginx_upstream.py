"""The README's nginx site with its upstream of several imgz processes on one PostgreSQL database
and one S3 bucket (IMGZ_ACCEL=nginx with the S3 location): one server to its clients, which
carries on when one process stops."""
from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

from conftest import LiveServer
from test_api_answer import assert_upload_ok
from test_nginx import NGINX, free_port, readme_snippet
import media

pytestmark = [pytest.mark.skipif(NGINX is None, reason="nginx is not installed"),
              pytest.mark.local_only]  # it sets up its own engines, whatever the run's pair


def site_with_upstream(ports: list[int], listen: int, endpoint: str) -> str:
    """The README's server block, its S3 location inside, its upstream beside it, as the
    README says to put them together."""
    upstream = readme_snippet("nginx-upstream-snippet")
    for example, port in zip(("127.0.0.1:8080", "127.0.0.1:8081"), ports):
        upstream = upstream.replace(example, f"127.0.0.1:{port}")
    site = readme_snippet()
    assert "proxy_pass http://127.0.0.1:8080;" in site
    site = site.replace("proxy_pass http://127.0.0.1:8080;", 'proxy_pass http://imgz;\n'
                        '        proxy_http_version 1.1;\n        proxy_set_header Connection "";')
    bucket_site = readme_snippet("nginx-s3-snippet").replace("https://s3.example.org", endpoint)
    bucket_site = bucket_site.replace("s3.example.org", endpoint.split("://", 1)[1])
    head, _, tail = site.rpartition("}")
    site = head + bucket_site + "}" + tail
    return upstream + site.replace("listen 80;", f"listen 127.0.0.1:{listen};")


def start_nginx(prefix: Path, site: str, port: int) -> subprocess.Popen:
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


def scratch_folders(data: Path) -> list[Path]:
    return [p for p in (data / "tmp").glob("*") if p.is_dir()]


def test_the_readme_upstream_of_two_processes_is_one_server(tmp_path, pg_url, s3):
    env = {**s3.env(accel="nginx", trust_proxy="1"), "IMGZ_DATABASE_URL": pg_url}
    first = LiveServer(tmp_path / "a", env)
    second = LiveServer(tmp_path / "b", env)
    listen = free_port()
    front = f"http://127.0.0.1:{listen}"
    nginx = start_nginx(tmp_path / "nginx", site_with_upstream([first.port, second.port], listen,
                                                               s3.endpoint), listen)
    try:
        sent = {}
        for i in range(6):
            data = media.png(320, 200, color=(i * 40, 90, 200))
            answer = requests.post(front + "/api/1/upload", headers={"X-API-Key": first.key},
                                   files={"source": (f"u{i}.png", data)}, timeout=30)
            image = assert_upload_ok(answer)
            assert image["url"].startswith(front + "/images/")
            sent[image["url"]] = hashlib.md5(data).hexdigest()
        # nginx took turns: each process stored uploads (each made its scratch folder for them)
        assert scratch_folders(first.data) and scratch_folders(second.data)
        for url, md5 in sent.items():
            for _ in range(2):  # through each process in turn
                got = requests.get(url, timeout=10)
                assert got.status_code == 200 and hashlib.md5(got.content).hexdigest() == md5
                assert got.headers["X-Content-Type-Options"] == "nosniff"

        first.stop()  # one process gone: the other answers everything
        data = media.png(200, 100)
        image = assert_upload_ok(requests.post(front + "/api/1/upload", headers={
            "X-API-Key": first.key}, files={"source": ("late.png", data)}, timeout=30))
        for url in [*sent, image["url"]]:
            assert requests.get(url, timeout=10).status_code == 200
        gone = requests.delete(image["delete_url"], headers={"Accept": "application/json"},
                               timeout=10)
        assert gone.status_code == 200, gone.text
        assert requests.get(image["url"], timeout=10).status_code == 404
        assert len(s3.keys()) == 2 * len(sent)  # original and thumb of each; a 320 px has no medium
    finally:
        nginx.terminate()
        nginx.wait(timeout=10)
        first.stop()
        second.stop()
