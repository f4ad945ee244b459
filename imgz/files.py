"""The lean responder for stored files: WSGI middleware answering `GET /images/YYYY/MM/DD/<name>`.

It sits in front of Flask so that a file request costs one indexed lookup, one stat and the
headers. Anything it will not serve (unsafe path, unknown or expired upload, file missing from the
store) goes to the wrapped app unchanged, which renders its 404 page. The file is read through the
store (imgz.store) and handed to the server as a file (waitress sends it from the file's position
for exactly Content-Length bytes), never read whole into memory; the local store's files are real
files, with a fileno.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import IO, TYPE_CHECKING

from werkzeug.http import quote_etag
from werkzeug.sansio.http import is_resource_modified

from . import layout
from .fileheaders import (SECURITY_HEADERS, byte_span, cache_control, file_security_headers,
                          http_date_of, if_range_holds)
from .errors import StoreUnavailable
from .store import Stat, Store

try:
    from waitress.buffers import ReadOnlyFileBasedBuffer as _WAITRESS_FILE_WRAPPER
except ImportError:  # pragma: no cover - waitress is a dependency, but the responder does not need it
    _WAITRESS_FILE_WRAPPER = None

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

BLOCK_SIZE = 64 * 1024
# A remote store's stream is read and written by Python, chunk by chunk: larger chunks cost fewer
# turns through the HTTP client and the server's buffers (a thread's memory stays bounded).
REMOTE_BLOCK_SIZE = 512 * 1024
ACCEL_MODES = ('none', 'nginx', 'sendfile')
# nginx's internal location for a remote store's files: it proxies the signed path that follows.
REMOTE_ACCEL_PREFIX = '/_imgz_s3'

# Only a key of the layout is looked up: its allow-list refuses `..`, empty segments, `%` and the rest.

@dataclass(frozen=True)
class FileInfo:
    """What the index knows about a stored file."""

    mime: str
    expires_at: datetime | None  # aware UTC; None never expires


# What ``now`` is for a file that never expires: cache_control does not read it then.
_NEVER_READ = datetime.min.replace(tzinfo=timezone.utc)


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


class _FileBody:
    """Yields at most `length` bytes from the file's current position, then closes the file."""

    def __init__(self, file: IO[bytes], length: int, block: int = BLOCK_SIZE) -> None:
        self._file = file
        self._length = length
        self._block = block

    def __iter__(self) -> Iterator[bytes]:
        remaining = self._length
        try:
            while remaining > 0:
                chunk = self._file.read(min(self._block, remaining))
                if not chunk:
                    break
                remaining -= len(chunk)
                yield chunk
        finally:
            self.close()

    def close(self) -> None:
        self._file.close()


