"""A small HTTP server on 127.0.0.1 that URL-source tests point imgz at.

Routes are registered per test: plain bodies, redirects, a trickle of one byte a second, and a
body longer than the Content-Length it announces.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Route:
    body: bytes = b""
    status: int = 200
    content_type: str = "application/octet-stream"
    location: str | None = None
    trickle: float = 0.0          # seconds between bytes
    content_length: int | None = None


class WebHost:
    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        host = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                route = host.routes.get(self.path.split("?")[0])
                if route is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(route.status)
                if route.location:
                    self.send_header("Location", route.location)
                self.send_header("Content-Type", route.content_type)
                length = len(route.body) if route.content_length is None else route.content_length
                self.send_header("Content-Length", str(length))
                self.end_headers()
                try:
                    if route.trickle:
                        deadline = time.monotonic() + 20
                        for i in range(len(route.body)):
                            if time.monotonic() > deadline:
                                break
                            self.wfile.write(route.body[i:i + 1])
                            self.wfile.flush()
                            time.sleep(route.trickle)
                    else:
                        self.wfile.write(route.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def add(self, path: str, **route: object) -> str:
        self.routes[path] = Route(**route)  # type: ignore[arg-type]
        return self.url(path)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
