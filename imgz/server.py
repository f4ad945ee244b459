"""waitress with read deadlines, a per-address connection cap and a gate before the body.

waitress (pinned at 3.0.2) reads a whole request, body included, before the application runs,
and guards connections with one idle timer. That lets a few clients hold the server: a client
that sends half a request line and waits keeps its connection for the idle timeout, one that
drips a byte now and then keeps it for ever, and a body sent by a client without a key is
spooled to disk before the application can refuse it. This module extends waitress's channel
and server, and nothing else:

- the request line and headers must arrive within ``head_timeout`` of the connection becoming
  ready for them (its opening, or the end of the previous answer): so this is also how long an
  idle keep-alive connection stays open;
- a body must arrive at ``body_min_rate`` bytes a second on average once ``body_grace`` seconds
  have passed, so a drip is cut off while a slow real upload still finishes;
- one client address (an IPv6 /64 counts as one) holds at most ``per_address`` connections;
  more are answered 503 and closed at once;
- once the headers of a request with a body are parsed, before any of the body is buffered, the
  gate decides: go on, go on with a valid key, or answer now (the body is then never stored);
- bodies not known to carry a valid key may together hold ``spool_bytes`` (memory or disk);
  past that such requests are answered with the gate's busy answer;
- the loop uses poll(), which has no limit on descriptor numbers, unlike select().

An early answer closes the connection gracefully: the server stops sending, then reads and
throws away what the client still sends for ``LINGER`` seconds, so that the client reads the
answer instead of a connection reset.
"""
from __future__ import annotations

import ipaddress
import logging
import resource
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Protocol

from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import MultiSocketServer, TcpWSGIServer
from waitress.task import ThreadedTaskDispatcher, WSGITask

log = logging.getLogger("imgz")

WSGIApp = Callable[..., Iterable[bytes]]
LINGER = 5.0  # seconds an early-answered connection reads and discards before it closes
ENVIRON_ANSWER = "imgz.early_answer"
# Descriptors kept for what requests open besides their socket: served files, temp files,
# SQLite, ffmpeg's pipes.
FD_RESERVE = 256
_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 10\r\nContent-Length: 0\r\n"
         b"Connection: close\r\n\r\n")


@dataclass(frozen=True)
class Head:
    """What is known of a request once its headers are parsed; headers use waitress's names."""

    method: str
    path: str
    query: str
    headers: Mapping[str, str]  # e.g. "X_API_KEY", "CONTENT_TYPE"
    content_length: int | None  # None for a chunked body
    client: str


@dataclass(frozen=True)
class Decision:
    """The gate's word on a request with a body: go on (keyed or not), or answer now."""

    keyed: bool = False
    answer: WSGIApp | None = None


GO_ON = Decision()
KEYED = Decision(keyed=True)


class Gate(Protocol):
    def decide(self, head: Head) -> Decision:
        """Called on the server's loop thread: must be quick and never wait on a lock."""

    def busy(self, head: Head) -> WSGIApp:
        """The answer when the spool for keyless bodies is full."""


@dataclass(frozen=True)
class Limits:
    head_timeout: float = 20.0
    body_min_rate: float = 8_000.0  # bytes per second, on average over the body so far
    body_grace: float = 10.0
    per_address: int = 64  # 0: no cap
    spool_bytes: int = 1_000_000_000


def client_group(address: str) -> str:
    """The name connections are counted under: the IPv4 address, or the IPv6 /64."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


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


class GuardedParser(HTTPRequestParser):
    """waitress's request parser with what the channel keeps of each request."""

    imgz_decided = False
    imgz_keyed = False
    imgz_charged = 0
    imgz_body_started = 0.0
    imgz_answer: WSGIApp | None = None


class GuardedTask(WSGITask):
    """A task that hands the request's early answer, if any, to EarlyAnswers in the environ."""

    def get_environment(self) -> dict:
        environ = super().get_environment()
        if self.request.imgz_answer is not None:
            environ[ENVIRON_ANSWER] = self.request.imgz_answer
        return environ


