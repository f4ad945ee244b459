"""waitress with read deadlines, a per-address connection cap and a gate before the body.

waitress (pinned at 3.0.2) reads a whole request, body included, before the application runs,
and guards connections with one idle timer. That lets a few clients hold the server: a client
that sends half a request line and waits keeps its connection for the idle timeout, one that
drips a byte now and then keeps it for ever, and a body sent by a client without a key is
spooled to disk before the application can refuse it. This module and channel.py extend
waitress's server and channel, and nothing else. The channel (channel.py) keeps the read
deadlines, asks the gate once a request's headers are in and closes gracefully after an early
answer; the server (here):

- lets one client address (an IPv6 /64 counts as one) hold at most ``per_address``
  connections; more are answered 503 and closed at once;
- holds the spool that bodies not known to carry a valid key share: together they may hold
  ``spool_bytes`` (memory or disk), past that such requests hear the gate's busy answer;
- checks every channel's deadlines at each cleanup, and closes lingering channels in time;
- serves the upload endpoint on threads of its own, apart from those of pages and files;
- uses poll(), which has no limit on descriptor numbers, unlike select().

How it stops (SIGTERM or SIGINT, without cutting requests short) is stopping.py's.
"""
from __future__ import annotations

import logging
import resource
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from waitress.adjustments import Adjustments
from waitress.channel import ClientDisconnected
from waitress.parser import HTTPRequestParser
from waitress.server import MultiSocketServer, TcpWSGIServer
from waitress.task import ThreadedTaskDispatcher

from .admission import Gate, WSGIApp, client_group
from .channel import ENVIRON_ANSWER, GuardedChannel, GuardedParser, GuardedTask
from .logpaths import mask

log = logging.getLogger("imgz")

# Descriptors kept for what requests open besides their socket: served files, temp files,
# SQLite, ffmpeg's pipes.
FD_RESERVE = 256
_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 10\r\nContent-Length: 0\r\n"
         b"Connection: close\r\n\r\n")


@dataclass(frozen=True)
class Limits:
    head_timeout: float = 20.0
    body_min_rate: float = 8_000.0  # bytes per second, on average over the body so far
    body_grace: float = 10.0
    per_address: int = 64  # 0: no cap
    spool_bytes: int = 1_000_000_000
    # Bodies from this size on, of uploads with a valid key, go to the application as they
    # arrive (channel.py), this many at once, each holding at most stream_room bytes.
    stream_from: int = 16 << 20
    streams: int = 2
    stream_room: int = 4 << 20


def raise_open_files() -> int:
    """Raise this process's soft limit of open files to its hard limit; returns the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 1 << 20)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


class Spool:
    """Bytes held by bodies of requests not known to carry a valid key, against a cap."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.held = 0
        self._lock = threading.Lock()

    def fits(self, more: int) -> bool:
        return self.held + more <= self.cap

    def charge(self, request: GuardedParser, total: int) -> bool:
        """Count the request's body as ``total`` bytes; False once the spool is over its cap."""
        with self._lock:
            self.held += total - request.imgz_charged
            request.imgz_charged = total
            return self.held <= self.cap

    def release(self, request: GuardedParser | None) -> None:
        if request is None:
            return
        with self._lock:
            self.held -= request.imgz_charged
            request.imgz_charged = 0


class CutBody:
    """A request whose connection was cut mid-body, served with what arrived; the answer has
    nowhere to go. A task of waitress's dispatcher (service, cancel, defer)."""

    def __init__(self, channel: GuardedChannel, request: GuardedParser) -> None:
        self.channel, self.request = channel, request

    def service(self) -> None:
        try:
            GuardedTask(self.channel, self.request).service()
        except (ClientDisconnected, OSError):
            pass  # the answer, which nobody reads
        except Exception:
            log.exception("serving what arrived of %s failed", mask(self.request.path or ""))
        finally:
            self.request.close()

    def cancel(self) -> None:
        self.request.close()

    def defer(self) -> None:
        pass


UPLOAD_PATHS = frozenset({"/api/1/upload", "/api/1/upload/", "/upload"})
TUS_PATH = "/api/1/tus/"


def is_upload(request: HTTPRequestParser) -> bool:
    """Whether a request is for the upload endpoint (with or without its trailing slash) or the
    upload page's form, or carries bytes of a resumable upload or finishes one (a PATCH, or a
    POST, under /api/1/tus/)."""
    path = request.path or ""
    if path.startswith(TUS_PATH):
        return request.command in ("PATCH", "POST")
    return path in UPLOAD_PATHS


class EarlyAnswers:
    """The application, unless the channel already answered the request (then that answer)."""

    def __init__(self, app: WSGIApp) -> None:
        self.app = app

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        answer = environ.get(ENVIRON_ANSWER)
        return (answer or self.app)(environ, start_response)


