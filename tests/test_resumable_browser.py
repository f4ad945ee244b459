"""The upload page's resumable path end to end, in a real browser (Debian's Chromium through
Playwright): the page, its script and the vendored tus client against a real server, reached
through a proxy that cuts the connection in the middle of a chunk, or loses the link while the
browser is offline. The upload goes on where the server stopped, not from the start, and the
stored file is the one picked; a refusal says the server's words."""
from __future__ import annotations

import hashlib
import io
import os
import socket
import threading
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

import pytest
from PIL import Image
from playwright.sync_api import expect

from conftest import LiveServer
from people import add_user, browser_sign_in
import test_browser  # skips this file without Chromium
import test_browser_access
from test_upload_page import throttle

browser = test_browser.browser
person = test_browser_access.person

pytestmark = pytest.mark.paired

PASSWORD = "correct horse battery"
CUT_AFTER = 400_000  # bytes of a PATCH body that pass before the cut


def noise_png(width: int = 1600, height: int = 1500) -> bytes:
    """A PNG of random pixels: it does not compress, so it is about width * height * 3 bytes."""
    image = Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))
    out = io.BytesIO()
    image.save(out, "PNG", compress_level=1)
    return out.getvalue()


@dataclass
class Seen:
    """A request as it went up through the proxy."""

    method: str
    target: str
    offset: int | None  # its Upload-Offset
    body: int = 0  # bytes of its body passed on


class CuttingProxy:
    """A TCP proxy on a free port of 127.0.0.1 to a server's port, which reads the requests going
    up and counts their bytes, and once ``cut_after`` bytes of a PATCH body have gone up, cuts both
    sides of that connection (the server's first). Every other connection, before and after, is
    passed on as it is. Without ``cut_after`` it cuts nothing until it is down (``down``: the
    link is lost, every connection is cut at its next bytes and new ones at once)."""

    def __init__(self, port: int, cut_after: int | None) -> None:
        self.target = port
        self.cut_after = cut_after or 0
        self.armed = cut_after is not None
        self.down = False
        self.cuts: list[Seen] = []
        self.requests: list[Seen] = []
        self.sent_up = 0
        self.lock = threading.Lock()
        self.sockets: list[socket.socket] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def patches(self) -> list[Seen]:
        return [seen for seen in self.requests if seen.method == "PATCH"]

    def close(self) -> None:
        self.listener.close()
        with self.lock:
            for sock in self.sockets:
                cut(sock)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.down:
                cut(client)
                continue
            server = socket.create_connection(("127.0.0.1", self.target))
            with self.lock:
                self.sockets += [client, server]
            threading.Thread(target=self._up, args=(client, server), daemon=True).start()
            threading.Thread(target=self._down, args=(server, client), daemon=True).start()

    def _send_up(self, server: socket.socket, data: bytes) -> None:
        server.sendall(data)
        with self.lock:
            self.sent_up += len(data)

    def _up(self, client: socket.socket, server: socket.socket) -> None:
        """Requests from the browser to the server, read as HTTP/1.1 with Content-Length bodies
        (a browser's XMLHttpRequest sends no chunked body)."""
        head = b""
        request: Seen | None = None
        body_left = 0  # bytes of this request's body still to come
        try:
            while data := client.recv(65536):
                if self.down:
                    if request is not None and body_left:
                        self.cuts.append(request)
                    cut(server)
                    cut(client)
                    return
                while data:
                    if body_left:
                        assert request is not None
                        take = min(body_left, len(data))
                        if (request.method == "PATCH" and self.armed
                                and request.body + take >= self.cut_after):
                            part = self.cut_after - request.body
                            self._send_up(server, data[:part])
                            request.body += part
                            self.armed = False
                            self.cuts.append(request)
                            cut(server)  # the server's side first: it keeps what arrived
                            cut(client)
                            return
                        self._send_up(server, data[:take])
                        request.body += take
                        body_left -= take
                        data = data[take:]
                        continue
                    head += data
                    end = head.find(b"\r\n\r\n")
                    if end < 0:
                        break
                    head, data = head[:end + 4], head[end + 4:]
                    method, target, fields = parse_head(head)
                    offset = fields.get("upload-offset")
                    request = Seen(method, target, None if offset is None else int(offset))
                    self.requests.append(request)
                    body_left = int(fields.get("content-length", "0"))
                    self._send_up(server, head)
                    head = b""
            server.shutdown(socket.SHUT_WR)
        except OSError:
            cut(server)

    def _down(self, server: socket.socket, client: socket.socket) -> None:
        try:
            while data := server.recv(65536):
                client.sendall(data)
            client.shutdown(socket.SHUT_WR)
        except OSError:
            cut(client)


def parse_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    """The method, target and header fields (lower-cased names) of a request's head."""
    line, *rest = head.decode("latin-1").split("\r\n")
    method, target, _ = line.split(" ", 2)
    fields = {}
    for field in rest:
        if ":" in field:
            name, value = field.split(":", 1)
            fields[name.strip().lower()] = value.strip()
    return method, target, fields


def cut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    srv = LiveServer(tmp_path_factory.mktemp("resumable"), {"IMGZ_RESUMABLE_MB": "1"})
    for name in ("ann", "bob"):
        add_user(srv.config.database, name, PASSWORD)
    yield srv
    srv.stop()


@pytest.fixture
def proxy(site: LiveServer) -> Iterator[CuttingProxy]:
    through = CuttingProxy(site.port, CUT_AFTER)
    yield through
    through.close()


def finished_state(page: Any) -> str:
    """The row's last words once it is no longer under way."""
    page.wait_for_function("""() => {
        const state = document.querySelector("#rows .state");
        return state && !document.querySelector("#rows button[aria-label^='Cancel ']")
            && state.textContent !== "Processing…";
    }""", timeout=60_000)
    return page.locator("#rows .state").first.inner_text()


