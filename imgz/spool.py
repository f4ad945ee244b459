"""An upload's bytes on their way to the process's scratch folder: hashed, counted, filtered.

Werkzeug streams a multipart file part into a HashingWriter, and so do base64 and URL sources
(sources.py): the upload is written to disk once, its md5 and size computed on the way. A JPEG
goes through an arrival filter (jpeg.JpegArrival) that drops its metadata as it is written unless
the settings keep metadata, an MP4 or MOV through one that blanks its container metadata
(mp4strip.Mp4Stripper); the writer chooses from that setting (``upload_writer``).
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Callable

from . import filetype, jpeg, media, mp4strip, scratch
from .sidemd5 import SideMd5
from .disk import raise_storage_error
from .errors import ImgzError, NoStorage, TooBig

# A filter factory for HashingWriter: given the writer's own write function, an object with
# feed(chunk) and finish() (jpeg.JpegArrival, mp4strip.Mp4Stripper).
Arrival = Callable[[Callable[[bytes | memoryview], None]], Any]


def _jpeg_stripping(write: Callable[[bytes | memoryview], None]) -> jpeg.JpegArrival:
    return jpeg.JpegArrival(write, media.strip_on_arrival)


def _jpeg_counting(write: Callable[[bytes | memoryview], None]) -> jpeg.JpegArrival:
    return jpeg.JpegArrival(write, lambda header: False)


class _AsItCame:
    """No filter for this type: the upload is written as it arrives."""

    def __init__(self, write: Callable[[bytes | memoryview], None]) -> None:
        self.feed = write

    def finish(self) -> None:
        return None


class _ByType:
    """Hold an upload's first bytes until its type is known, then pass them and the rest to the
    filter for that type: a JPEG's (``jpeg``), an MP4's or MOV's (``mp4strip``, unless metadata
    is kept), or none."""

    def __init__(self, write: Callable[[bytes | memoryview], None], keep_metadata: bool) -> None:
        self._write = write
        self._keep = keep_metadata
        self._head = bytearray()
        self._filter: Any = None
        self._md5 = SideMd5()

    def feed(self, data: bytes | memoryview) -> None:
        if self._filter is None:
            self._head += data
            if not self._choose(final=False):
                return
            data, self._head = bytes(self._head), bytearray()
        if not isinstance(self._filter, mp4strip.Mp4Stripper):
            self._md5.update(data if isinstance(data, bytes) else bytes(data))
        self._filter.feed(data)

    def received_md5(self) -> str:
        """The md5 of the bytes fed so far: the MP4 walk computes it with the stored file's (one
        md5 until the first byte it changes), else it is computed here."""
        if isinstance(self._filter, mp4strip.Mp4Stripper):
            return self._filter.received_md5()
        if self._filter is None:
            return hashlib.md5(self._head).hexdigest()
        return self._md5.hexdigest()

    def _choose(self, final: bool) -> bool:
        head = self._head
        if len(head) < 8 and not final:
            return False
        if head.startswith(b"\xff\xd8\xff"):
            self._filter = (_jpeg_counting if self._keep else _jpeg_stripping)(self._write)
            return True
        if head[4:8] == b"ftyp" and not final:
            # the brands decide: wait for the whole ftyp box, as far as sniffing reads
            if len(head) < min(max(int.from_bytes(head[:4], "big"), 8), filetype.HEAD):
                return False
        if not self._keep and filetype.sniff_head(bytes(head[:filetype.HEAD])) in ("mp4", "mov"):
            self._filter = mp4strip.Mp4Stripper(self._write)
        else:
            self._filter = _AsItCame(self._write)
        return True

    def finish(self) -> Any:
        if self._filter is None:
            self._choose(final=True)
            head, self._head = bytes(self._head), bytearray()
            if head:
                if not isinstance(self._filter, mp4strip.Mp4Stripper):
                    self._md5.update(head)
                self._filter.feed(head)
        return self._filter.finish()


def arrival_filter(keep_metadata: bool) -> Arrival:
    """The arrival filter of uploads: JPEGs lose their metadata on the way to the disk, and MP4
    and MOV files their container metadata; with metadata kept they are written as they
    arrive, a JPEG's scans still counted."""
    return lambda write: _ByType(write, keep_metadata)


