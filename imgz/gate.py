"""The server's gate: refuse an upload without a valid key before its body is read.

waitress reads a whole body before the application runs, so an upload the application would
refuse for its key still costs the server the body, on disk. The server asks the gate once the
headers are in. The gate refuses only where the application's answer does not depend on the
body: a wrong key in ``X-API-Key``; a wrong ``key`` in the query string; or, with guest uploads
off, no key anywhere and a body that is not a form (so it cannot carry one). Small bodies, up
to body.KEYLESS_BODY, go on: for them the application learns the answer's format from the body.
The upload page's form (``POST /upload``) is refused likewise when guest uploads are off and it
comes without a session cookie: only a signed-in person may send it.

Resumable uploads (``/api/1/tus/``, users only) are refused whatever their size unless they carry
a valid key (header or query) or a session cookie with an X-CSRFToken header (the application
checks the two). The bytes of a PATCH that may go on are kept if its connection is cut midway.
An upload with a valid key may have its body streamed to the application as it arrives.

Its answers come from the application's own error handler, inside a request context built from
the headers, after the checks the application makes first (the per-address rate limit, a body
past the largest size, the free space), so they are the application's answers to the byte.
The gate runs on the server's loop thread: one indexed read of the key, no write. When the
database fails that read (a database server down or unreachable), the gate lets the request go
on, so the application answers it from a request thread (503), and asks the database nothing for
the next ``DATABASE_PAUSE`` seconds: the loop thread waits on a failing database at most once in
that time.
"""
from __future__ import annotations

import time
from typing import Any, Callable
from urllib.parse import parse_qsl

from flask import Flask, g, request
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.http import parse_cookie
from werkzeug.test import EnvironBuilder

from . import params
from .api import throttle
from .auth import live_key
from .body import KEYLESS_BODY, body_limit
from .errors import Busy, DatabaseBusy, DatabaseError, ImgzError, TooBig, Unauthorized
from .admission import GO_ON, STREAMED, Decision, Head, WSGIApp
from .server import TUS_PATH
from .uploadpage import FORM_PATH, must_sign_in

UPLOAD_PATHS = frozenset({"/api/1/upload", "/api/1/upload/"})
FORMS = ("multipart/form-data", "application/x-www-form-urlencoded")
BUSY_RETRY = 10  # seconds
DATABASE_PAUSE = 5.0  # seconds without the gate's key checks after the database failed one


