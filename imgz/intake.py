"""Reading an upload's form so that a long base64 source never sits whole in memory.

Werkzeug keeps every form field as a string: a 30 MB base64 source cost about eight times its
size (the body, the joined parts, the decoded text, the stripped copy, the bytes). Here the
first value of a source field (``source``, imgBB's ``image``) is watched as it arrives: a short
one, or one that starts like a URL, stays a form string as before; a long one is decoded piece
by piece into a spool (sources.Base64Spool) and never kept. Other fields and file parts are read
exactly as Werkzeug reads them (multipart: MultipartDecoder events, file parts through the
request's stream factory; urlencoded: the same ``parse_qsl`` call).
"""
from __future__ import annotations

import codecs
import re
from typing import IO, Any, Callable, Protocol
from urllib.parse import parse_qsl, unquote

from werkzeug.datastructures import FileStorage, Headers, MultiDict
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData

# A value longer than this that does not start like a URL is a base64 source, streamed.
HELD = 64 * 1024
CHUNK = 64 * 1024
_URL_START = re.compile(r"https?://", re.IGNORECASE)
_QUOTE_ERRORS = "werkzeug.url_quote"  # registered by werkzeug.urls, as parse_qsl uses it there


class Spool(Protocol):
    def feed(self, text: str) -> None: ...


class SourceValue:
    """The first value of a source field, as it arrives: held as text, or fed to a spool.

    The choice is made once enough is known: a value that ends first, or whose first
    non-blank characters are ``http://`` or ``https://``, stays text (a URL, or a value the
    endpoint judges absent or short); any other value longer than HELD goes to a spool.
    """

    def __init__(self, make_spool: Callable[[], Spool], text_limit: int | None) -> None:
        self._make_spool = make_spool
        self._text_limit = text_limit
        self._held: list[str] = []
        self._size = 0
        self.spool: Spool | None = None
        self._decided = False

    def feed(self, text: str) -> None:
        if self.spool is not None:
            self.spool.feed(text)
            return
        self._held.append(text)
        self._size += len(text)
        if self._decided:
            if self._text_limit is not None and self._size > self._text_limit:
                raise RequestEntityTooLarge()
            return
        if self._size <= HELD:
            return
        held = "".join(self._held)
        core = held.strip()
        if len(core) < 8:
            # Too little to tell a URL yet: blanks around it are kept as one each (the value is
            # stripped before it is judged, and blanks are not absent).
            kept = (" " if held[:1].isspace() else "") + core + (" " if core and held[-1:].isspace() else "")
            self._held, self._size = [kept], len(kept)
            return
        start = core
        self._decided = True
        if _URL_START.match(start):
            self._held = [held]
            return
        self._held, self._size = [], 0
        self.spool = self._make_spool()
        self.spool.feed(held)

    def text(self) -> str | None:
        """The value as a string, or None when it went to the spool."""
        return None if self.spool is not None else "".join(self._held)


def read_multipart(stream: IO[bytes], boundary: str, *, divert: tuple[str, ...],
                   make_spool: Callable[[str], Spool], stream_factory: Callable[..., Any],
                   content_length: int | None, max_form_memory_size: int | None,
                   max_parts: int | None) -> tuple[MultiDict, MultiDict, dict[str, Spool]]:
    """Werkzeug's MultiPartParser.parse, with the first field of each name in ``divert`` watched.

    Later fields of a diverted name are dropped unread: the first value counts.
    """
    if not boundary:
        raise ValueError("Missing boundary")
    parser = MultipartDecoder(boundary.encode("ascii"), max_form_memory_size=max_form_memory_size,
                              max_parts=max_parts)
    fields: list[tuple[str, str]] = []
    files: list[tuple[str, FileStorage]] = []
    spools: dict[str, Spool] = {}
    seen: set[str] = set()
    part: Field | File | None = None
    held: list[bytes] = []
    size = 0
    container: Any = None
    source: SourceValue | None = None
    decoder: Any = None
    skipping = False
    while True:
        data = stream.read(CHUNK)
        parser.receive_data(data or None)
        event = parser.next_event()
        while not isinstance(event, (Epilogue, NeedData)):
            if isinstance(event, Field):
                part, held, size, container, source, skipping = event, [], 0, None, None, False
                if event.name in divert:
                    skipping = event.name in seen
                    seen.add(event.name)
                    if not skipping:
                        name = event.name
                        source = SourceValue(lambda: make_spool(name), max_form_memory_size)
                        decoder = codecs.getincrementaldecoder(_charset(event.headers))("replace")
            elif isinstance(event, File):
                part, source, skipping = event, None, False
                container = stream_factory(total_content_length=content_length,
                                           filename=event.filename,
                                           content_type=event.headers.get("content-type"),
                                           content_length=_content_length(event.headers))
            elif isinstance(event, Data) and part is not None:
                if source is not None:
                    source.feed(decoder.decode(event.data, final=not event.more_data))
                elif skipping:
                    pass
                elif isinstance(part, File):
                    container.write(event.data)
                else:
                    size += len(event.data)
                    if max_form_memory_size is not None and size > max_form_memory_size:
                        raise RequestEntityTooLarge()
                    held.append(event.data)
                if not event.more_data:
                    if source is not None:
                        text = source.text()
                        if text is None:
                            spools[part.name] = source.spool  # type: ignore[assignment]
                        else:
                            fields.append((part.name, text))
                    elif skipping:
                        pass
                    elif isinstance(part, File):
                        container.seek(0)
                        files.append((part.name, FileStorage(container, part.filename, part.name,
                                                             headers=part.headers)))
                    else:
                        fields.append((part.name, b"".join(held).decode(_charset(part.headers),
                                                                        "replace")))
            event = parser.next_event()
        if not data:
            break
    return MultiDict(fields), MultiDict(files), spools