class FileResponder:
    """WSGI middleware serving stored files under `prefix`, delegating everything else to `app`.

    With `accel='nginx'` (`X-Accel-Redirect: <accel_prefix><relpath>`) or `accel='sendfile'`
    (`X-Sendfile: <absolute path>`, for a store that keeps its files on this machine) the answer
    carries no body and the front server sends the file: conditional requests and ranges are then
    its job, so they are not evaluated here. The lookup and expiry checks still run, so a front
    server must only serve that location internally. A remote store's file goes to nginx as
    `X-Accel-Redirect: /_imgz_s3<signed path and query>`, which nginx proxies to the bucket
    (ETag, Last-Modified, ranges and 304s then come from the bucket).

    A file of a remote store is streamed through here otherwise; a store that cannot be reached
    gets a 503 with Retry-After, never a 404 (the file exists) or a 500.
    """

    def __init__(
        self,
        app: WSGIApplication,
        *,
        store: Store,
        lookup: Callable[[str], FileInfo | None],
        prefix: str = layout.URL_PREFIX,
        accel: str = 'none',
        accel_prefix: str = '/_imgz_media/',
        now: Callable[[], datetime] = _utc_now,
    ) -> None:
        if accel not in ACCEL_MODES:
            raise ValueError(f'accel must be one of {", ".join(ACCEL_MODES)}, not {accel!r}')
        if not (prefix.startswith('/') and prefix.endswith('/')):
            raise ValueError(f'prefix must start and end with "/", not {prefix!r}')
        self.app = app
        self.store = store
        self.lookup = lookup
        self.prefix = prefix
        self.accel = accel
        self.accel_prefix = accel_prefix
        self.now = now
        self.remote_accel = accel == 'nginx' and store.remote
        # a store that keeps files on this machine opens one and reads its stat in one lookup
        self.open_with_stat = getattr(store, 'open_with_stat', None) if accel == 'none' else None

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path_info = environ.get('PATH_INFO', '')
        if not path_info.startswith(self.prefix):
            return self.app(environ, start_response)
        relpath = path_info[len(self.prefix):]
        if not layout.is_key(relpath):
            return self.app(environ, start_response)
        info = self.lookup(relpath)
        if info is None:
            return self.app(environ, start_response)
        # the clock is read only for a file that expires: most never do
        now = self.now() if info.expires_at is not None else _NEVER_READ
        if info.expires_at is not None and info.expires_at <= now:
            return self.app(environ, start_response)
        if self.remote_accel:
            return self._remote_accel(environ, start_response, relpath, info, now)
        try:
            return self._serve(environ, start_response, relpath, info, now)
        except StoreUnavailable as exc:
            return _plain(start_response, '503 Service Unavailable', exc.message,
                          list(exc.headers.items()))

    def _serve(self, environ: WSGIEnvironment, start_response: StartResponse, relpath: str,
               info: FileInfo, now: datetime) -> Iterable[bytes]:
        method = environ.get('REQUEST_METHOD', 'GET')
        file: IO[bytes] | None = None
        if method == 'GET' and self.open_with_stat is not None:
            found = self.open_with_stat(relpath)
            if found is None:
                return self.app(environ, start_response)
            file, st = found
        else:
            st = self.store.stat(relpath)
            if st is None:
                return self.app(environ, start_response)
        try:
            return self._answer(environ, start_response, relpath, info, now, method, st, file)
        except BaseException:
            if file is not None:
                file.close()
            raise

    def _answer(self, environ: WSGIEnvironment, start_response: StartResponse, relpath: str,
                info: FileInfo, now: datetime, method: str, st: Stat,
                file: IO[bytes] | None) -> Iterable[bytes]:
        """The answer for a file found (and, when ``file`` is given, opened; it is closed on
        every answer that does not send it)."""
        def without_file(answer: Iterable[bytes]) -> Iterable[bytes]:
            if file is not None:
                file.close()
            return answer

        if method not in ('GET', 'HEAD'):
            return _plain(start_response, '405 Method Not Allowed', 'Method Not Allowed',
                          [('Allow', 'GET, HEAD')])

        etag = st.version
        seconds = st.mtime_ns // 1_000_000_000
        headers = [
            ('Content-Type', info.mime),
            ('ETag', quote_etag(etag)),
            ('Last-Modified', http_date_of(seconds)),
            ('Cache-Control', cache_control(info.expires_at, now)),
            ('Accept-Ranges', 'bytes'),
            *file_security_headers(environ),
        ]
        if self.accel == 'nginx':
            return _accel(start_response, headers, 'X-Accel-Redirect', self.accel_prefix + relpath)
        if self.accel == 'sendfile' and st.path is not None:
            # Header values are latin-1 on the wire: send the path's raw bytes, whatever they are.
            return _accel(start_response, headers, 'X-Sendfile',
                          os.fsencode(st.path).decode('latin-1'))

        if_none_match = environ.get('HTTP_IF_NONE_MATCH')
        if_modified_since = environ.get('HTTP_IF_MODIFIED_SINCE')
        if_range = environ.get('HTTP_IF_RANGE')
        last_modified = (datetime.fromtimestamp(seconds, timezone.utc)
                         if if_none_match or if_modified_since or if_range else None)
        if (if_none_match or if_modified_since) and not is_resource_modified(
            http_if_none_match=if_none_match,
            http_if_modified_since=if_modified_since,
            etag=etag,
            last_modified=last_modified,
        ):
            # No Content-Length: waitress sends no body on a 304 and would count it as missing bytes.
            start_response('304 Not Modified', headers)
            return without_file([])

        size = st.size
        start, stop = 0, size
        status = '200 OK'
        # Range is defined for GET only; HEAD answers as for the whole file.
        if method == 'GET' and 'HTTP_RANGE' in environ and if_range_holds(if_range, etag,
                                                                           last_modified):
            span = byte_span(environ.get('HTTP_RANGE'), size)
            if span is False:
                return without_file(_plain(start_response, '416 Range Not Satisfiable',
                                           'Range Not Satisfiable',
                                           [('Content-Range', f'bytes */{size}')]))
            if span:
                start, stop = span
                status = '206 Partial Content'
                headers.append(('Content-Range', f'bytes {start}-{stop - 1}/{size}'))
        headers.append(('Content-Length', str(stop - start)))

        if method == 'HEAD':
            start_response(status, headers)
            return without_file([])
        if file is None:
            try:
                file = self.store.open(relpath, start, stop)
            except OSError:  # removed since the stat
                return self.app(environ, start_response)
        elif start:
            file.seek(start)
        try:
            start_response(status, headers)
        except BaseException:
            file.close()
            raise
        if st.path is None or not isinstance(file, io.BufferedReader):
            # a stream from elsewhere (a remote store's, its local copy gone since the stat):
            # read and bounded here
            return _FileBody(file, stop - start, REMOTE_BLOCK_SIZE)
        return _body(environ, file, start, stop - start, size)

    def _remote_accel(self, environ: WSGIEnvironment, start_response: StartResponse,
                      relpath: str, info: FileInfo, now: datetime) -> Iterable[bytes]:
        """Hand nginx a freshly signed path of the bucket's object; the row decided it exists."""
        if environ.get('REQUEST_METHOD', 'GET') not in ('GET', 'HEAD'):
            return _plain(start_response, '405 Method Not Allowed', 'Method Not Allowed',
                          [('Allow', 'GET, HEAD')])
        headers = [
            ('Content-Type', info.mime),
            ('Cache-Control', cache_control(info.expires_at, now)),
            *file_security_headers(environ),
        ]
        return _accel(start_response, headers, 'X-Accel-Redirect',
                      REMOTE_ACCEL_PREFIX + self.store.accel_target(relpath))