class HashingWriter:
    """A temp file in the process's scratch folder that computes md5 and size while it is written.

    It stops with TooBig past ``limit`` bytes and with NoStorage when the disk is full. Werkzeug
    uses it as the multipart stream factory, so an upload goes to disk once, hashed on the way.
    An ``arrival`` filter may change the bytes on their way to the file (the md5 and size stay
    those of the upload as received); ``finish()`` ends it. The file is not fsynced here: it is
    fsynced when it, or a file made from it, is stored.
    """

    def __init__(self, data: Path, limit: int, limit_mb: float,
                 arrival: Arrival | None = None, *, drain: bool = False) -> None:
        fd, name = tempfile.mkstemp(prefix="up-", dir=scratch.folder(data))
        self.path = Path(name)
        # Unbuffered: a full disk must fail in write(), where it becomes a 507, not in a later
        # flush hidden inside Werkzeug's seek() or close().
        self._file: IO[bytes] = os.fdopen(fd, "w+b", buffering=0)
        # past its first MiBs a large upload is hashed on a thread beside the writing
        self._md5 = SideMd5()
        self.size = 0
        self.limit = limit
        self.limit_mb = limit_mb
        # A filter between the upload and the file (jpeg.JpegArrival): it writes through _put.
        self._filter = arrival(self._put) if arrival is not None else None
        self._finished = False
        self._filtered: Any = None
        # With drain, TooBig and NoStorage are kept in ``error`` and the rest of the part is
        # thrown away, so that the form around it can still be read.
        self._drain = drain
        self.error: ImgzError | None = None

    def write(self, chunk: bytes) -> int:
        if self.error is not None:
            return len(chunk)
        try:
            self.size += len(chunk)
            if self.size > self.limit:
                raise TooBig(self.limit_mb)
            if self._filter is None or not hasattr(self._filter, "received_md5"):
                self._md5.update(chunk if isinstance(chunk, bytes) else bytes(chunk))
            if self._filter is not None:
                self._filter.feed(chunk)
            else:
                self._put(chunk)
        except (TooBig, NoStorage) as exc:
            if not self._drain:
                raise
            self.error = exc
            try:
                self._file.truncate(0)  # give the space back now; the file goes at the end
            except OSError:
                pass
        return len(chunk)

    def _put(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        try:
            while view:
                written = self._file.write(view)
                view = view[written:]
        except OSError as exc:
            raise_storage_error(exc)

    def finish(self) -> Any:
        """The upload is complete: let the filter write what it held; returns its result
        (None without a filter, or when it wrote the upload as it arrived). Later calls
        return the same result."""
        if not self._finished:
            self._finished = True
            if self._filter is not None:
                self._filtered = self._filter.finish()
        return self._filtered

    @property
    def md5(self) -> str:
        """Of the upload as received; a filter that hashes what it is fed says it."""
        if self._filter is not None and hasattr(self._filter, "received_md5"):
            return self._filter.received_md5()
        return self._md5.hexdigest()

    def discard(self) -> None:
        """Close and remove the file; never raises, it runs while a request is torn down."""
        try:
            self.close()
        except OSError:
            pass
        try:
            self.path.unlink()
        except OSError:
            pass

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()

    # Werkzeug's FileStorage reads back and seeks through the stream it was given.
    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)


def upload_writer(data: Path, limit: int, limit_mb: float, keep_metadata: bool, *,
                  drain: bool = False) -> HashingWriter:
    """A writer for an upload's source, its arrival filter chosen by the metadata setting."""
    return HashingWriter(data, limit, limit_mb, arrival_filter(keep_metadata), drain=drain)


def write_bytes(data: Path, payload: bytes, limit: int, limit_mb: float,
                arrival: Arrival | None = None) -> HashingWriter:
    """Put bytes held in memory into a hashed temp file."""
    writer = HashingWriter(data, limit, limit_mb, arrival)
    try:
        writer.write(payload)
        writer.finish()
    except BaseException:
        writer.discard()
        raise
    return writer
