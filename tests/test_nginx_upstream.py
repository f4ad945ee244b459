"""The README's nginx site with its upstream of several imgz processes on one PostgreSQL database
and one S3 bucket (IMGZ_ACCEL=nginx with the S3 location): one server to its clients, which
carries on when one process stops."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import requests

from conftest import LiveServer
from test_api_answer import assert_upload_ok
from test_nginx import NGINX, free_port, readme_snippet, run_nginx, with_bucket
import media

pytestmark = [pytest.mark.skipif(NGINX is None, reason="nginx is not installed"),
              pytest.mark.local_only]  # it sets up its own engines, whatever the run's pair


def site_with_upstream(ports: list[int], listen: int, endpoint: str) -> str:
    """The README's site, its S3 location inside, its upstream block replaced by the README's one
    of several processes, as the README says."""
    upstream = readme_snippet("nginx-upstream-snippet")
    for example, port in zip(("127.0.0.1:8080", "127.0.0.1:8081"), ports):
        upstream = upstream.replace(example, f"127.0.0.1:{port}")
    site = readme_snippet()
    start = site.index("upstream imgz {")
    site = site[:start] + upstream.strip() + site[site.index("}", start) + 1:]
    assert "proxy_pass http://imgz;" in site and site.count("upstream imgz") == 1
    return with_bucket(site, endpoint).replace("listen 80;", f"listen 127.0.0.1:{listen};")


def scratch_folders(data: Path) -> list[Path]:
    return [p for p in (data / "tmp").glob("*") if p.is_dir()]


def test_the_readme_upstream_of_two_processes_is_one_server(tmp_path, pg_url, s3):
    env = {**s3.env(accel="nginx", trust_proxy="1"), "IMGZ_DATABASE_URL": pg_url}
    first = LiveServer(tmp_path / "a", env)
    second = LiveServer(tmp_path / "b", env)
    listen = free_port()
    front = f"http://127.0.0.1:{listen}"
    nginx = run_nginx(tmp_path / "nginx", site_with_upstream([first.port, second.port], listen,
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
