"""A small tus 1.0 client for tests, over any server helper (in-process or live): create, HEAD,
PATCH in chunks, finish."""
from __future__ import annotations

import base64
from typing import Any

TUS = {"Tus-Resumable": "1.0.0"}


def metadata(**values: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


class Tus:
    """tus calls to ``srv`` with ``auth`` headers (X-API-Key, or X-CSRFToken with ``session``)."""

    def __init__(self, srv: Any, auth: dict[str, str] | None = None, session: Any = None) -> None:
        self.srv = srv
        self.auth = dict(auth if auth is not None else {"X-API-Key": srv.key})
        self.session = session

    def call(self, method: str, path: str, headers: dict[str, str] | None = None, **kw: Any) -> Any:
        hdrs = {**TUS, **self.auth, **(headers or {})}
        kw.setdefault("allow_redirects", False)
        if self.session is not None:
            url = path if path.startswith("http") else self.srv.url + path
            return self.session.request(method, url, headers=hdrs, timeout=120, **kw)
        return self.srv.request(method, path, headers=hdrs, **kw)

    def create(self, length: int, filename: str = "clip.png", **headers: str) -> Any:
        return self.call("POST", "/api/1/tus/", {"Upload-Length": str(length),
                                                  "Upload-Metadata": metadata(filename=filename,
                                                                              filetype="image/png"),
                                                  **headers})

    def location(self, length: int, filename: str = "clip.png") -> str:
        answer = self.create(length, filename)
        assert answer.status_code == 201, answer.text
        return answer.headers["Location"]

    def head(self, location: str) -> Any:
        return self.call("HEAD", location)

    def offset(self, location: str) -> int:
        answer = self.head(location)
        assert answer.status_code == 200, answer.status_code
        return int(answer.headers["Upload-Offset"])

    def patch(self, location: str, offset: int, data: bytes, **headers: str) -> Any:
        return self.call("PATCH", location, {"Upload-Offset": str(offset),
                                             "Content-Type": "application/offset+octet-stream",
                                             **headers}, data=data)

    def send(self, location: str, data: bytes, chunk: int, start: int = 0) -> int:
        offset = start
        while offset < len(data):
            answer = self.patch(location, offset, data[offset:offset + chunk])
            assert answer.status_code == 204, answer.text
            offset = int(answer.headers["Upload-Offset"])
        return offset

    def finish(self, location: str, **fields: Any) -> Any:
        return self.call("POST", location + "/finish", data=fields or None)

    def upload(self, data: bytes, chunk: int = 64 * 1024, filename: str = "clip.png",
               **fields: Any) -> Any:
        location = self.location(len(data), filename)
        self.send(location, data, chunk)
        return self.finish(location, **fields)
