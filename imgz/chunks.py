"""Reading an image file's chunks forward, with bounded memory and a bounded count of steps.

The metadata walkers (metadata.py, webpstrip.py, gifstrip.py) read through a ``Reader``, which
holds at most a read chunk or the piece asked for, and count each chunk or block with a
``Counter``, which refuses a file past MAX_CHUNKS.
"""
from __future__ import annotations

from typing import BinaryIO

from imgz.errors import InvalidImage, TooComplex

_CHUNK = 1 << 16

# Each chunk or block is a step of Python work here (and in Pillow's readers). Real files stay far
# below: libpng cuts IDAT into 8 KB chunks, so a 200 MB PNG holds about 25,000; an animation has
# two or three per frame; a GIF's data sub-blocks are walked apart and not counted.
MAX_CHUNKS = 100_000


class Reader:
    """A forward-only buffered reader whose every shortfall is a truncated image."""

    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        self._buf = b""
        self._pos = 0

    def window(self, n: int = 1) -> bytes:
        """Return the unread bytes, topped up to at least ``n`` unless the file ends first."""
        if self._pos:
            self._buf = self._buf[self._pos:]
            self._pos = 0
        while len(self._buf) < n:
            more = self._f.read(max(_CHUNK, n - len(self._buf)))
            if not more:
                break
            self._buf += more
        return self._buf

    def advance(self, n: int) -> None:
        self._pos += n

    def read(self, n: int) -> bytes:
        if len(self._buf) - self._pos < n and len(self.window(n)) < n:
            raise InvalidImage()
        data = self._buf[self._pos:self._pos + n]
        self._pos += n
        return data

    def copy(self, n: int, out: BinaryIO | None) -> None:
        """Move ``n`` bytes to ``out``, or past them when ``out`` is None."""
        while n:
            if self._pos == len(self._buf):
                self._buf, self._pos = self._f.read(_CHUNK), 0
                if not self._buf:
                    raise InvalidImage()
            step = min(n, len(self._buf) - self._pos)
            if out is not None:
                out.write(memoryview(self._buf)[self._pos:self._pos + step])
            self._pos += step
            n -= step

    def at_end(self) -> bool:
        return not self.window()


class Counter:
    """Counts chunks or blocks and refuses a file past MAX_CHUNKS."""

    def __init__(self) -> None:
        self.count = 0

    def step(self) -> None:
        self.count += 1
        if self.count > MAX_CHUNKS:
            raise TooComplex()
