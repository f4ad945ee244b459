"""README's HTTPS front servers, taken from README.md itself: Caddy's site validates and, with a
local certificate in place of Let's Encrypt's, passes uploads to imgz with the forwarded headers
that make its links https://; nginx's site with TLS passes `nginx -t` and the same upload, and its
port 80 sends clients to HTTPS keeping the method."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests
import urllib3

import media
from conftest import ROOT, LiveServer
from contract import assert_upload_ok
from test_nginx import NGINX, free_port, run_nginx

CADDY = shutil.which("caddy") or ("/usr/bin/caddy" if os.path.exists("/usr/bin/caddy") else None)
OPENSSL = shutil.which("openssl")
PROXIED = {"IMGZ_TRUST_PROXY": "1"}


def snippet(name: str, language: str) -> str:
    readme = (ROOT / "README.md").read_text()
    block = readme.split(f"<!-- {name} -->", 1)[1].split(f"<!-- /{name} -->", 1)[0]
    return block.split(f"```{language}", 1)[1].split("```", 1)[0]


@pytest.fixture
def quiet_tls():
    """The test certificates are made here and trusted by no one: don't warn of each request."""
    urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)


def wait_for_port(port: int, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(log.read_text() if log.exists() else "no log")
            time.sleep(0.05)


def upload_through(front: str, srv: LiveServer) -> None:
    """An upload through the front server is answered with https:// links on the front's
    address, and its file comes back through it."""
    data = media.png(300, 200)
    answer = requests.post(front + "/api/1/upload", headers={"X-API-Key": srv.key},
                           files={"source": ("a.png", data)}, verify=False, timeout=60)
    image = assert_upload_ok(answer)
    assert image["url"].startswith(front + "/images/"), image["url"]
    assert image["url_viewer"].startswith(front + "/")
    assert requests.get(image["url"], verify=False, timeout=30).content == data


# --- Caddy -------------------------------------------------------------------------------------

needs_caddy = pytest.mark.skipif(CADDY is None, reason="caddy is not installed (apt install caddy)")


def caddy_env(tmp_path: Path) -> dict[str, str]:
    """Caddy keeps its certificates and state under these, here the test's own folder."""
    return {**os.environ, "HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "data"),
            "XDG_CONFIG_HOME": str(tmp_path / "config")}


@needs_caddy
def test_readmes_caddyfile_validates(tmp_path):
    caddyfile = tmp_path / "Caddyfile"
    caddyfile.write_text(snippet("caddy-snippet", "caddyfile"))
    result = subprocess.run([CADDY, "validate", "--adapter", "caddyfile", "--config", str(caddyfile)],
                            capture_output=True, text=True, timeout=60, env=caddy_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "Valid configuration" in result.stdout + result.stderr


@needs_caddy
def test_uploads_through_readmes_caddy_get_https_links(tmp_path, quiet_tls):
    srv = LiveServer(tmp_path / "imgz", PROXIED)
    port, http_port = free_port(), free_port()
    site = snippet("caddy-snippet", "caddyfile")
    # a local certificate authority in place of Let's Encrypt, and ports of the test's own
    site = site.replace("img.example.org {", f"https://127.0.0.1:{port} {{\n\ttls internal")
    site = site.replace("reverse_proxy 127.0.0.1:8080", f"reverse_proxy 127.0.0.1:{srv.port}")
    (tmp_path / "Caddyfile").write_text(
        f"{{\n\tadmin off\n\tskip_install_trust\n\thttp_port {http_port}\n\thttps_port {port}\n}}\n"
        + site)
    log = tmp_path / "caddy.log"
    with log.open("w") as out:
        proc = subprocess.Popen([CADDY, "run", "--adapter", "caddyfile", "--config",
                                 str(tmp_path / "Caddyfile")], stdout=out, stderr=subprocess.STDOUT,
                                env=caddy_env(tmp_path))
    try:
        wait_for_port(port, proc, log)
        upload_through(f"https://127.0.0.1:{port}", srv)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        srv.stop()


# --- nginx with certbot's certificate ----------------------------------------------------------

needs_nginx = pytest.mark.skipif(NGINX is None or OPENSSL is None,
                                 reason="nginx or openssl is not installed")


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, standing in for certbot's."""
    folder.mkdir()
    cert, key = folder / "fullchain.pem", folder / "privkey.pem"
    subprocess.run([OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True, timeout=60)
    return cert, key


def tls_site(tmp_path: Path, srv: LiveServer, tls_port: int, http_port: int) -> str:
    """README's nginx site with its TLS lines in place of `listen 80;` and its redirecting
    server block, on the test's ports, certificate and data dir."""
    cert, key = self_signed(tmp_path / "live")
    tls = snippet("nginx-tls-snippet", "nginx")
    tls = tls.replace("listen 443 ssl http2;", f"listen 127.0.0.1:{tls_port} ssl http2;")
    tls = tls.replace("    listen [::]:443 ssl http2;\n", "")
    tls = tls.replace("/etc/letsencrypt/live/img.example.org/fullchain.pem", str(cert))
    tls = tls.replace("/etc/letsencrypt/live/img.example.org/privkey.pem", str(key))
    site = snippet("nginx-snippet", "nginx")
    assert "    listen 80;\n" in site
    site = site.replace("    listen 80;\n", tls.lstrip("\n"))
    site = site.replace("server 127.0.0.1:8080;", f"server 127.0.0.1:{srv.port};")
    site = site.replace("/srv/imgz/data/images/", f"{srv.data}/images/")
    redirect = snippet("nginx-redirect-snippet", "nginx")
    redirect = redirect.replace("listen 80;", f"listen 127.0.0.1:{http_port};")
    redirect = redirect.replace("    listen [::]:80;\n", "")
    redirect = redirect.replace("/var/www/certbot", str(tmp_path / "webroot"))
    return site + redirect


@pytest.fixture
def nginx_tls(tmp_path):
    srv = LiveServer(tmp_path / "imgz", {**PROXIED, "IMGZ_ACCEL": "nginx"})
    tls_port, http_port = free_port(), free_port()
    challenge = tmp_path / "webroot" / ".well-known" / "acme-challenge"
    challenge.mkdir(parents=True)
    (challenge / "token").write_text("proof")
    try:
        site = tls_site(tmp_path, srv, tls_port, http_port)
        proc = run_nginx(tmp_path / "nginx", site, tls_port)
        try:
            yield srv, tmp_path / "nginx", tls_port, http_port
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    finally:
        srv.stop()


@needs_nginx
def test_readmes_tls_site_passes_nginx_t(nginx_tls):
    srv, prefix, _, _ = nginx_tls
    result = subprocess.run([NGINX, "-t", "-p", str(prefix), "-c", str(prefix / "nginx.conf")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr and "test is successful" in result.stderr


@needs_nginx
def test_uploads_through_readmes_tls_site_get_https_links(nginx_tls, quiet_tls):
    srv, _, tls_port, _ = nginx_tls
    upload_through(f"https://127.0.0.1:{tls_port}", srv)


@needs_nginx
def test_port_80_answers_certbot_and_sends_the_rest_to_https(nginx_tls):
    srv, _, _, http_port = nginx_tls
    base = f"http://127.0.0.1:{http_port}"
    assert requests.get(base + "/.well-known/acme-challenge/token", timeout=10).text == "proof"
    moved = requests.post(base + "/api/1/upload?x=1", data=b"body", allow_redirects=False, timeout=10)
    # 308: a client following it sends its POST and body again, to https
    assert moved.status_code == 308
    assert moved.headers["Location"] == "https://127.0.0.1/api/1/upload?x=1"
