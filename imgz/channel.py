"""A waitress channel with read deadlines, a gate between the headers and the body, a cap on the
bodies of requests without a known key, and a graceful close after an early answer. The times
and rates are the server's ``Limits`` (server.py).

- the request line and headers must arrive within ``head_timeout`` of the connection becoming
  ready for them (its opening, or the end of the previous answer): so this is also how long an
  idle keep-alive connection stays open;
- a body must arrive at ``body_min_rate`` bytes a second on average once ``body_grace`` seconds
  have passed, so a drip is cut off while a slow real upload still finishes;
- once the headers of a request with a body are parsed, before any of the body is buffered, the
  gate decides: go on, go on with a valid key, or answer now (the body is then never stored);
- bodies not known to carry a valid key are counted against the server's ``Spool``; past its
  cap such requests are answered with the gate's busy answer;
- a large body the gate said may stream (an upload with a valid key) goes to the application as
  it arrives, through a ``BodyPipe`` (bodypipe.py), ``Limits.streams`` of them at once; an answer
  given before the whole body closes the connection;
- a request whose body the gate said to keep when cut (a resumable upload's PATCH) and whose
  connection ends mid-body is handed to the application with what arrived (``CutBody``), its
  answer thrown away (server.py ``CutBody``): the bytes that made it are stored and count.

An early answer closes the connection gracefully: the server stops sending, then reads and
throws away what the client still sends for ``LINGER`` seconds, so that the client reads the
answer instead of a connection reset. The server these channels belong to is server.py's.
"""
from __future__ import annotations

import logging
import socket
import time
from typing import TYPE_CHECKING, Any, Callable

from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.task import WSGITask

from .accesslog import ENVIRON_FORWARDED, FORWARDING
from .admission import ENVIRON_STREAMED, GO_ON, Head, WSGIApp, client_group
from .bodypipe import BodyPipe
from .logpaths import mask

if TYPE_CHECKING:
    from .server import GuardedServer

log = logging.getLogger("imgz")

LINGER = 5.0  # seconds an early-answered connection reads and discards before it closes
ENVIRON_ANSWER = "imgz.early_answer"
ENVIRON_CUT = "imgz.cut_body"  # the body is what arrived before the connection was cut


class GuardedParser(HTTPRequestParser):
    """waitress's request parser with what the channel keeps of each request."""

    imgz_decided = False
    imgz_keyed = False
    imgz_charged = 0
    imgz_body_started = 0.0
    imgz_answer: WSGIApp | None = None
    imgz_keep_cut = False
    imgz_cut = False
    imgz_stream: BodyPipe | None = None   # the body goes to the application as it arrives
    imgz_stream_slot = False               # it holds one of the server's streams


class GuardedTask(WSGITask):
    """A task that hands the request's early answer, if any, to EarlyAnswers in the environ,
    marks a request that came through a proxy, and tells the server's request log (if any) of
    the answer once it is made."""

    def get_environment(self) -> dict:
        environ = super().get_environment()
        request = self.request
        if request.imgz_answer is not None:
            environ[ENVIRON_ANSWER] = request.imgz_answer
        if request.imgz_cut:
            environ[ENVIRON_CUT] = True
        if request.imgz_stream is not None:
            environ[ENVIRON_STREAMED] = True
        if not FORWARDING.isdisjoint(request.headers):
            environ[ENVIRON_FORWARDED] = True
        return environ

    def build_response_header(self):  # type: ignore[no-untyped-def]
        pipe = self.request.imgz_stream
        if pipe is not None and not pipe.completed:
            # answered before the whole body: the rest is read and thrown away, then the
            # connection closes (gracefully, so that the client reads this answer)
            self.request.headers["CONNECTION"] = "close"
            self.channel.linger = True
        return super().build_response_header()

    def service(self) -> None:
        observer = self.channel.server.observer
        if observer is None:
            super().service()
            return
        started, clock = time.time(), time.perf_counter()
        try:
            super().service()
        finally:
            observer.task_done(self, started, time.perf_counter() - clock)


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
                    # a streamed request is in self.requests since its headers came
                    if not request.empty and request.imgz_stream is None:
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
                log.exception("the gate failed on %s %s", head.method, mask(head.path))
                decision = GO_ON
            if decision.answer is not None:
                self._answer_now(request, decision.answer)
                return False
            request.imgz_keyed = decision.keyed
            request.imgz_keep_cut = decision.keep_cut
            if not decision.keyed and not server.spool.fits(request.content_length or 0):
                self._answer_now(request, self._busy(head))
                return False
            if (decision.stream and not request.chunked and request.content_length >= server.limits.stream_from
                    and request.body_bytes_received == 0 and not self.requests
                    and server.take_stream()):
                self._stream(request)
        if not request.imgz_keyed and not server.spool.charge(request, request.body_bytes_received):
            self._answer_now(request, self._busy(self._head(request)))
            return False
        return True

    def _stream(self, request: GuardedParser) -> None:
        """Hand the request to the application now; its body follows through a pipe."""
        limits = self.server.limits
        request.body_rcv = request.imgz_stream = BodyPipe(
            request.content_length, limits.stream_room, self.server.pull_trigger)
        request.imgz_stream_slot = True
        if request.expect_continue and not self.sent_continue:
            self.send_continue()
        self.requests.append(request)
        self.server.add_task(self)

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
            if request.imgz_stream_slot:
                request.imgz_stream_slot = False
                self.server.end_stream()
            self.ready_since = time.monotonic()

    # -- deadlines ----------------------------------------------------------------------------

    def overdue(self, now: float) -> bool:
        """Whether the request being read has missed its deadline (called on the loop thread)."""
        limits, request = self.server.limits, self.request
        pipe = None if request is None or request.completed else request.imgz_stream
        if pipe is not None and not self.total_outbufs_len:
            # being answered while it arrives: time the body waited on the application is not
            # the client's
            elapsed = now - request.imgz_body_started - limits.body_grace - pipe.paused(now)
            return elapsed > 0 and request.body_bytes_received < limits.body_min_rate * elapsed
        if self.requests:
            return False  # being answered
        if self.total_outbufs_len:
            self.ready_since = now  # still sending: the next request's clock starts afterwards
            return False
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
        if self.will_close or self.close_when_flushed or self.total_outbufs_len:
            return False
        request = self.request
        if request is not None and request.imgz_stream is not None and not request.completed:
            return not request.imgz_stream.full()
        return len(self.requests) <= self.adj.channel_request_lookahead

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
        request = self.request
        self.server.spool.release(request)
        if (request is not None and request.imgz_keep_cut and not request.completed
                and request.error is None and request.body_rcv is not None
                and len(request.body_rcv) > 0):
            self.request = None
            self._serve_cut(request)
        super().handle_close()

    def _serve_cut(self, request: GuardedParser) -> None:
        """Hand what arrived of the body to the application, as a whole body of that length."""
        request.headers["CONTENT_LENGTH"] = str(len(request.body_rcv))
        request.headers.pop("TRANSFER_ENCODING", None)
        request.chunked = False
        request.completed = True
        request.imgz_cut = True
        self.server.serve_cut(self, request)

    def del_channel(self, map: dict | None = None) -> None:
        request = self.request
        if request is not None and request.imgz_stream is not None:
            request.imgz_stream.cut()  # every way a channel closes ends here; no-op once all is in
        super().del_channel(map)
        if self.counted:
            self.counted = False
            self.server.forget(self.group)


def _plain_busy(environ: dict, start_response: Callable) -> list[bytes]:
    start_response("503 Service Unavailable", [("Retry-After", "10"), ("Content-Length", "0")])
    return [b""]
