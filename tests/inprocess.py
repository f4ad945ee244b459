"""imgz in the test's own process: the Flask app behind Werkzeug's test client.

``InProcess`` has the helpers of ``conftest.LiveServer`` (tests/helpers.py: upload, get, rows,
stored_files, command, ...) and answers with real ``requests.Response`` objects: a request is prepared by requests, as a
live test would send it, and handed to the test client, so a test moves from one to the other by
its fixture alone. What the WSGI server adds is not here: waitress's framing and read deadlines
(imgz/server.py) and the key gate (imgz/gate.py) are tested against a live server.
"""
from __future__ import annotations

import os
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any, Iterable
from urllib.parse import unquote_to_bytes, urljoin, urlsplit

import requests
from requests.structures import CaseInsensitiveDict
from werkzeug.wsgi import FileWrapper

import backends
from commands import run_command
from helpers import Helpers
from imgz import cli, jobs as jobs_mod, scratch, workers
from imgz.store import Store
from imgz.web import create_app

BASE = "http://localhost"


def settings_env(settings: dict[str, Any]) -> dict[str, str]:
    """``make_app``/``make_server`` keywords as the environment a server would be given."""
    return {f"IMGZ_{name.upper()}": str(value) for name, value in settings.items()}


class InProcess(Helpers):
    """The app for ``data`` built as ``serve`` builds it, without a listening socket.

    ``env`` holds IMGZ_* settings (IMGZ_MIN_FREE_MB is 0 unless given, as for LiveServer) over
    those of the run's backend pair for ``data`` (tests/backends.py); the process's own
    environment is not read. ``jobs`` starts the expiry scheduler, which is
    one per process: one app at a time may have it. ``stop()`` ends the media workers.
    """

    def __init__(self, data: Path, env: dict[str, str] | None = None, *, jobs: bool = False) -> None:
        workers.start_fork_server()  # before anything changes where temporary files go, as serve
        self.data = Path(data)
        self.backend = backends.in_process(self.data)
        self.env = {"IMGZ_MIN_FREE_MB": "0", **self.backend, **(env or {}), "IMGZ_DATA": str(self.data)}
        self.flask = create_app(environ=self.env, jobs=jobs)
        self.config = self.flask.config["IMGZ"]
        self.service = self.flask.config["IMGZ_SERVICE"]
        self.jobs = jobs
        self.key = cli.first_key(self.config) or ""
        self.url = BASE
        self.stopped = False

    @property
    def pid(self) -> int:
        """The app's process: this one."""
        return os.getpid()

    @property
    def store(self) -> Store:
        """The app's own store."""
        return self.service.store

    @property
    def client(self) -> Any:
        """A new test client (one per request, so threads never share one)."""
        return self.flask.test_client(use_cookies=False)

    def stop(self) -> None:
        """End what the app started: scheduler, media workers, connections, scratch folder."""
        if self.stopped:
            return
        self.stopped = True
        if self.jobs:
            jobs_mod.stop()
        pool = getattr(self.service, "_pool", None)  # started on first use, maybe never
        if pool is not None:
            pool.close()
        self.flask.config["IMGZ_CONNECTIONS"].close_all()
        scratch.of(self.data).close()

    # -- HTTP ------------------------------------------------------------------------------------

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """Like ``requests.request``; a path or a URL of this app goes to the test client.

        Other URLs (a fixture web host) are fetched for real. Redirects are followed unless
        ``allow_redirects=False``, as requests does.
        """
        follow = kwargs.pop("allow_redirects", True)
        kwargs.pop("timeout", None)
        kwargs.pop("stream", None)
        if not url.startswith(("http://", "https://")):
            url = self.url + url
        with requests.Session() as session:  # its default headers, as a live test sends them
            prepared = session.prepare_request(requests.Request(method, url, **kwargs))
        history: list[requests.Response] = []
        while True:
            response = self._send(prepared)
            if not (follow and response.is_redirect) or len(history) >= 30:
                break
            history.append(response)
            prepared = _redirected(prepared, response)
        response.history = history
        return response

    def raw(self, method: str, target: str, headers: dict[str, str] | None = None) -> requests.Response:
        """Send the request target exactly as given: no client turns ``/a/../b`` into ``/b``."""
        return self._call(method, target, list((headers or {}).items()), None, self.url + target)

    def _send(self, prepared: requests.PreparedRequest) -> requests.Response:
        url = prepared.url or ""
        if not _same_origin(url, self.url):
            with requests.Session() as session:
                return session.send(prepared, allow_redirects=False, timeout=30)
        body = prepared.body
        if isinstance(body, str):
            body = body.encode("utf-8")
        elif body is not None and not isinstance(body, bytes):
            if not hasattr(body, "read"):
                raise TypeError("a streamed body needs a live server (tests/conftest.py LiveServer)")
            body = body.read()
        parts = urlsplit(url)
        target = parts.path + ("?" + parts.query if parts.query else "")
        response = self._call(prepared.method or "GET", target, list(prepared.headers.items()), body, url)
        response.request = prepared
        return response

    def _call(self, method: str, target: str, headers: list[tuple[str, str]], body: bytes | None,
              url: str) -> requests.Response:
        # The environ waitress makes of a request line: the path unquoted to bytes, as latin-1.
        path, _, query = target.partition("?")
        environ = {"PATH_INFO": unquote_to_bytes(path).decode("latin-1"), "QUERY_STRING": query,
                   "REQUEST_URI": target, "RAW_URI": target, "wsgi.file_wrapper": FileWrapper}
        answer = self.client.open("/", base_url=self.url, method=method, headers=headers, data=body,
                                  environ_overrides=environ, buffered=True)
        try:
            content = answer.get_data()
        finally:
            answer.close()
        # an HTTP client reads no body for HEAD, 204 and 304
        if method == "HEAD" or answer.status_code in (204, 304):
            content = b""
        return as_response(answer.status, answer.headers.items(), content, url)

    # -- commands --------------------------------------------------------------------------------

    def command(self, *args: str) -> CompletedProcess:
        """``python app.py --data DIR <args>``, run in this process with the app's own settings
        (its backend pair's among them), as its owner would; ``serve`` is not run here."""
        if "serve" in args:
            raise ValueError("serve listens: run it with LiveServer")
        return run_command("--data", str(self.data), *args, env=dict(self.env))


