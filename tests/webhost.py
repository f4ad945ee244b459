"""A web host on 127.0.0.1 for the tests of URL sources and of the download code.

Its answers are routes registered per test: a route is a function given the request's
``BaseHTTPRequestHandler``, which writes the answer. ``body``, ``status``, ``redirect``,
``trickle`` and ``Held`` make the usual ones; ``add(path, body=..., ...)`` is the short form.
Every request is noted in ``requests``. ``close()`` ends what is still sending (a trickle stops)
and waits for every handler thread, so nothing outlives the host.
"""
from __future__ import annotations

import ssl
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Handler = Callable[[BaseHTTPRequestHandler], None]


class _Server(ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True  # handler threads are joined on close
    host: "WebHost"

    def handle_error(self, request, client_address):  # a client that went away is no news
        pass


class _Request(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30  # a connection left open ends by then, so close() never waits longer
    server: _Server

    def do_GET(self) -> None:
        host = self.server.host
        host.requests.append((self.path, dict(self.headers.items())))
        host.routes.get(self.path.partition("?")[0], status(404))(self)

    def log_message(self, *args: object) -> None:
        pass


class WebHost:
    """An HTTP server on a free 127.0.0.1 port answering from ``routes``; ``tls`` makes it HTTPS."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.routes: dict[str, Handler] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.stopping = threading.Event()
        self.server = _Server(("127.0.0.1", 0), _Request)
        self.server.host = self
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.01,), daemon=True)
        self.thread.start()

    def url(self, path: str = "/", host: str = "127.0.0.1", scheme: str = "http") -> str:
        return f"{scheme}://{host}:{self.port}{path}"

    def add(self, path: str, body: bytes = b"", status: int = 200,
            content_type: str = "application/octet-stream", location: str | None = None,
            trickle: float = 0.0, content_length: int | None = None) -> str:
        """Answer ``path`` in HTTP/1.0 with one body (``trickle``: seconds between its bytes,
        ``content_length``: announced instead of the true length); returns the route's URL."""
        self.routes[path] = answer(body, content_type, length=content_length, code=status,
                                   location=location, trickle=trickle, version="HTTP/1.0")
        return self.url(path)

    def close(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()

    def __enter__(self) -> WebHost:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _host(h: BaseHTTPRequestHandler) -> WebHost:
    return h.server.host  # type: ignore[attr-defined]


def answer(data: bytes, content_type: str = "image/png", *, length: int | None = None,
           chunked: bool = False, code: int = 200, location: str | None = None,
           trickle: float = 0.0, version: str = "HTTP/1.1") -> Handler:
    """Answer ``code`` with ``data`` and close the connection.

    ``length`` is the Content-Length sent (-1: none); ``chunked`` sends the body in chunks;
    ``trickle`` waits that many seconds after each byte, until the host closes.
    """
    def handle(h: BaseHTTPRequestHandler) -> None:
        h.protocol_version = version
        h.close_connection = True
        h.send_response(code)
        if location:
            h.send_header("Location", location)
        h.send_header("Content-Type", content_type)
        if chunked:
            h.send_header("Transfer-Encoding", "chunked")
        elif length != -1:
            h.send_header("Content-Length", str(len(data) if length is None else length))
        if version == "HTTP/1.1":
            h.send_header("Connection", "close")
        h.end_headers()
        try:
            if chunked:
                for i in range(0, len(data), 4096):
                    piece = data[i:i + 4096]
                    h.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                h.wfile.write(b"0\r\n\r\n")
            elif trickle:
                for i in range(len(data)):
                    h.wfile.write(data[i:i + 1])
                    h.wfile.flush()
                    if _host(h).stopping.wait(trickle):
                        return
            else:
                h.wfile.write(data)
        except OSError:  # the client stopped reading
            pass
    return handle


def body(data: bytes, content_type: str = "image/png", length: int | None = None,
         chunked: bool = False) -> Handler:
    """Answer 200 with data; length overrides Content-Length, -1 leaves it out."""
    return answer(data, content_type, length=length, chunked=chunked)


def status(code: int) -> Handler:
    """An empty answer with this status; the connection stays open."""
    def handle(h: BaseHTTPRequestHandler) -> None:
        h.send_response(code)
        h.send_header("Content-Length", "0")
        h.end_headers()
    return handle


def redirect(location: str, code: int = 302) -> Handler:
    def handle(h: BaseHTTPRequestHandler) -> None:
        h.send_response(code)
        h.send_header("Location", location)
        h.send_header("Content-Length", "0")
        h.end_headers()
    return handle


def trickle(head: bool = False) -> Handler:
    """Send one byte a second, of the status line (head) or of the body, until the host closes."""
    def handle(h: BaseHTTPRequestHandler) -> None:
        h.close_connection = True
        if not head:
            h.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        payload = b"HTTP/1.1 200 OK\r\n" if head else b"x" * 1000
        for byte in payload:
            try:
                h.wfile.write(bytes([byte]))
                h.wfile.flush()
            except OSError:
                return
            if _host(h).stopping.wait(1):
                return
    return handle


class Held:
    """A route that sends the first half of ``data`` at once and the rest after ``release()``;
    ``sending`` is set once the first half is out."""

    def __init__(self, data: bytes, content_type: str = "image/png") -> None:
        self.data = data
        self.content_type = content_type
        self.sending = threading.Event()
        self.released = threading.Event()

    def release(self) -> None:
        self.released.set()

    def __call__(self, h: BaseHTTPRequestHandler) -> None:
        half = len(self.data) // 2
        h.protocol_version = "HTTP/1.0"
        h.close_connection = True
        h.send_response(200)
        h.send_header("Content-Type", self.content_type)
        h.send_header("Content-Length", str(len(self.data)))
        h.end_headers()
        try:
            h.wfile.write(self.data[:half])
            h.wfile.flush()
            self.sending.set()
            while not (self.released.wait(0.1) or _host(h).stopping.is_set()):
                pass
            h.wfile.write(self.data[half:])
        except OSError:
            pass