def _accel(start_response: StartResponse, headers: list[tuple[str, str]], name: str,
           value: str) -> Iterable[bytes]:
    """The answer that hands the file to the front server: its header and no body."""
    headers.append((name, value))
    headers.append(('Content-Length', '0'))
    start_response('200 OK', headers)
    return []


def _body(environ: WSGIEnvironment, file: IO[bytes], start: int, length: int,
          size: int) -> Iterable[bytes]:
    """The response body for `length` bytes of a local `file`, already positioned at `start`."""
    wrapper = environ.get('wsgi.file_wrapper')
    # waitress's wrapper sends exactly Content-Length bytes from the current position; a generic
    # one may send to the end of the file, so it only gets whole files.
    if wrapper is not None and (
        wrapper is _WAITRESS_FILE_WRAPPER or (start == 0 and length == size)
    ):
        return wrapper(file, BLOCK_SIZE)
    return _FileBody(file, length)


def _plain(start_response: StartResponse, status: str, text: str,
           extra: list[tuple[str, str]]) -> list[bytes]:
    body = f'{text}\n'.encode()
    start_response(status, [
        ('Content-Type', 'text/plain; charset=utf-8'),
        ('Content-Length', str(len(body))),
        *extra,
        *SECURITY_HEADERS,
    ])
    return [body]