def as_response(status: str, headers: Iterable[tuple[str, str]], content: bytes, url: str) -> requests.Response:
    """A ``requests.Response`` for an answer read by other means (repeated headers joined)."""
    response = requests.Response()
    code, _, reason = status.partition(" ")
    response.status_code, response.reason = int(code), reason
    joined: CaseInsensitiveDict = CaseInsensitiveDict()
    for name, value in headers:
        joined[name] = f"{joined[name]}, {value}" if name in joined else value
    response.headers = joined
    response._content = content
    response.encoding = requests.utils.get_encoding_from_headers(joined)
    response.url = url
    return response


def _same_origin(url: str, base: str) -> bool:
    one, other = urlsplit(url), urlsplit(base)
    return (one.scheme, one.netloc) == (other.scheme, other.netloc)


def _redirected(prepared: requests.PreparedRequest, response: requests.Response) -> requests.PreparedRequest:
    """The next request of a redirect chain, with requests' rules for the method and body."""
    nxt = prepared.copy()
    nxt.url = urljoin(prepared.url or "", response.headers["Location"])
    code = response.status_code
    if (code == 303 and nxt.method != "HEAD") or (code in (301, 302) and nxt.method == "POST"):
        nxt.method = "GET"
    if code not in (307, 308):
        for name in ("Content-Type", "Content-Length", "Transfer-Encoding"):
            nxt.headers.pop(name, None)
        nxt.body = None
    return nxt
