"""The MP4/MOV (ISO BMFF) box walker: container metadata blanked while the upload is written.

A metadata box is not cut out but turned into a ``free`` box of the same size, its payload zeroed:
every offset in the file (``stco``/``co64`` chunk offsets into ``mdat``) stays valid, whether
``moov`` comes before ``mdat`` (faststart) or after it, so the walk needs no second pass and holds
no box in memory, only a box header or the first bytes of a small box.

An allow-list per level (SPEC §3): the walk descends ``moov``, ``trak``, ``mdia``, ``minf`` and
``stbl``; at the top level, and in ``moov``, ``trak``, ``mdia`` and ``minf``, boxes it does not
know to be structure (``udta``, ``meta``, ``uuid`` XMP, ``keys``/``ilst``, ``loci``, unknown ones)
are blanked. Inside the kept boxes the free text goes too: the creation and modification times of
``mvhd``/``tkhd``/``mdhd`` are zeroed, the track language set to ``und``, the ``hdlr`` name and a
video sample entry's compressor name zeroed. ``mdat`` and the sample tables pass untouched.

A fragmented file (an index without samples, then a ``moof`` and its ``mdat`` a fragment) is
walked as far: ``moov/mvex`` keeps ``mehd``/``trex``/``leva``/``trep``; each ``moof`` keeps
``mfhd``, ``traf`` and ``pssh``; each ``traf`` its sample tables (``tfhd``, ``tfdt``, ``trun``,
``sdtp``, ``sbgp``/``sgpd``, ``subs``, and the encryption's ``saiz``/``saio``/``senc``); the
random access index ``mfra`` keeps ``tfra`` and ``mfro``. Anything else there (``meta``,
``udta``, any ``uuid``) is blanked like the rest, and since nothing moves the ``trun`` data
offsets and the ``tfra`` fragment offsets stay right. At the top level ``styp``, ``sidx`` and
``ssix`` stay; ``emsg`` (timed events: ID3 tags, ad markers) and ``prft`` (the wall-clock time a
fragment was made) are blanked.

What the walk cannot do in place is drop a track: a track whose handler is neither ``vide`` nor
``soun`` (subtitles, timed metadata such as ``mebx``/``gpmd``/``camm``, timecode, chapters) sets
``needs_remux``; so does a structure it cannot walk to its end (truncated, a size that does not
fit its parent, ``cmov``, more boxes than the bytes walked allow: ``MAX_BOXES``), after which
the rest passes as it came.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from imgz.sidemd5 import SideMd5

# Containers the walk enters, by parent (b'' is the top level).
_DESCEND = {(b"", b"moov"), (b"moov", b"trak"), (b"trak", b"mdia"), (b"mdia", b"minf"),
            (b"minf", b"stbl"), (b"moov", b"mvex"),
            (b"", b"moof"), (b"moof", b"traf"), (b"", b"mfra")}
# What stays at each level it checks; anything else there is blanked. stbl, and the levels
# below, are not checked: they hold sample tables and codec set-up, no free text.
_KEEP: dict[bytes, set[bytes]] = {
    b"": {b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"moof", b"mfra", b"sidx",
         b"ssix", b"styp", b"pdin"},
    b"moov": {b"mvhd", b"trak", b"mvex", b"iods", b"ctab", b"free", b"skip", b"wide"},
    b"trak": {b"tkhd", b"edts", b"mdia", b"tref", b"tapt", b"load", b"txas", b"clip", b"matt",
              b"free", b"skip", b"wide"},
    b"mdia": {b"mdhd", b"hdlr", b"minf", b"free", b"skip", b"wide"},
    b"minf": {b"vmhd", b"smhd", b"hmhd", b"nmhd", b"gmhd", b"dinf", b"stbl", b"hdlr", b"free",
              b"skip", b"wide"},
    # a fragmented file: the defaults for its fragments, then each fragment's index
    b"mvex": {b"mehd", b"trex", b"leva", b"trep", b"free", b"skip"},
    b"moof": {b"mfhd", b"traf", b"pssh", b"free", b"skip"},
    b"traf": {b"tfhd", b"tfdt", b"trun", b"sdtp", b"sbgp", b"sgpd", b"subs", b"saiz", b"saio",
              b"senc", b"free", b"skip"},
    b"mfra": {b"tfra", b"mfro", b"free", b"skip"},
}
# Boxes whose first bytes are read (and partly rewritten) before the rest passes: how many.
_PEEK = {b"mvhd": 36, b"tkhd": 36, b"mdhd": 36, b"hdlr": 24, b"stsd": 90}
KEPT_HANDLERS = (b"vide", b"soun")
# Container metadata held for reading the title and description (moov/udta, moov/meta, meta).
TAGS_LIMIT = 1 << 20
# Each box is a step of Python (a few microseconds). Real files have hundreds; a fragmented one
# about a dozen a fragment (moof, mfhd, and traf, tfhd, tfdt, trun a track, then mdat), so the
# count allowed grows with the bytes walked: MAX_BOXES, and one more every BYTES_PER_BOX. That
# holds the walk to a few seconds of CPU a GB whatever the structure, and a file past it is
# remuxed by ffmpeg instead.
MAX_BOXES = 200_000
BYTES_PER_BOX = 512
_ZEROS = bytes(1 << 16)
_UND = (0x55C4).to_bytes(2, "big")   # ISO 639-2 'und', packed as mdhd stores it


@dataclass(frozen=True)
class Cleaned:
    """An MP4/MOV upload whose container metadata was blanked while it was written."""

    md5: str            # of the file as written
    changed: bool       # something was blanked: the file differs from the upload
    needs_remux: bool   # a track must go, or the walk stopped early: ffmpeg remuxes it
    tags: bytes         # the container's metadata boxes as they came, for title and description
    handlers: tuple[str, ...]   # each track's handler type, in order


_HEAD, _PASS, _BLANK, _PEEKING = range(4)


class Mp4Stripper:
    """Walk an ISO BMFF file fed in pieces of any size; what it writes goes to ``write``."""

    def __init__(self, write: Callable[[bytes | memoryview], object]) -> None:
        self._write = write   # the md5 of what arrives is computed here too (received_md5)
        self._received = SideMd5()            # of the upload's bytes
        self._stored: SideMd5 | None = None   # of the bytes written, once they differ
        self._buf = bytearray()        # a box header, or a box's first bytes, being gathered
        self._pos = 0                  # bytes of the upload walked
        self._stack: list[tuple[bytes, int | None]] = []   # open containers: (type, end)
        self._state = _HEAD
        self._left: int | None = 0     # bytes of the current box's payload still to come
        self._box = b""
        self._peek = 0
        self._rest: int = 0
        self._tags: bytearray | None = None
        self.tags = bytearray()
        self.changed = False
        self.broken = False
        self.boxes = 0
        self.handlers: list[bytes] = []
        self._handler: bytes | None = None   # of the track being walked

    # -- output
    def _out(self, data: bytes | memoryview, was: bytes | memoryview | None = None) -> None:
        """Write data, which stands for the upload's bytes ``was`` (the same bytes when None).

        Until the first byte that differs both md5s are one; there it is copied, and from
        then on each follows its own bytes.
        """
        if not data:
            return
        if was is None:
            was = data
        if self._stored is None and was is not data and data != was:
            self._stored = self._received.copy()
        self._received.update(was)
        if self._stored is not None:
            self._stored.update(data)
        self._write(data)

    def _zeros(self, was: memoryview) -> None:
        for at in range(0, len(was), len(_ZEROS)):
            piece = was[at:at + len(_ZEROS)]
            self._out(_ZEROS[:len(piece)], piece)

    # -- input
    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if not isinstance(data, bytes):
            data = bytes(data)   # what is written may wait to be hashed: it must not change
        view = memoryview(data)
        while view:
            if self.broken:
                self._out(view)
                self._pos += len(view)
                return
            taken = self._step(view)
            self._pos += taken
            view = view[taken:]

    def _parent(self) -> bytes:
        return self._stack[-1][0] if self._stack else b""

    def _close_ended(self) -> None:
        while self._stack and self._stack[-1][1] is not None and self._pos >= self._stack[-1][1]:
            kind, _ = self._stack.pop()
            if kind == b"trak":
                self.handlers.append(self._handler or b"")
                self._handler = None

    def _fail(self, pending: bytes) -> None:
        """Stop walking: what was held goes out as it came, and so will the rest."""
        self.broken = True
        self._out(bytes(pending))

    def _step(self, view: memoryview) -> int:
        """Walk on through the start of view; return how many of its bytes were used."""
        if self._state == _HEAD:
            return self._head(view)
        if self._state == _PEEKING:
            want = self._peek - len(self._buf)
            self._buf += view[:want]
            used = min(want, len(view))
            if len(self._buf) == self._peek:
                self._peeked()
            return used
        count = len(view) if self._left is None else min(len(view), self._left)
        piece = view[:count]
        if self._state == _BLANK:
            if self._tags is not None:
                room = TAGS_LIMIT - len(self._tags)
                self._tags += piece[:max(room, 0)]
            if not self.changed and bytes(piece).count(0) != count:
                self.changed = True
            self._zeros(piece)
        else:
            self._out(piece)
        if self._left is not None:
            self._left -= count
            if self._left == 0:
                self._end_box()
        return count

    def _end_box(self) -> None:
        if self._tags is not None:
            # a metadata box kept whole for its tags; past the limit it is left out
            if len(self._tags) <= TAGS_LIMIT and len(self.tags) + len(self._tags) <= TAGS_LIMIT:
                self.tags += self._tags
            self._tags = None
        self._state = _HEAD
        self._buf.clear()

    def _head(self, view: memoryview) -> int:
        """Gather a box header (8 bytes, 16 with a 64-bit size) and decide what the box gets."""
        if not self._buf:
            self._close_ended()
        need = 8 if len(self._buf) < 8 else 16
        used = min(need - len(self._buf), len(view))
        self._buf += view[:used]
        buf = self._buf
        if len(buf) < 8:
            return used
        size = int.from_bytes(buf[:4], "big")
        if size == 1 and len(buf) < 16:
            return used
        kind = bytes(buf[4:8])
        header = len(buf)
        if size == 1:
            size = int.from_bytes(buf[8:16], "big")
        head = bytes(buf)
        buf.clear()
        start = self._pos + used - header
        parent_end = self._stack[-1][1] if self._stack else None
        self.boxes += 1
        if size == 0:
            end = parent_end   # to the end of its parent (of the file, at the top)
        else:
            end = start + size
        if (self.boxes > MAX_BOXES + start // BYTES_PER_BOX or kind == b"cmov"
                or (size and size < header)
                or (end is not None and parent_end is not None and end > parent_end)):
            self._fail(head)
            return used
        parent = self._parent()
        left = None if end is None else end - start - header
        if (parent, kind) in _DESCEND:
            self._out(head)
            self._stack.append((kind, end))
            if kind == b"trak":
                self._handler = None
            return used
        keep = _KEEP.get(parent)
        if keep is not None and kind not in keep:
            self.changed = True
            self._out(head[:4] + b"free" + head[8:], head)
            if parent in (b"", b"moov") and kind in (b"udta", b"meta") and left is not None \
                    and header + left <= TAGS_LIMIT:
                self._tags = bytearray(head)   # kept as it came, for its tags
            self._begin(_BLANK, left)
            return used
        self._out(head)
        if kind in _PEEK and left is not None and (kind != b"stsd" or parent == b"stbl"):
            self._box = kind
            self._peek = min(_PEEK[kind], left)
            self._rest = left - self._peek
            self._state = _PEEKING
            if self._peek == 0:
                self._peeked()
            return used
        self._begin(_PASS, left)
        return used

    def _begin(self, state: int, left: int | None) -> None:
        self._buf.clear()
        self._state = state
        self._left = left
        if left == 0:
            self._end_box()

    def _peeked(self) -> None:
        data = bytearray(self._buf)
        kind = self._box
        before = bytes(data)
        if kind in (b"mvhd", b"tkhd", b"mdhd") and data:
            times = 16 if data[0] == 1 else 8
            data[4:4 + times] = bytes(len(data[4:4 + times]))
            if kind == b"mdhd":
                at = 4 + times + (12 if data[0] == 1 else 8)
                if len(data) >= at + 2:
                    data[at:at + 2] = _UND
        elif kind == b"hdlr":
            if len(data) >= 12 and self._parent() == b"mdia":
                self._handler = bytes(data[8:12])
        elif kind == b"stsd":
            # a video sample entry's compressor name: 32 bytes at 50 into the entry
            if self._handler == b"vide" and len(data) >= 90:
                data[58:90] = bytes(32)
        if bytes(data) != before:
            self.changed = True
        self._out(bytes(data), before)
        self._buf.clear()
        # the rest of hdlr is its name: free text, zeroed
        self._begin(_BLANK if kind == b"hdlr" else _PASS, self._rest)

    def finish(self) -> Cleaned:
        """End of input: what the walk found. A box left unfinished means it stopped early."""
        self._close_ended()
        if not self.broken:
            if self._state == _PEEKING or (self._state in (_PASS, _BLANK) and self._left):
                self.broken = True
            elif self._state == _HEAD and self._buf:
                self.broken = True
            elif any(end is not None and end > self._pos for _, end in self._stack):
                self.broken = True
        if self._state == _PEEKING and self._buf:
            self._out(bytes(self._buf))
        elif self._state == _HEAD and self._buf:
            self._out(bytes(self._buf))
        self._buf.clear()
        for kind, _ in self._stack:
            if kind == b"trak":
                self.handlers.append(self._handler or b"")
        self._stack.clear()
        odd = any(h not in KEPT_HANDLERS for h in self.handlers)
        received = self.received_md5()
        stored = self._stored.hexdigest() if self._stored is not None else received
        return Cleaned(stored, self.changed, self.broken or odd or not self.handlers,
                       bytes(self.tags), tuple(h.decode("latin-1") for h in self.handlers))

    def received_md5(self) -> str:
        """The md5 of the upload's bytes walked so far (all of them after ``finish``)."""
        return self._received.hexdigest()
