"""A request body handed to the application while it still arrives.

The server's loop thread puts what it receives (``received``, the interface of waitress's body
receivers); a request thread reads it (``read``, ``readinto``) as a file. At most ``room`` bytes
are held: past that the loop stops reading the socket (``full``) until the reader has taken half
of them, and ``wake`` (the loop's trigger) is called so that it reads again. The time spent full
is not the client's: ``paused`` says how long, for the body's minimum rate.

A body cut short (the connection closed, the server stopping) makes the reader's next read raise
``BodyCut``, a ``ValueError`` as a body cut short is to a form parser. A reader that stops before
the end abandons the rest: later bytes are counted and thrown away.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable


class BodyCut(ValueError):
    """The body ended before its length: the connection was closed."""


class BodyPipe:
    completed = False   # every byte of the body has been put
    error = None        # what waitress's receivers name a broken body; never set here

    def __init__(self, length: int, room: int, wake: Callable[[], object]) -> None:
        self.length = length
        self.remain = length
        self.room = room
        self._wake = wake
        self._chunks: deque[bytes | memoryview] = deque()
        self._held = 0
        self._cond = threading.Condition(threading.Lock())
        self._cut = False
        self._abandoned = False
        self._full_since: float | None = None
        self._paused = 0.0
        self.taken = 0      # bytes the reader has read

    # -- the loop's side: waitress's receiver interface -------------------------------------
    def received(self, data: bytes) -> int:
        if self.remain <= 0:
            self.completed = True
            return 0
        used = min(len(data), self.remain)
        with self._cond:
            self.remain -= used
            if not self._abandoned and not self._cut:
                self._chunks.append(data if used == len(data) else memoryview(data)[:used])
                self._held += used
                if self._held >= self.room and self._full_since is None:
                    self._full_since = time.monotonic()
            if self.remain == 0:
                self.completed = True
            self._cond.notify()
        return used

    def full(self) -> bool:
        """Whether the loop should stop reading the socket for now."""
        return self._held >= self.room and not self._abandoned

    def paused(self, now: float) -> float:
        """Seconds the body waited on the reader, up to ``now``."""
        with self._cond:
            since = self._full_since
            return self._paused + (now - since if since is not None else 0.0)

    def cut(self) -> None:
        """The connection is gone: a reader waiting or to come gets ``BodyCut``."""
        with self._cond:
            if not self.completed:
                self._cut = True
                self._chunks.clear()
                self._held = 0
            self._cond.notify_all()

    # waitress calls these on the body's receiver and buffer: the body is the pipe itself
    def __len__(self) -> int:
        return self.length - self.remain

    def getfile(self) -> BodyPipe:
        return self

    def getbuf(self) -> BodyPipe:
        return self

    def close(self) -> None:
        """The request is done with (answered, or its connection closed)."""
        if self.completed:
            self.abandon()
        else:
            self.cut()

    # -- the reader's side -----------------------------------------------------------------
    def abandon(self) -> None:
        """The reader wants no more: what is held and what still comes is thrown away."""
        with self._cond:
            self._abandoned = True
            self._chunks.clear()
            self._held = 0
            self._unpause()
        self._wake()

    def read(self, size: int | None = -1) -> bytes:
        """Up to ``size`` bytes (all the rest when negative), waiting for at least one; b"" at
        the end of the body."""
        if size is None or size < 0:
            parts = []
            while piece := self._read_some(1 << 20):
                parts.append(piece)
            return b"".join(parts)
        return self._read_some(size) if size else b""

    def _read_some(self, size: int) -> bytes:
        out: list[bytes | memoryview] = []
        got = 0
        with self._cond:
            while not (self._chunks or self._cut or self.completed or self._abandoned):
                self._cond.wait()
            if self._cut:
                raise BodyCut(f"the body ended after {self.length - self.remain} of "
                              f"{self.length} bytes")
            while self._chunks and got < size:
                chunk = self._chunks.popleft()
                if got + len(chunk) > size:
                    keep = size - got
                    self._chunks.appendleft(memoryview(chunk)[keep:])
                    chunk = memoryview(chunk)[:keep]
                out.append(chunk)
                got += len(chunk)
            self._held -= got
            woke = self._full_since is not None and self._held <= self.room // 2
            if woke:
                self._unpause()
        self.taken += got
        if woke:
            self._wake()
        if len(out) == 1 and isinstance(out[0], bytes):
            return out[0]
        return b"".join(out)

    def readinto(self, buffer: bytearray | memoryview) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def readable(self) -> bool:
        return True

    def _unpause(self) -> None:
        if self._full_since is not None:
            self._paused += time.monotonic() - self._full_since
            self._full_since = None
