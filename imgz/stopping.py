"""A clean stop of the guarded server (server.py): on SIGTERM or SIGINT it takes no new
connection, answers what was asked already within a grace period, closes idle connections, and
returns so the caller can end its threads before the loop's trigger closes."""
from __future__ import annotations

import logging
import os
import signal
import threading
import time
from typing import Any

from waitress import wasyncore
from waitress.channel import HTTPChannel

from .channel import GuardedChannel
from .server import GuardedServer

log = logging.getLogger("imgz")


def serve(server: Any, grace: float) -> None:
    """Serve until SIGTERM or SIGINT, then drain for at most ``grace`` seconds (``drain``); a
    second signal stops at once (KeyboardInterrupt). The caller closes the server.

    The signal sets a flag the loop reads between two polls: an exception raised inside the
    loop could cut a request whose bytes were read but not yet parsed."""
    stopping = threading.Event()
    socket_map = _socket_map(server)
    wake = next(d.trigger.trigger for d in socket_map.values() if isinstance(d, GuardedServer))

    def on_signal(signum: int, frame: Any) -> None:
        if stopping.is_set():
            raise KeyboardInterrupt
        stopping.set()
        # poll() resumes after a handler (PEP 475): a byte in the loop's own pipe ends it now.
        # Written straight, without pull_trigger's lock, which the interrupted thread may hold.
        os.write(wake, b"x")

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    # one poll at a time, straight (what loop(count=1) does, without its set-up on every turn)
    poll = wasyncore.poll2 if server.adj.asyncore_use_poll else wasyncore.poll
    while socket_map and not stopping.is_set():
        poll(0.5, socket_map)
    if socket_map:
        drain(server, grace)


def drain(server: Any, grace: float) -> int:
    """Close the listening sockets, answer the requests already asked (and bodies already on
    their way) for at most ``grace`` seconds, and close connections as they fall idle.

    Returns how many connections still had a request in progress when the grace ran out.
    """
    socket_map = _socket_map(server)
    for listener in [d for d in socket_map.values() if isinstance(d, GuardedServer)]:
        wasyncore.dispatcher.close(listener)  # its socket only; the trigger stays for the threads
    deadline = time.monotonic() + grace
    while True:
        busy = 0
        for channel in list(socket_map.values()):
            if not isinstance(channel, HTTPChannel):
                continue
            if _in_progress(channel):
                busy += 1
            else:
                channel.handle_close()
        if not busy or time.monotonic() >= deadline:
            break
        wasyncore.loop(timeout=0.1, map=socket_map, use_poll=server.adj.asyncore_use_poll, count=1)
    if busy:
        log.warning("stopping with %d request%s unanswered after %.0f s", busy,
                    "" if busy == 1 else "s", grace)
    return busy


def _in_progress(channel: HTTPChannel) -> bool:
    """A request being served or queued, an answer not yet sent, or a body arriving; a
    connection that has only begun its request line or headers is not waited for, nor one
    answered early (lingering until it closes)."""
    if isinstance(channel, GuardedChannel) and channel.linger_until is not None:
        return False
    partial = channel.request
    return bool(channel.requests or channel.total_outbufs_len or (partial and partial.headers_finished))


def _socket_map(server: Any) -> dict:
    return server.map if hasattr(server, "map") else server._map
