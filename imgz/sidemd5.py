"""An md5 computed on another thread once the data is large: an upload's md5 (spool.py) and, when
its bytes change on the way, the stored file's (mp4strip.py) are computed on two cores while
the request's thread reads the body and writes the file."""
from __future__ import annotations

import hashlib
import queue
import threading


class SideMd5:
    """An md5 whose data past the first INLINE bytes is hashed on a thread of its own: hashlib
    lets go of the interpreter while it hashes, so the hashing of a large upload runs beside the
    thread that reads and writes it, on another core when there is one.

    What ``update`` is given must not change afterwards (bytes, or views of bytes). At most QUEUED
    pieces of PIECE bytes wait: a few MiB referenced, whatever size the pieces arrive in. A
    thread left without pieces for IDLE seconds ends (an upload given up); the next piece starts
    another. ``hexdigest`` waits for the queue to drain.
    """

    INLINE = 8 << 20
    QUEUED = 32
    PIECE = 64 << 10
    IDLE = 120.0

    def __init__(self) -> None:
        self._md5 = hashlib.md5()
        self._count = 0
        self._queue: queue.Queue[bytes | memoryview | None] = queue.Queue(self.QUEUED)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def update(self, data: bytes | memoryview) -> None:
        self._count += len(data)
        if self._count <= self.INLINE:
            self._md5.update(data)
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="imgz-md5", daemon=True)
                self._thread.start()
        view = memoryview(data)
        for at in range(0, len(view), self.PIECE):
            self._queue.put(view[at:at + self.PIECE])

    def _run(self) -> None:
        while True:
            try:
                data = self._queue.get(timeout=self.IDLE)
            except queue.Empty:
                with self._lock:
                    if self._queue.empty():
                        self._thread = None
                        return
                continue
            if data is None:
                return
            self._md5.update(data)

    def copy(self) -> SideMd5:
        """Another md5 that goes on from here on its own."""
        self._drain()
        other = SideMd5()
        other._md5, other._count = self._md5.copy(), self._count
        return other

    def hexdigest(self) -> str:
        self._drain()
        return self._md5.hexdigest()

    def _drain(self) -> None:
        """Wait until every piece given is hashed."""
        with self._lock:   # a thread about to end idle sees the sentinel and takes it
            thread = self._thread
            if thread is not None:
                self._queue.put(None)
        if thread is not None:
            thread.join()
            with self._lock:
                self._thread = None