class KeyGate:
    """Decides on upload requests with a body; every other request goes on untouched."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.cfg = app.config["IMGZ"]
        self.service = app.config["IMGZ_SERVICE"]
        self._paused_until = 0.0

    def decide(self, head: Head) -> Decision:
        if head.method == "POST" and head.path == FORM_PATH:
            return self._form(head)
        tus = head.path.startswith(TUS_PATH) or head.path == TUS_PATH[:-1]
        if not tus and (head.method not in ("GET", "POST") or head.path not in UPLOAD_PATHS):
            return GO_ON
        keep = Decision(keep_cut=tus and _patch(head))
        if time.monotonic() < self._paused_until:
            return keep
        try:
            return self._resumable(head, keep) if tus else self._decide(head)
        except (DatabaseBusy, DatabaseError):  # Unavailable is a kind of Busy
            self._paused_until = time.monotonic() + DATABASE_PAUSE
            return keep

    def _resumable(self, head: Head, keep: Decision) -> Decision:
        """A key that is valid, or a session cookie with a CSRF header, goes on; else 401 now."""
        key = head.headers.get("X_API_KEY", "").strip() or _first(head.query, "key")
        if key:
            if live_key(self.service.connection(), key) is not None:
                return Decision(keyed=True, keep_cut=keep.keep_cut)
            return self._refuse(head, Unauthorized(), [])
        cookie = f"{self.app.config['SESSION_COOKIE_NAME']}="
        if head.headers.get("X_CSRFTOKEN", "").strip() and any(
                part.strip().startswith(cookie) for part in head.headers.get("COOKIE", "").split(";")):
            return keep
        return self._refuse(head, Unauthorized("No key provided"), [])

    def _decide(self, head: Head) -> Decision:
        conn = self.service.connection()
        header = head.headers.get("X_API_KEY", "").strip()
        if header:
            if live_key(conn, header) is not None:
                return STREAMED
            # as the application: a wrong header key is refused before anything but the rate limit
            return self._refuse(head, Unauthorized(), []) if _large(head) else GO_ON
        query = _first(head.query, "key")
        if query:
            if live_key(conn, query) is not None:
                return STREAMED
            return self._refuse(head, Unauthorized(), self._body_checks(head)) if _large(head) else GO_ON
        content_type = head.headers.get("CONTENT_TYPE", "").split(";", 1)[0].strip().lower()
        if not self.cfg.guest_uploads and _large(head) and content_type not in FORMS:
            return self._refuse(head, Unauthorized("No key provided"), self._body_checks(head))
        return GO_ON

    def _form(self, head: Head) -> Decision:
        """The upload page's form: its CSRF token is in the body, so a session cookie lets it go
        on (to be read as any keyless body is); without one, guests off, a large body is refused."""
        cookie = parse_cookie(head.headers.get("COOKIE", ""))
        if self.cfg.guest_uploads or not _large(head) or self.app.config["SESSION_COOKIE_NAME"] in cookie:
            return GO_ON
        return self._refuse(head, must_sign_in(), [])

    def busy(self, head: Head) -> WSGIApp:
        return self._answer(head, Busy(BUSY_RETRY), [])

    def _body_checks(self, head: Head) -> list[Callable[[], None]]:
        """What the application checks, in its order, before it reads a body without a header key."""
        cfg = self.cfg

        def size() -> None:
            if head.content_length is not None and head.content_length > body_limit(cfg.max_upload_bytes):
                raise TooBig(cfg.max_upload_mb)

        return [size, self.service.check_free_space]

    def _refuse(self, head: Head, error: ImgzError, checks: list[Callable[[], None]]) -> Decision:
        return Decision(answer=self._answer(head, error, [self._rate_limit, *checks]))

    @staticmethod
    def _rate_limit() -> None:
        throttle("IP", request.remote_addr or "")

    def _answer(self, head: Head, error: ImgzError, checks: list[Callable[[], None]]) -> WSGIApp:
        """The application's answer to ``error`` (or to the first check that fails) for this head."""
        app = self.app
        environ = EnvironBuilder(
            path=head.path, method=head.method, query_string=head.query,
            headers=[(name.replace("_", "-"), value) for name, value in head.headers.items()],
            environ_base={"REMOTE_ADDR": head.client}).get_environ()
        if self.cfg.trust_proxy:
            environ = _behind_proxy(environ, self.cfg.trust_proxy)
        with app.request_context(environ):
            g.api_format = params.parse_format(request.args.get("format"))
            try:
                for check in checks:
                    check()
                raise error
            except ImgzError as exc:
                response = app.make_response(app.handle_user_exception(exc))
            response = app.process_response(response)  # a page's headers (its CSP) as the app's
            response.get_data()  # rendered now, inside the request context
        return response


def _patch(head: Head) -> bool:
    return head.method == "PATCH" or (head.method == "POST" and head.headers.get(
        "X_HTTP_METHOD_OVERRIDE", "").strip().upper() == "PATCH")


def _large(head: Head) -> bool:
    return head.content_length is None or head.content_length > KEYLESS_BODY


def _first(query: str, name: str) -> str:
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key == name:
            return value.strip()
    return ""


def _behind_proxy(environ: dict[str, Any], hops: int) -> dict[str, Any]:
    """The environ as the application sees it behind ProxyFix (the client's address)."""
    seen: dict[str, Any] = {}

    def keep(env: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.update(env)
        return []

    ProxyFix(keep, x_for=hops, x_proto=hops, x_host=hops, x_port=hops)(environ, None)
    return seen