class GuardedServer(TcpWSGIServer):
    """waitress's TCP server with guarded channels, a per-address cap and deadline checks."""

    channel_class = GuardedChannel

    def __init__(self, application: WSGIApp, *, gate: Gate | None, limits: Limits,
                 spool: Spool, per_address: int, uploads: ThreadedTaskDispatcher | None = None,
                 observer: Any = None, **kw: Any) -> None:
        self.gate = gate
        self.observer = observer  # told of every answer (accesslog.RequestLog), or None
        self.limits = limits
        self.spool = spool
        self.per_address = per_address
        self.uploads = uploads
        self.by_group: dict[str, int] = {}
        self._groups_lock = threading.Lock()
        self.streaming = 0
        super().__init__(application, **kw)

    def take_stream(self) -> bool:
        """One of the streams for a body read as it arrives, if one is free (loop thread)."""
        with self._groups_lock:
            if self.streaming >= self.limits.streams:
                return False
            self.streaming += 1
            return True

    def end_stream(self) -> None:
        with self._groups_lock:
            self.streaming -= 1

    def handle_accept(self) -> None:
        try:
            pair = self.accept()
            if pair is None:
                return
            conn, addr = pair
            self.set_socket_options(conn)
        except OSError:
            return
        addr = self.fix_addr(addr)
        group = client_group(str(addr[0]))
        with self._groups_lock:
            count = self.by_group.get(group, 0)
            full = bool(self.per_address) and count >= self.per_address
            if not full:
                self.by_group[group] = count + 1
        if full:
            try:
                conn.setblocking(False)
                conn.send(_BUSY)  # a fresh socket's buffer takes it whole
            except OSError:
                pass
            conn.close()
            return
        channel = self.channel_class(self, conn, addr, self.adj, map=self._map)
        channel.counted = True

    def add_task(self, task: Any) -> None:
        """Uploads go to threads of their own: one waiting for a media worker never holds a
        thread that pages and files need, and many of them never crowd those threads."""
        if self.uploads is not None and (isinstance(task, CutBody) or (
                isinstance(task, GuardedChannel) and task.requests and is_upload(task.requests[0]))):
            self.uploads.add_task(task)
        else:
            super().add_task(task)

    def serve_cut(self, channel: GuardedChannel, request: GuardedParser) -> None:
        """Serve what arrived of a request whose connection was cut (channel.py)."""
        self.add_task(CutBody(channel, request))

    def close(self) -> None:
        # Threads first: one that ends a request afterwards would wake a loop already closed.
        if self.uploads is not None:
            self.uploads.shutdown()
        self.task_dispatcher.shutdown()
        super().close()

    def forget(self, group: str) -> None:
        with self._groups_lock:
            left = self.by_group.get(group, 1) - 1
            if left > 0:
                self.by_group[group] = left
            else:
                self.by_group.pop(group, None)

    def maintenance(self, now: float) -> None:
        super().maintenance(now)  # waitress's idle timeout
        mono = time.monotonic()
        for channel in list(self.active_channels.values()):
            if not isinstance(channel, GuardedChannel):
                continue
            if channel.linger_until is not None:
                if mono > channel.linger_until:
                    channel.handle_close()
            elif channel.overdue(mono):
                channel.will_close = True


def create_server(application: WSGIApp, *, gate: Gate | None = None, limits: Limits = Limits(),
                  trust_proxy: bool = False, upload_threads: int = 0, observer: Any = None,
                  **kw: Any) -> Any:
    """Like ``waitress.create_server``, with guarded channels.

    With a trusted proxy every client arrives from the proxy's address, so there is no
    per-address cap: the proxy is the one to cap connections per client. ``upload_threads``
    (when not 0) serve the upload endpoint apart from the ``threads`` that serve the rest.
    ``observer`` (accesslog.RequestLog) is told of every answer.
    """
    adj = Adjustments(**kw)
    dispatcher = ThreadedTaskDispatcher()
    dispatcher.set_thread_count(adj.threads)
    uploads = None
    if upload_threads:
        uploads = ThreadedTaskDispatcher()
        uploads.set_thread_count(upload_threads)
    spool = Spool(limits.spool_bytes)
    socket_map: dict = {}
    app = EarlyAnswers(application)
    servers = [GuardedServer(app, gate=gate, limits=limits, spool=spool,
                             per_address=0 if trust_proxy else limits.per_address,
                             uploads=uploads, observer=observer, map=socket_map,
                             dispatcher=dispatcher, adj=adj, sockinfo=sockinfo)
               for sockinfo in adj.listen]
    if len(servers) == 1:
        return servers[0]
    listening = [(s.effective_host, s.effective_port) for s in servers]
    return MultiSocketServer(socket_map, adj, listening, dispatcher, servers[-1].log_info)