def _charset(headers: Headers) -> str:
    # Werkzeug's safe list: anything else is read as UTF-8.
    content_type = headers.get("content-type")
    if content_type:
        charset = parse_options_header(content_type)[1].get("charset", "").lower()
        if charset in {"ascii", "us-ascii", "utf-8", "iso-8859-1"}:
            return charset
    return "utf-8"


def _content_length(headers: Headers) -> int:
    try:
        return int(headers["content-length"])
    except (KeyError, ValueError):
        return 0


class _Unquote:
    """Percent-decoding of a urlencoded value in pieces, exactly as ``parse_qsl`` decodes it whole.

    A piece is cut only where no escape, nor the UTF-8 sequence of escapes it belongs to, is split.
    """

    def __init__(self, out: Callable[[str], None]) -> None:
        self._out = out
        self._rest = ""

    def feed(self, text: str, final: bool = False) -> None:
        text = self._rest + text
        cut = len(text) if final else _safe_cut(text)
        self._rest = text[cut:]
        if cut:
            self._out(unquote(text[:cut].replace("+", " "), errors=_QUOTE_ERRORS))


def _safe_cut(text: str) -> int:
    """An index before which every escape is whole, and whose next character is known and does
    not continue a character begun before it (an escape of a UTF-8 byte 0x80-0xBF)."""
    end = len(text)
    for cut in range(end - 1, max(end - 64, -1), -1):
        if "%" in text[max(cut - 2, 0):cut]:
            continue
        if text[cut] == "%" and (end - cut < 3 or text[cut + 1] in "89ABab"):
            continue
        return cut
    if end <= 64:
        return 0  # wait for more
    # 64 characters of escapes of continuation bytes or of stray '%': such a value is no base64
    # whatever the cut, so cut where an escape is whole, or anywhere, rather than hold it all.
    for cut in range(end - 1, max(end - 4, -1), -1):
        if "%" not in text[max(cut - 2, 0):cut]:
            return cut
    return end - 2


def read_urlencoded(stream: IO[bytes], *, divert: tuple[str, ...],
                    make_spool: Callable[[str], Spool]) -> tuple[MultiDict, dict[str, Spool]]:
    """Werkzeug's urlencoded parsing (strict UTF-8, ``parse_qsl``), with the first value of each
    name in ``divert`` watched as it arrives; later values of a diverted name are dropped."""
    utf8 = codecs.getincrementaldecoder("utf-8")()  # strict: a body that is no UTF-8 is refused
    kept: list[str] = []          # whole pairs, parsed at the end like Werkzeug does
    pair: list[str] = []          # the pair being read, until its name is known
    values: list[tuple[str, str]] = []
    spools: dict[str, Spool] = {}
    seen: set[str] = set()
    source: SourceValue | None = None
    unquoter: _Unquote | None = None
    skipping = False

    def end_value() -> None:
        nonlocal source, unquoter, skipping
        if unquoter is not None and source is not None:
            unquoter.feed("", final=True)
            text = source.text()
            if text is None:
                spools[name] = source.spool  # type: ignore[assignment]
            else:
                values.append((name, text))
        source = unquoter = None
        skipping = False

    def keep(whole: str) -> None:
        if "=" not in whole:  # a name alone has the empty value
            alone = unquote(whole.replace("+", " "), errors=_QUOTE_ERRORS)
            if alone in divert:
                if alone not in seen:
                    seen.add(alone)
                    values.append((alone, ""))
                return
        kept.append(whole)

    name = ""
    named = False                 # the name of the pair being read is known (it has an '=')
    while True:
        data = stream.read(CHUNK)
        text = utf8.decode(data, final=not data)
        while text:
            amp = text.find("&")
            piece, text = (text, "") if amp < 0 else (text[:amp], text[amp + 1:])
            if unquoter is not None or skipping:
                if unquoter is not None:
                    unquoter.feed(piece)
            elif named:
                pair.append(piece)
            else:
                pair.append(piece)
                if "=" in piece:
                    named = True
                    joined = "".join(pair)
                    raw_name, value = joined.split("=", 1)
                    name = unquote(raw_name.replace("+", " "), errors=_QUOTE_ERRORS)
                    if name in divert:
                        pair = []
                        skipping = name in seen
                        seen.add(name)
                        if not skipping:
                            key = name
                            source = SourceValue(lambda: make_spool(key), None)
                            unquoter = _Unquote(source.feed)
                            unquoter.feed(value)
            if amp >= 0:
                named = False
                if unquoter is not None or skipping:
                    end_value()
                elif pair:
                    keep("".join(pair))
                    pair = []
        if not data:
            break
    if unquoter is not None or skipping:
        end_value()
    elif pair:
        keep("".join(pair))
    items = parse_qsl("&".join(kept), keep_blank_values=True, errors=_QUOTE_ERRORS)
    return MultiDict(items + values), spools
