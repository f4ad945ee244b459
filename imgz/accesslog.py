"""What the server notes of every answered request: a line of the access log, request metrics.

The server's task (channel.py ``GuardedTask``) hands each request here once its answer is made,
so every answer counts, files sent by the file responder and the gate's early answers included,
without wrapping the answer's body (which would cost served files their zero-copy path).

A line: ``TIME CLIENT METHOD PATH STATUS BYTES SECONDS``, e.g.
``2025-05-01T12:00:00.123Z 203.0.113.7 GET /images/2025/05/01/cat.jpeg 200 204800 0.0012``.
The client is the address the application acted for (with ``IMGZ_TRUST_PROXY``, the one
X-Forwarded-For names, as ProxyFix reads it). Secrets never reach it: the paths that carry one
are masked by logpaths, and the values of query parameters that may hold a key or token are
replaced by ``***``. Bytes are those of the body sent (a file's length for a file).

Lines are written in batches, as nginx's ``buffer=`` does: at 32 KiB, a second after the first
one held (a writer thread), and at exit. A write and a flush per answer cost a busy file server
a tenth of its rate; a batch costs that once for hundreds of lines.
"""
from __future__ import annotations

import atexit
import logging
import sys
import threading
import time
from datetime import datetime, timezone
from typing import IO, Any
from urllib.parse import parse_qsl, urlencode

from werkzeug.middleware.proxy_fix import ProxyFix

from . import logpaths, metrics

log = logging.getLogger("imgz")
ENVIRON_FORWARDED = "imgz.forwarded"  # the request came with a header a proxy adds
# Headers a forwarding proxy adds, in waitress's names. waitress removes some of them from the
# environ before the application runs (untrusted proxy headers): the task notes them first.
FORWARDING = frozenset({"FORWARDED", "X_FORWARDED_FOR", "X_FORWARDED_HOST", "X_FORWARDED_PROTO",
              "X_FORWARDED_PORT", "X_FORWARDED_BY", "X_FORWARDED_SERVER", "X_REAL_IP",
              "X_CLIENT_IP", "X_ORIGINAL_FORWARDED_FOR", "TRUE_CLIENT_IP", "CF_CONNECTING_IP",
              "FASTLY_CLIENT_IP", "VIA"})
# query parameters whose values grant something (the API's key, tokens of any kind)
BATCH_BYTES = 32 * 1024  # held lines written at once past this
BATCH_SECONDS = 1.0  # or this long after the first held one
SECRET_PARAMS = frozenset({"key", "api_key", "token", "secret", "password", "csrf_token", "auth",
                           "access_token"})


_open_logs: list["RequestLog"] = []  # the logs that have held lines, for flush_all


def flush_all() -> None:
    """Write every line still held (a stopping server, before its last words)."""
    for request_log in list(_open_logs):
        request_log.flush()


def clean_query(query: str) -> str:
    """A query string with the value of every secret-bearing parameter replaced by ``***``."""
    if not query:
        return ""
    pairs = parse_qsl(query, keep_blank_values=True)
    if not any(name.lower() in SECRET_PARAMS for name, _ in pairs):
        return logpaths.mask(query)
    return logpaths.mask(urlencode([(n, "***" if n.lower() in SECRET_PARAMS else v)
                                    for n, v in pairs], safe="*/"))


def _one_line(text: str) -> str:
    if " " not in text and "\n" not in text and "\r" not in text:
        return text
    return text.replace("\n", "%0A").replace("\r", "%0D").replace(" ", "%20")


class RequestLog:
    """Writes access log lines (when ``lines``) and counts request metrics (when ``count``)."""

    def __init__(self, *, lines: bool, count: bool, trust_proxy: int,
                 viewer_routes: tuple[str, ...], stream: IO[str] | None = None) -> None:
        self.lines, self.count = lines, count
        self.stream = stream
        self.routes = frozenset((*viewer_routes, "video"))
        self._lock = threading.Lock()
        self._held: list[str] = []
        self._held_bytes = 0
        self._writer: threading.Thread | None = None
        self._wake = threading.Event()
        self._second, self._stamp = -1, ""
        self._fix = (ProxyFix(lambda environ, start: environ["REMOTE_ADDR"], x_for=trust_proxy)
                     if trust_proxy else None)

    def task_done(self, task: Any, started: float, seconds: float) -> None:
        """Note a waitress task's answer (channel.GuardedTask): started at ``started`` (Unix
        time), made in ``seconds``."""
        request = task.request
        sent = task.content_bytes_written
        if not sent and request.command != "HEAD" and task.has_body:
            sent = task.content_length or 0  # a file handed to the channel whole
        try:
            status = int(task.status.split(" ", 1)[0])
        except ValueError:
            status = 0
        try:
            self.answered(task.environ or {}, request.command, request.path or "",
                          request.query or "", status, sent, seconds, started)
        except Exception:  # the answer is made; failing to note it must not end the connection
            log.exception("noting an answer failed")

    def answered(self, environ: dict[str, Any], method: str, path: str, query: str, status: int,
                 sent: int, seconds: float, started: float) -> None:
        if self.count:
            metrics.answered(metrics.route_class(path, self.routes), status, seconds, sent)
        if not self.lines:
            return
        client = self._client(environ)
        shown = logpaths.mask(path)
        if query:
            shown += "?" + clean_query(query)
        line = (f"{self._when(started)} {client} {_one_line(method)} {_one_line(shown)} {status} "
                f"{sent} {seconds:.4f}\n")
        with self._lock:
            self._held.append(line)
            self._held_bytes += len(line)
            if self._held_bytes >= BATCH_BYTES:
                self._write_held()
            elif len(self._held) == 1:
                if self._writer is None:
                    self._start_writer()
                self._wake.set()

    def flush(self) -> None:
        """Write the lines held now."""
        with self._lock:
            self._write_held()

    def _write_held(self) -> None:  # with the lock held
        if not self._held:
            return
        text = "".join(self._held)
        self._held.clear()
        self._held_bytes = 0
        stream = self.stream or sys.stderr
        try:
            stream.write(text)
            stream.flush()
        except (OSError, ValueError):  # stderr closed or gone: the server goes on
            pass

    def _start_writer(self) -> None:  # with the lock held
        self._writer = threading.Thread(target=self._write_later, name="imgz-access-log",
                                        daemon=True)
        self._writer.start()
        _open_logs.append(self)
        atexit.register(self.flush)

    def _write_later(self) -> None:
        """Write what is held a second after the first line of a batch arrived."""
        while True:
            self._wake.wait()
            self._wake.clear()
            time.sleep(BATCH_SECONDS)
            self.flush()

    def _when(self, started: float) -> str:
        """``started`` in UTC, ISO 8601 to the millisecond; the seconds' part is kept a second."""
        second = int(started)
        if second != self._second:
            self._second = second
            self._stamp = datetime.fromtimestamp(second, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        return f"{self._stamp}.{int((started - second) * 1000):03d}Z"

    def _client(self, environ: dict[str, Any]) -> str:
        if self._fix is not None and "werkzeug.proxy_fix.orig" not in environ:
            # answered before the application ran (the gate's early answers): read it the same way
            return self._fix(dict(environ), None)
        return environ.get("REMOTE_ADDR") or "-"