class GuardedChannel(HTTPChannel):
    """A channel with read deadlines, the gate, the keyless spool and a lingering close."""

    parser_class = GuardedParser
    task_class = GuardedTask
    server: GuardedServer

    def __init__(self, server: GuardedServer, sock: socket.socket, addr: Any, adj: Adjustments,
                 map: dict | None = None) -> None:
        self.ready_since = time.monotonic()
        self.group = client_group(str(addr[0]))
        self.counted = False
        self.linger = False  # answered early: close gracefully
        self.linger_until: float | None = None
        super().__init__(server, sock, addr, adj, map=map)

    # -- reading ------------------------------------------------------------------------------

    def received(self, data: bytes) -> bool:
        """waitress's own loop, with the gate and the spool between the headers and the body."""
        if not data:
            return False
        with self.requests_lock:
            if self.will_close or self.close_when_flushed:
                return False
            while data:
                if self.request is None:
                    self.request = self.parser_class(self.adj)
                n = self.request.received(data)
                request = self.request
                if request.body_rcv is not None and request.error is None and not self._admit(request):
                    return True  # answered early: the rest is never parsed
                if (request.expect_continue and request.headers_finished and not self.requests
                        and not self.sent_continue):
                    self.send_continue()
                if request.completed:
                    self.sent_continue = False
                    if not request.empty:
                        self.requests.append(request)
                        if len(self.requests) == 1:
                            self.server.add_task(self)
                    self.request = None
                if n >= len(data):
                    break
                data = data[n:]
        return True

    def _admit(self, request: GuardedParser) -> bool:
        """Ask the gate once the headers are in; count the body as it comes. False: answered."""
        server = self.server
        if not request.imgz_decided:
            request.imgz_decided = True
            request.imgz_body_started = time.monotonic()
            head = self._head(request)
            try:
                decision = server.gate.decide(head) if server.gate is not None else GO_ON
            except Exception:  # the application still checks the key; the server must not stop
                log.exception("the gate failed on %s %s", head.method, head.path)
                decision = GO_ON
            if decision.answer is not None:
                self._answer_now(request, decision.answer)
                return False
            request.imgz_keyed = decision.keyed
            if not decision.keyed and not server.spool.fits(request.content_length or 0):
                self._answer_now(request, self._busy(head))
                return False
        if not request.imgz_keyed and not server.spool.charge(request, request.body_bytes_received):
            self._answer_now(request, self._busy(self._head(request)))
            return False
        return True

    def _busy(self, head: Head) -> WSGIApp:
        gate = self.server.gate
        return gate.busy(head) if gate is not None else _plain_busy

    def _head(self, request: GuardedParser) -> Head:
        path = request.path
        if path.startswith("/"):
            path = "/" + path.lstrip("/")  # as waitress builds PATH_INFO
        return Head(method=request.command, path=path, query=request.query,
                    headers=request.headers,
                    content_length=None if request.chunked else request.content_length,
                    client=str(self.addr[0]))

    def _answer_now(self, request: GuardedParser, answer: WSGIApp) -> None:
        """Queue the answer for a worker thread; the body is dropped, the connection closes."""
        self.server.spool.release(request)
        request.close()  # the body's buffer, with whatever of it was read
        request.body_rcv = None
        request.completed = True
        request.headers["CONNECTION"] = "close"
        request.imgz_answer = answer
        self.linger = True
        self.request = None
        self.requests.append(request)
        if len(self.requests) == 1:
            self.server.add_task(self)

    def service(self) -> None:
        request = self.requests[0]
        try:
            super().service()
        finally:
            self.server.spool.release(request)
            self.ready_since = time.monotonic()

    # -- deadlines ----------------------------------------------------------------------------

    def overdue(self, now: float) -> bool:
        """Whether the request being read has missed its deadline (called on the loop thread)."""
        if self.requests:
            return False  # being answered
        if self.total_outbufs_len:
            self.ready_since = now  # still sending: the next request's clock starts afterwards
            return False
        request = self.request
        limits = self.server.limits
        if request is None or not request.headers_finished:
            return now - self.ready_since > limits.head_timeout
        if request.completed:
            return False
        elapsed = now - request.imgz_body_started - limits.body_grace
        return elapsed > 0 and request.body_bytes_received < limits.body_min_rate * elapsed

    # -- closing ------------------------------------------------------------------------------

    # readable() and writable() run for every channel on every turn of the loop: waitress's own
    # tests are written out here (waitress is pinned) rather than reached through super().
    def readable(self) -> bool:
        if self.linger_until is not None:
            return True
        return not (self.will_close or self.close_when_flushed
                    or len(self.requests) > self.adj.channel_request_lookahead
                    or self.total_outbufs_len)

    def writable(self) -> bool:
        if self.linger_until is not None:
            return False
        return bool(self.total_outbufs_len or self.will_close or self.close_when_flushed)

    def handle_read(self) -> None:
        if self.linger_until is None:
            super().handle_read()
            return
        try:
            data = self.socket.recv(65536)
        except OSError:
            data = b""
        if not data:
            self.handle_close()

    def handle_close(self) -> None:
        if self.linger and self.linger_until is None and self.connected and self.socket is not None:
            try:
                self.socket.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            else:
                self.linger_until = time.monotonic() + LINGER
                self.will_close = self.close_when_flushed = False
                return
        self.server.spool.release(self.request)
        super().handle_close()

    def del_channel(self, map: dict | None = None) -> None:
        super().del_channel(map)
        if self.counted:
            self.counted = False
            self.server.forget(self.group)


UPLOAD_PATH = "/api/1/upload"


def is_upload(request: HTTPRequestParser) -> bool:
    """Whether a request is for the upload endpoint (with or without its trailing slash)."""
    path = request.path or ""
    return path == UPLOAD_PATH or path == UPLOAD_PATH + "/"


def _plain_busy(environ: dict, start_response: Callable) -> list[bytes]:
    start_response("503 Service Unavailable", [("Retry-After", "10"), ("Content-Length", "0")])
    return [b""]


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
                 **kw: Any) -> None:
        self.gate = gate
        self.limits = limits
        self.spool = spool
        self.per_address = per_address
        self.uploads = uploads
        self.by_group: dict[str, int] = {}
        self._groups_lock = threading.Lock()
        super().__init__(application, **kw)

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
        if self.uploads is not None and isinstance(task, GuardedChannel) and task.requests \
                and is_upload(task.requests[0]):
            self.uploads.add_task(task)
        else:
            super().add_task(task)

    def close(self) -> None:
        super().close()
        if self.uploads is not None:
            self.uploads.shutdown()

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
                  trust_proxy: bool = False, upload_threads: int = 0, **kw: Any) -> Any:
    """Like ``waitress.create_server``, with guarded channels.

    With a trusted proxy every client arrives from the proxy's address, so there is no
    per-address cap: the proxy is the one to cap connections per client. ``upload_threads``
    (when not 0) serve the upload endpoint apart from the ``threads`` that serve the rest.
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
                             uploads=uploads, map=socket_map, dispatcher=dispatcher, adj=adj,
                             sockinfo=sockinfo)
               for sockinfo in adj.listen]
    if len(servers) == 1:
        return servers[0]
    listening = [(s.effective_host, s.effective_port) for s in servers]
    return MultiSocketServer(socket_map, adj, listening, dispatcher, servers[-1].log_info)
