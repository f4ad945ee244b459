"""The headers of a stored file's answer: its security policy, Cache-Control, Last-Modified,
and reading Range and If-Range (files.py answers with them)."""
from __future__ import annotations

import functools
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from werkzeug.datastructures import Range
from werkzeug.http import http_date, parse_if_range_header, parse_range_header

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

ONE_YEAR = 31_536_000

FILE_CSP = "default-src 'none'; sandbox"
# A browser that opens a file itself wraps it in a page of its own (an <img> or a <video>). Under
# FILE_CSP that page may neither load the very file it shows (a video stays black) nor style it.
# This one lets it, and still runs no script, submits nothing and makes no other request.
DOCUMENT_CSP = ("default-src 'none'; img-src 'self'; media-src 'self'; style-src 'unsafe-inline'; "
                "sandbox allow-same-origin")

_NOSNIFF = ('X-Content-Type-Options', 'nosniff')
_VARY = ('Vary', 'Sec-Fetch-Dest')
SECURITY_HEADERS = (_NOSNIFF, ('Content-Security-Policy', FILE_CSP))
_FILE_HEADERS = (*SECURITY_HEADERS, _VARY)
_DOCUMENT_HEADERS = (_NOSNIFF, ('Content-Security-Policy', DOCUMENT_CSP), _VARY)


def file_security_headers(environ: WSGIEnvironment) -> tuple[tuple[str, str], ...]:
    """nosniff and the file CSP; the page policy when the browser navigates to the file."""
    return _DOCUMENT_HEADERS if environ.get('HTTP_SEC_FETCH_DEST') == 'document' else _FILE_HEADERS


@functools.lru_cache(maxsize=4096)
def http_date_of(seconds: int) -> str:
    """A file's Last-Modified, from its whole seconds since the epoch (files share few)."""
    return http_date(datetime.fromtimestamp(seconds, timezone.utc))


def cache_control(expires_at: datetime | None, now: datetime) -> str:
    """The Cache-Control value: a year and immutable, or at most the whole seconds left."""
    if expires_at is None:
        return f'public, max-age={ONE_YEAR}, immutable'
    left = (expires_at - now) // timedelta(seconds=1)
    return f'public, max-age={max(left, 0)}'


def byte_span(range_header: str | None, size: int) -> tuple[int, int] | bool | None:
    """Resolve a Range header against `size`: `(start, stop)`, False if unsatisfiable, None to ignore.

    A malformed header, another unit, or several ranges are ignored (the whole file is sent, which
    RFC 9110 allows).
    """
    rng = parse_range_header(range_header)
    if rng is None or rng.units != 'bytes' or len(rng.ranges) != 1:
        return None
    start, stop = rng.ranges[0]
    if stop is None and start < 0:
        # A suffix longer than the file means the whole file (RFC 9110 14.1.2); werkzeug refuses it.
        rng = Range('bytes', [(max(start, -size), None)])
    span = rng.range_for_length(size)
    return span if span is not None else False


def if_range_holds(value: str | None, etag: str, last_modified: datetime | None) -> bool:
    """Whether an If-Range header (absent counts as holding) still matches the file."""
    if not value:
        return True
    if value.lstrip().startswith('W/'):
        return False  # weak tags never match If-Range; werkzeug's parser drops the weakness
    if_range = parse_if_range_header(value)
    if if_range.date is not None:
        return if_range.date == last_modified
    return if_range.etag == etag