def nothing_partial_left(site: LiveServer) -> None:
    assert site.query("SELECT COUNT(*) FROM resumables") == [(0,)]
    later = datetime.now(timezone.utc) + timedelta(days=1)
    assert site.store.stale_partials(later) == []
    assert site.tmp_files() == []


def test_a_chunk_cut_midway_goes_on_where_the_server_stopped(site: LiveServer, person: Any,
                                                            proxy: CuttingProxy,
                                                            tmp_path: Path) -> None:
    data = noise_png()
    assert 6_000_000 < len(data) < 8_000_000  # one chunk of the page's
    path = tmp_path / "noise.png"
    path.write_bytes(data)
    page = person()
    browser_sign_in(page, proxy.url, "ann", PASSWORD)
    page.goto(f"{proxy.url}/")
    asked: list[tuple[str, int]] = []  # the page's own tus requests, and their Upload-Offset
    page.on("request", lambda r: asked.append((r.method, int(r.headers.get("upload-offset", -1))))
            if "/api/1/tus/" in r.url else None)
    page.set_input_files("#files", str(path))
    state = finished_state(page)
    assert state.startswith("Uploaded"), state

    # made once, cut once, then only what the server did not have: it kept every byte that came
    assert len([r for r in proxy.requests if (r.method, r.target) == ("POST", "/api/1/tus/")]) == 1
    assert asked[0] == ("POST", -1) and asked.count(("POST", -1)) == 2  # made, then finished
    assert [c.offset for c in proxy.cuts] == [0]
    last = proxy.patches()[-1]
    assert (last.offset, last.body) == (CUT_AFTER, len(data) - CUT_AFTER)
    assert ("HEAD", -1) in asked[asked.index(("PATCH", 0)):asked.index(("PATCH", CUT_AFTER))]
    # Chromium sends a request again by itself, unseen by the page, when a kept-alive connection
    # fails before any answer: the server refuses it once it is in (423 while the cut part is
    # stored, 409 after), so that costs the chunk once more. Every other byte went up once.
    again = Counter(p.offset for p in proxy.patches()) - Counter(o for m, o in asked if m == "PATCH")
    assert set(again) <= {0} and again[0] <= 1, again
    resent = sum((len(data) - offset) * n for offset, n in again.items())
    assert proxy.sent_up - resent < 2 * len(data), (proxy.sent_up, resent, len(data))

    direct = page.locator("#rows button[aria-label^='Copy Direct link of ']").get_attribute("data-copy")
    assert direct.startswith(proxy.url + "/")
    assert hashlib.md5(site.stored_bytes(direct)).hexdigest() == hashlib.md5(data).hexdigest()
    nothing_partial_left(site)


def test_going_offline_midway_waits_for_the_network_and_goes_on(site: LiveServer, person: Any,
                                                                tmp_path: Path) -> None:
    """The tus client does not try again while the browser is offline (a phone between
    networks): the page waits for the network instead of failing, then goes on where the server
    stopped. Chromium's offline mode leaves a request under way alone: the proxy cuts it."""
    data = noise_png()
    path = tmp_path / "offline.png"
    path.write_bytes(data)
    proxy = CuttingProxy(site.port, None)
    try:
        page = person()
        browser_sign_in(page, proxy.url, "bob", PASSWORD)
        page.goto(f"{proxy.url}/")
        asked: list[tuple[str, int]] = []
        page.on("request", lambda r: asked.append((r.method, int(r.headers.get("upload-offset", -1))))
                if "/api/1/tus/" in r.url else None)
        throttle(page, 1_500_000)
        page.set_input_files("#files", str(path))
        page.wait_for_function("() => { const p = document.querySelector('#rows progress'); return p && p.value >= 20; }")
        page.context.set_offline(True)
        proxy.down = True
        expect(page.locator("#rows .state")).to_have_text("Waiting for the network…")
        expect(page.locator("#progress-status")).to_have_text("offline.png: waiting for the network")
        proxy.down = False
        page.context.set_offline(False)
        state = finished_state(page)
        assert state.startswith("Uploaded"), state
    finally:
        proxy.close()
    assert proxy.cuts[0].offset == 0 and all(c.method == "PATCH" for c in proxy.cuts)
    kept = proxy.cuts[0].body
    assert kept > 0 and proxy.patches()[-1].offset == kept
    assert asked.count(("POST", -1)) == 2  # made once, then finished
    direct = page.locator("#rows button[aria-label^='Copy Direct link of ']").get_attribute("data-copy")
    assert hashlib.md5(site.stored_bytes(direct)).hexdigest() == hashlib.md5(data).hexdigest()
    nothing_partial_left(site)


def test_a_refused_resumable_upload_says_the_servers_words(site: LiveServer, person: Any,
                                                          tmp_path: Path) -> None:
    """Signed out meanwhile (here: every session of the person ended): the server's refusal is
    what the row says, not the tus client's account of its request."""
    path = tmp_path / "refused.png"
    path.write_bytes(noise_png(800, 600))
    add_user(site.config.database, "cid", PASSWORD)
    page = person()
    browser_sign_in(page, site.url, "cid", PASSWORD)
    page.goto(f"{site.url}/")
    site.query("DELETE FROM sessions WHERE user_id = (SELECT id FROM users WHERE name = 'cid')")
    page.set_input_files("#files", str(path))
    state = finished_state(page)
    answer = site.request("POST", "/api/1/tus/", headers={"Tus-Resumable": "1.0.0", "Upload-Length": "9"})
    assert answer.status_code == 401
    assert state == answer.json()["error"]["message"]
    assert site.query("SELECT COUNT(*) FROM resumables") == [(0,)]
