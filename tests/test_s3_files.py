"""The file responder with a remote store: a signed path handed to nginx without asking the
store anything, and a store that cannot be reached answered 503 rather than 404 or 500."""
from __future__ import annotations

import contextlib
from datetime import datetime, timezone

from werkzeug.test import Client

from imgz.errors import StoreUnavailable
from imgz.files import FileInfo, FileResponder
from imgz.store import Store

NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=timezone.utc)
REL = "2025/01/01/cat-Ab12Cd34.png"


def inner_app(environ, start_response):
    start_response("404 NOT FOUND", [("Content-Type", "text/plain")])
    return [b"inner"]


class Remote(Store):
    """A store elsewhere that records what it was asked; ``down`` makes every call fail."""

    remote = True

    def __init__(self, down: bool = False) -> None:
        self.down = down
        self.asked: list[str] = []

    def _ask(self, what: str) -> None:
        self.asked.append(what)
        if self.down:
            raise StoreUnavailable("connection refused")

    def prepare(self): pass
    def put(self, key, src, expires_at=None): self._ask("put")
    def open(self, key, start=0, stop=None): self._ask("open")
    def stat(self, key): self._ask("stat")
    def delete(self, keys): self._ask("delete")
    def list(self, prefix=""): return iter(())
    def free_bytes(self): return None

    def accel_target(self, key):
        self.asked.append("sign")
        return f"/bucket/{key}?X-Amz-Signature=abc"

    @contextlib.contextmanager
    def local_file(self, key, scratch):
        self._ask("local_file")
        yield scratch


def client(store: Store, **kw) -> Client:
    rows = {REL: FileInfo("image/png", None)}
    return Client(FileResponder(inner_app, store=store, lookup=rows.get, now=lambda: NOW, **kw))


def test_nginx_gets_a_signed_path_and_the_store_is_not_asked_first():
    store = Remote()
    answer = client(store, accel="nginx").get("/images/" + REL)
    assert answer.status_code == 200 and answer.data == b""
    assert answer.headers["X-Accel-Redirect"] == f"/_imgz_s3/bucket/{REL}?X-Amz-Signature=abc"
    assert answer.headers["Content-Type"] == "image/png"
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert "max-age" in answer.headers["Cache-Control"]
    assert store.asked == ["sign"], "the row decided the file exists: no HEAD before the GET"
    assert client(store, accel="nginx").post("/images/" + REL).status_code == 405
    assert client(store, accel="nginx").get("/images/2025/01/01/none.png").data == b"inner"


def test_an_unreachable_store_is_503_with_retry_after():
    for method in ("GET", "HEAD"):
        answer = client(Remote(down=True)).open("/images/" + REL, method=method)
        assert answer.status_code == 503
        assert int(answer.headers["Retry-After"]) > 0
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
