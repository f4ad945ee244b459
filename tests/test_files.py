"""The file responder: unit tests through werkzeug's test client, then a real waitress server."""

from __future__ import annotations

import http.client
import io
import logging
import os
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from wsgiref.util import FileWrapper

import pytest
import waitress
from waitress.buffers import ReadOnlyFileBasedBuffer
from werkzeug.http import http_date, parse_date
from werkzeug.test import Client, EnvironBuilder

from imgz.fileheaders import DOCUMENT_CSP, FILE_CSP, byte_span, cache_control
from imgz.files import FileInfo, FileResponder
from imgz.store import Store
from imgz.store.local import LocalStore

NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=timezone.utc)
REL = '2025/01/01/cat-Ab12Cd34.png'
URL = '/images/' + REL
DATA = bytes(range(256)) * 4  # 1024 bytes, every offset distinguishable modulo 256
SECURITY = {
    'X-Content-Type-Options': 'nosniff',
    'Content-Security-Policy': "default-src 'none'; sandbox",
}


def inner_app(environ, start_response):
    start_response('404 NOT FOUND', [('Content-Type', 'text/plain')])
    return [b'inner']


class Media:
    """A media root, the rows a lookup answers from, and the lookups it saw."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.store = LocalStore(root)
        self.rows: dict[str, FileInfo] = {}
        self.looked_up: list[str] = []

    def add(self, rel: str, data: bytes | None = DATA, *, mime: str = 'image/png',
            expires_at: datetime | None = None) -> Path:
        path = self.root / rel
        if data is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        self.rows[rel] = FileInfo(mime, expires_at)
        return path

    def lookup(self, rel: str) -> FileInfo | None:
        self.looked_up.append(rel)
        return self.rows.get(rel)


@pytest.fixture
def media(tmp_path):
    root = tmp_path / 'images'
    root.mkdir()
    m = Media(root)
    m.add(REL)
    return m


def make_client(media: Media, **kw) -> Client:
    kw.setdefault('now', lambda: NOW)
    return Client(FileResponder(inner_app, store=media.store, lookup=media.lookup, **kw))


@pytest.fixture
def client(media):
    return make_client(media)


def assert_inner(resp):
    assert resp.status_code == 404
    assert resp.data == b'inner'


def etag_of(client) -> str:
    return client.head(URL).headers['ETag']


# --- plain GET and HEAD ---

def test_get_sends_whole_file(client):
    resp = client.get(URL)
    assert resp.status_code == 200
    assert resp.data == DATA
    assert resp.headers['Content-Type'] == 'image/png'
    assert resp.headers['Content-Length'] == str(len(DATA))
    assert resp.headers['Accept-Ranges'] == 'bytes'


def test_head_sends_headers_without_body(client):
    resp = client.head(URL)
    assert resp.status_code == 200
    assert resp.data == b''
    assert resp.headers['Content-Length'] == str(len(DATA))
    assert resp.headers['Content-Type'] == 'image/png'


def test_head_ignores_range(client):
    resp = client.head(URL, headers={'Range': 'bytes=0-9'})
    assert resp.status_code == 200
    assert resp.headers['Content-Length'] == str(len(DATA))
    assert 'Content-Range' not in resp.headers


def test_content_type_is_the_stored_kind(media, client):
    media.add('2025/01/01/clip-x.mp4', mime='video/mp4')
    assert client.get('/images/2025/01/01/clip-x.mp4').headers['Content-Type'] == 'video/mp4'


def test_etag_is_strong_and_last_modified_is_the_mtime(media, client):
    path = media.root / REL
    os.utime(path, ns=(1_700_000_000_123_456_789, 1_700_000_000_123_456_789))
    resp = client.get(URL)
    assert resp.headers['ETag'].startswith('"')
    assert resp.headers['Last-Modified'] == http_date(1_700_000_000)


def test_etag_changes_with_the_file(media, client):
    before = etag_of(client)
    (media.root / REL).write_bytes(DATA + b'more')
    assert etag_of(client) != before


def test_empty_file_is_served(media, client):
    media.add('2025/01/01/empty.png', b'')
    resp = client.get('/images/2025/01/01/empty.png')
    assert resp.status_code == 200
    assert resp.data == b''
    assert resp.headers['Content-Length'] == '0'


# --- what goes to the inner app ---

@pytest.mark.parametrize('path', [
    '/', '/api/1/upload', '/images', '/imagesx/2025/01/01/cat-Ab12Cd34.png', '/image/abc',
    '/static/images/2025/01/01/cat-Ab12Cd34.png',
])
def test_paths_outside_the_prefix_go_to_the_app(media, client, path):
    assert_inner(client.get(path))
    assert media.looked_up == []


@pytest.mark.parametrize('path', [
    '/images/',
    '/images/../etc',
    '/images/../../etc/passwd',
    '/images/2025/01/01/..%2f..%2f..%2fetc',
    '/images/2025/01/01/../../../../etc',
    '/images/%2e%2e/etc',
    '/images/2025/01/01/..',
    '/images/2025/01/01/.',
    '/images/2025/01/01/.hidden',
    '/images/2025/01/01/cat%00.png',
    '/images/2025/01/01/a%5cb.png',
    '/images/2025/01/01/a\\b.png',
    '/images/2025/01/01//cat.png',
    '/images//2025/01/01/cat.png',
    '/images/2025//01/01/cat.png',
    '/images/2025/01/01/cat.png/',
    '/images//etc/passwd',
    '/images/2025/01/01/./cat-Ab12Cd34.png',
    '/images/2025/01/02/../01/cat-Ab12Cd34.png',
    '/images/2025/01/01/caf%C3%A9.png',
    '/images/2025/01/01/a%20b.png',
    '/images/2025/01/01/a%25b.png',
    '/images/2025/1/01/cat.png',
    '/images/cat-Ab12Cd34.png',
    '/images/2025/01/01/sub/cat.png',
])
def test_unsafe_paths_go_to_the_app_without_a_lookup(tmp_path, media, path):
    # A lookup that vouches for anything proves that the path check alone refuses these.
    (tmp_path / 'etc').write_bytes(b'secret')
    client = Client(FileResponder(inner_app, store=media.store,
                                  lookup=lambda rel: FileInfo('text/plain', None)))
    resp = client.get(path)
    assert_inner(resp)


@pytest.mark.parametrize('method', ['GET', 'HEAD', 'POST'])
def test_unknown_file_goes_to_the_app(client, method):
    resp = client.open('/images/2025/01/01/nope.png', method=method)
    assert resp.status_code == 404
    if method != 'HEAD':
        assert resp.data == b'inner'


def test_row_without_file_goes_to_the_app(media, client):
    media.add('2025/01/01/gone.png', None)
    assert_inner(client.get('/images/2025/01/01/gone.png'))


def test_file_without_row_goes_to_the_app(media, client):
    path = media.root / '2025/01/01/orphan.png'
    path.write_bytes(DATA)
    assert_inner(client.get('/images/2025/01/01/orphan.png'))


def test_directory_is_not_served(media, client):
    media.add('2025/01/01/dir.png', None)
    (media.root / '2025/01/01/dir.png').mkdir()
    assert_inner(client.get('/images/2025/01/01/dir.png'))


@pytest.mark.parametrize('left', [timedelta(0), timedelta(seconds=-1), timedelta(days=-30)])
def test_expired_file_goes_to_the_app(media, client, left):
    media.add(REL, expires_at=NOW + left)
    assert_inner(client.get(URL))


def test_file_about_to_expire_is_served(media, client):
    media.add(REL, expires_at=NOW + timedelta(milliseconds=1))
    assert client.get(URL).status_code == 200


def test_lookup_gets_the_relative_path(media, client):
    client.get(URL)
    assert media.looked_up == [REL]


# --- methods ---

@pytest.mark.parametrize('method', ['POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'])
def test_other_methods_get_405(client, method):
    resp = client.open(URL, method=method)
    assert resp.status_code == 405
    assert resp.headers['Allow'] == 'GET, HEAD'
    assert resp.content_type.startswith('text/plain')
    assert 0 < len(resp.data) < 100


# --- cache lifetime ---

@pytest.mark.parametrize('left, expected', [
    (None, 'public, max-age=31536000, immutable'),
    (timedelta(seconds=90.9), 'public, max-age=90'),
    (timedelta(seconds=90), 'public, max-age=90'),
    (timedelta(milliseconds=300), 'public, max-age=0'),
    (timedelta(days=366), 'public, max-age=31622400'),
])
def test_cache_control(left, expected):
    assert cache_control(None if left is None else NOW + left, NOW) == expected


def test_expiring_file_is_cached_no_longer_than_it_lives(media):
    expires = NOW + timedelta(minutes=5, seconds=0.5)
    media.add(REL, expires_at=expires)
    clock = [NOW]
    client = make_client(media, now=lambda: clock[0])
    assert client.get(URL).headers['Cache-Control'] == 'public, max-age=300'
    clock[0] = NOW + timedelta(minutes=4)
    cc = client.get(URL).headers['Cache-Control']
    assert cc == 'public, max-age=60'
    assert 'immutable' not in cc


def test_never_expiring_file_is_immutable(client):
    assert client.get(URL).headers['Cache-Control'] == 'public, max-age=31536000, immutable'


# --- security headers on every answer that carries the file's headers ---

@pytest.mark.parametrize('headers, status', [
    ({}, 200),
    ({'Range': 'bytes=0-9'}, 206),
    ({'If-None-Match': '*'}, 304),
])
def test_security_headers(client, headers, status):
    resp = client.get(URL, headers=headers)
    assert resp.status_code == status
    for name, value in SECURITY.items():
        assert resp.headers[name] == value


@pytest.mark.parametrize('dest, csp', [
    ('document', DOCUMENT_CSP),   # the browser opens the file itself: its viewer may show it
    ('image', FILE_CSP), ('video', FILE_CSP), ('iframe', FILE_CSP), (None, FILE_CSP),
])
@pytest.mark.parametrize('headers', [{}, {'Range': 'bytes=0-9'}, {'If-None-Match': '*'}])
def test_the_policy_follows_how_the_file_is_opened(client, dest, csp, headers):
    if dest is not None:
        headers = {**headers, 'Sec-Fetch-Dest': dest}
    resp = client.get(URL, headers=headers)
    assert resp.headers['Content-Security-Policy'] == csp
    assert resp.headers['Vary'] == 'Sec-Fetch-Dest'
    assert resp.headers['X-Content-Type-Options'] == 'nosniff'


def test_the_page_policy_still_forbids_scripts_forms_and_other_requests():
    directives = dict((d.strip().split(' ', 1) + [''])[:2] for d in DOCUMENT_CSP.split(';'))
    assert directives['default-src'] == "'none'"
    assert directives['sandbox'] == 'allow-same-origin'  # no allow-scripts, allow-forms, allow-popups
    assert {'script-src', 'connect-src', 'form-action', 'frame-src'}.isdisjoint(directives)
    assert directives['img-src'] == directives['media-src'] == "'self'"


@pytest.mark.parametrize('method', ['HEAD', 'POST'])
def test_security_headers_on_head_and_405(client, method):
    resp = client.open(URL, method=method)
    for name, value in SECURITY.items():
        assert resp.headers[name] == value


# --- conditional GET ---

@pytest.mark.parametrize('make_header', [
    lambda etag: etag,
    lambda etag: f'"other", {etag}',
    lambda etag: f'W/{etag}',
    lambda etag: '*',
], ids=['exact', 'in-list', 'weak', 'star'])
def test_if_none_match_gives_304(client, make_header):
    etag = etag_of(client)
    resp = client.get(URL, headers={'If-None-Match': make_header(etag)})
    assert resp.status_code == 304
    assert resp.data == b''
    assert resp.headers['ETag'] == etag
    assert resp.headers['Cache-Control'] == 'public, max-age=31536000, immutable'
    assert 'Content-Length' not in resp.headers


def test_if_none_match_other_etag_gives_200(client):
    resp = client.get(URL, headers={'If-None-Match': '"nope"'})
    assert resp.status_code == 200
    assert resp.data == DATA


@pytest.mark.parametrize('shift, status', [
    (timedelta(0), 304),
    (timedelta(hours=1), 304),
    (timedelta(seconds=-1), 200),
])
def test_if_modified_since(client, shift, status):
    last_modified = parse_date(client.head(URL).headers['Last-Modified'])
    resp = client.get(URL, headers={'If-Modified-Since': http_date(last_modified + shift)})
    assert resp.status_code == status


def test_if_none_match_wins_over_if_modified_since(client):
    last_modified = client.head(URL).headers['Last-Modified']
    resp = client.get(URL, headers={'If-None-Match': '"nope"', 'If-Modified-Since': last_modified})
    assert resp.status_code == 200


def test_head_gets_304_too(client):
    resp = client.head(URL, headers={'If-None-Match': etag_of(client)})
    assert resp.status_code == 304


def test_not_modified_wins_over_range(client):
    resp = client.get(URL, headers={'If-None-Match': etag_of(client), 'Range': 'bytes=0-9'})
    assert resp.status_code == 304


def test_if_match_alone_does_not_give_304(client):
    resp = client.get(URL, headers={'If-Match': etag_of(client)})
    assert resp.status_code == 200


# --- ranges ---

@pytest.mark.parametrize('header, start, stop', [
    ('bytes=0-9', 0, 10),
    ('bytes=-5', 1019, 1024),
    ('bytes=10-', 10, 1024),
    ('bytes=5-5', 5, 6),
    ('bytes=1023-', 1023, 1024),
    ('bytes=1000-99999', 1000, 1024),
    ('bytes=-99999', 0, 1024),
    ('bytes=0-', 0, 1024),
    ('Bytes = 3-4', 3, 5),
])
def test_single_range_gives_206(client, header, start, stop):
    resp = client.get(URL, headers={'Range': header})
    assert resp.status_code == 206
    assert resp.data == DATA[start:stop]
    assert resp.headers['Content-Range'] == f'bytes {start}-{stop - 1}/{len(DATA)}'
    assert resp.headers['Content-Length'] == str(stop - start)


@pytest.mark.parametrize('header', ['bytes=99999-', 'bytes=1024-', 'bytes=1024-2000'])
def test_unsatisfiable_range_gives_416(client, header):
    resp = client.get(URL, headers={'Range': header})
    assert resp.status_code == 416
    assert resp.headers['Content-Range'] == f'bytes */{len(DATA)}'


def test_any_range_of_an_empty_file_is_unsatisfiable(media, client):
    media.add('2025/01/01/empty.png', b'')
    resp = client.get('/images/2025/01/01/empty.png', headers={'Range': 'bytes=-5'})
    assert resp.status_code == 416
    assert resp.headers['Content-Range'] == 'bytes */0'


@pytest.mark.parametrize('header', [
    'bytes=0-1,5-6',  # several ranges: RFC 9110 lets us send the whole file
    'bytes=abc',
    'bytes=5-1',
    'bytes=-0',
    'bytes=',
    'bytes',
    'items=0-9',
    '0-9',
    'bytes=0-1-2',
])
def test_ignored_range_gives_whole_file(client, header):
    resp = client.get(URL, headers={'Range': header})
    assert resp.status_code == 200
    assert resp.data == DATA
    assert 'Content-Range' not in resp.headers


@pytest.mark.parametrize('make_if_range, status', [
    (lambda etag, date: etag, 206),
    (lambda etag, date: date, 206),
    (lambda etag, date: '"other"', 200),
    (lambda etag, date: f'W/{etag}', 200),
    (lambda etag, date: http_date(parse_date(date) - timedelta(seconds=1)), 200),
    (lambda etag, date: http_date(parse_date(date) + timedelta(seconds=1)), 200),
], ids=['etag', 'date', 'other-etag', 'weak-etag', 'older-date', 'newer-date'])
def test_if_range(client, make_if_range, status):
    head = client.head(URL).headers
    if_range = make_if_range(head['ETag'], head['Last-Modified'])
    resp = client.get(URL, headers={'Range': 'bytes=0-9', 'If-Range': if_range})
    assert resp.status_code == status
    assert resp.data == (DATA[:10] if status == 206 else DATA)


def test_if_range_mismatch_skips_416(client):
    resp = client.get(URL, headers={'Range': 'bytes=99999-', 'If-Range': '"other"'})
    assert resp.status_code == 200


@pytest.mark.parametrize('header, expected', [
    (None, None),
    ('bytes=0-9', (0, 10)),
    ('bytes=-2000', (0, 1024)),
    ('bytes=2000-', False),
    ('bytes=0-1,3-4', None),
])
def test_byte_span(header, expected):
    assert byte_span(header, 1024) == expected


# --- bodies and open files ---

def open_fds() -> int:
    return len(os.listdir('/proc/self/fd'))


@pytest.mark.parametrize('wrapper', [None, FileWrapper], ids=['no-wrapper', 'generic-wrapper'])
@pytest.mark.parametrize('header, expected', [
    ({}, DATA),
    ({'Range': 'bytes=100-199'}, DATA[100:200]),
    ({'Range': 'bytes=-3'}, DATA[-3:]),
], ids=['whole', 'middle', 'suffix'])
def test_body_is_exactly_the_span(media, header, expected, wrapper):
    client = make_client(media)
    extra = {} if wrapper is None else {'wsgi.file_wrapper': wrapper}
    with client.get(URL, headers=header, environ_overrides=extra) as resp:
        assert resp.data == expected


def test_large_range_is_streamed_in_blocks(media, client):
    big = os.urandom(3 * 1024 * 1024 + 7)
    media.add('2025/01/01/big.png', big)
    resp = client.get('/images/2025/01/01/big.png', headers={'Range': 'bytes=100000-'})
    assert resp.data == big[100000:]


@pytest.mark.parametrize('wrapper', [None, FileWrapper], ids=['no-wrapper', 'generic-wrapper'])
def test_files_are_closed_after_responses(media, wrapper):
    client = make_client(media)
    extra = {} if wrapper is None else {'wsgi.file_wrapper': wrapper}
    before = open_fds()
    for headers in ({}, {'Range': 'bytes=0-9'}, {'Range': 'bytes=99999-'}, {'If-None-Match': '*'}):
        client.get(URL, headers=headers, environ_overrides=extra).close()
        client.head(URL, headers=headers, environ_overrides=extra).close()
    assert open_fds() == before


def test_file_is_closed_when_body_is_never_iterated(media):
    responder = FileResponder(inner_app, store=media.store, lookup=media.lookup, now=lambda: NOW)
    before = open_fds()
    for headers in ({}, {'Range': 'bytes=5-9'}):
        environ = EnvironBuilder(path=URL, headers=headers).get_environ()
        body = responder(environ, lambda status, headers, exc_info=None: None)
        body.close()
    assert open_fds() == before


def test_file_is_closed_when_body_is_abandoned_midway(media):
    media.add('2025/01/01/big.png', os.urandom(1024 * 1024))
    responder = FileResponder(inner_app, store=media.store, lookup=media.lookup, now=lambda: NOW)
    before = open_fds()
    environ = EnvironBuilder(path='/images/2025/01/01/big.png').get_environ()
    body = responder(environ, lambda status, headers, exc_info=None: None)
    next(iter(body))
    body.close()
    assert open_fds() == before


# --- front-server acceleration ---

def test_nginx_accel(media):
    client = make_client(media, accel='nginx')
    resp = client.get(URL, headers={'Range': 'bytes=0-9', 'If-None-Match': '*'})
    assert resp.status_code == 200
    assert resp.data == b''
    assert resp.headers['X-Accel-Redirect'] == '/_imgz_media/' + REL
    assert resp.headers['Content-Type'] == 'image/png'
    assert resp.headers['Cache-Control'] == 'public, max-age=31536000, immutable'
    assert resp.headers['Content-Length'] == '0'
    for name, value in SECURITY.items():
        assert resp.headers[name] == value


def test_nginx_accel_prefix(media):
    client = make_client(media, accel='nginx', accel_prefix='/internal/')
    assert client.get(URL).headers['X-Accel-Redirect'] == '/internal/' + REL


def test_sendfile_accel(media):
    client = make_client(media, accel='sendfile')
    resp = client.get(URL)
    assert resp.status_code == 200
    assert resp.data == b''
    assert resp.headers['X-Sendfile'] == str((media.root / REL).absolute())
    assert resp.headers['ETag']
    for name, value in SECURITY.items():
        assert resp.headers[name] == value


@pytest.mark.parametrize('accel', ['nginx', 'sendfile'])
def test_accel_still_refuses_expired_and_missing(media, accel):
    media.add(REL, expires_at=NOW)
    media.add('2025/01/01/gone.png', None)
    client = make_client(media, accel=accel)
    assert_inner(client.get(URL))
    assert_inner(client.get('/images/2025/01/01/gone.png'))


@pytest.mark.parametrize('accel', ['nginx', 'sendfile'])
def test_accel_still_answers_405(media, accel):
    assert make_client(media, accel=accel).post(URL).status_code == 405


@pytest.mark.parametrize('kw', [{'accel': 'apache'}, {'prefix': '/images'}, {'prefix': 'images/'}])
def test_bad_settings_are_refused(tmp_path, kw):
    with pytest.raises(ValueError):
        FileResponder(inner_app, store=LocalStore(tmp_path), lookup=lambda rel: None, **kw)


# --- a store whose files are not on this machine ---

class _Stream(io.RawIOBase):
    """A stream with no fileno and no seek, as a remote store's body would be."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        count = min(len(buffer), len(self._data))
        buffer[:count] = self._data[:count]
        self._data = self._data[count:]
        return count


class Remote(Store):
    """The local store's files, given out as a remote store gives them: no path, streams that end
    at the stop they were asked for."""

    def __init__(self, local: LocalStore) -> None:
        self.local = local
        self.streams: list[_Stream] = []

    def stat(self, key):
        st = self.local.stat(key)
        return None if st is None else st._replace(path=None)

    def open(self, key, start=0, stop=None):
        with self.local.open(key, start) as file:
            stream = _Stream(file.read(-1 if stop is None else stop - start))
        self.streams.append(stream)
        return stream

    def prepare(self): self.local.prepare()
    def put(self, key, src): self.local.put(key, src)
    def delete(self, keys): self.local.delete(keys)
    def list(self, prefix=''): return self.local.list(prefix)
    def free_bytes(self): return None
    def local_file(self, key, scratch): raise NotImplementedError


@pytest.mark.parametrize('wrapper', [None, FileWrapper, ReadOnlyFileBasedBuffer],
                         ids=['no-wrapper', 'generic-wrapper', 'waitress-wrapper'])
@pytest.mark.parametrize('header, status, expected', [
    ({}, 200, DATA),
    ({'Range': 'bytes=100-199'}, 206, DATA[100:200]),
    ({'Range': 'bytes=-3'}, 206, DATA[-3:]),
    ({'If-None-Match': '*'}, 304, b''),
    ({'Range': 'bytes=5000-'}, 416, None),
], ids=['whole', 'middle', 'suffix', 'not-modified', 'unsatisfiable'])
def test_a_store_without_local_files_is_served_through_its_streams(media, wrapper, header, status,
                                                                   expected):
    remote = Remote(media.store)
    local = make_client(media).get(URL, headers=header)
    client = Client(FileResponder(inner_app, store=remote, lookup=media.lookup, now=lambda: NOW))
    extra = {} if wrapper is None else {'wsgi.file_wrapper': wrapper}
    with client.get(URL, headers=header, environ_overrides=extra) as resp:
        assert resp.status_code == status
        assert resp.data == (local.data if expected is None else expected)
        assert resp.headers == local.headers
    assert all(stream.closed for stream in remote.streams)


def test_sendfile_hands_over_only_a_file_on_this_machine(media):
    client = Client(FileResponder(inner_app, store=Remote(media.store), lookup=media.lookup,
                                  accel='sendfile', now=lambda: NOW))
    resp = client.get(URL)
    assert resp.status_code == 200
    assert 'X-Sendfile' not in resp.headers
    assert resp.data == DATA


# --- through a real waitress server ---

BIG_REL = '2025/02/03/big-Zz99Yy88.webm'


@dataclass
class LiveServer:
    port: int
    bodies: list[type]  # the type of each body the responder returned
    big: bytes


@pytest.fixture(scope='module')
def live(tmp_path_factory):
    media = Media(tmp_path_factory.mktemp('live') / 'images')
    media.add(REL)
    big = os.urandom(20 * 1024 * 1024 + 3)
    media.add(BIG_REL, big, mime='video/webm')
    media.add('2025/01/01/gone.png', None)
    media.add('2025/01/01/old.png', expires_at=datetime.now(timezone.utc) - timedelta(seconds=1))
    (media.root.parent / 'etc').write_bytes(b'secret')
    responder = FileResponder(inner_app, store=media.store,
                              lookup=lambda rel: FileInfo('text/plain', None) if rel == '../etc'
                              else media.lookup(rel))
    bodies: list[type] = []

    def app(environ, start_response):
        body = responder(environ, start_response)
        bodies.append(type(body))
        return body  # unchanged: waitress recognises its own file wrapper by type

    server = waitress.create_server(app, host='127.0.0.1', port=0, threads=2)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    yield LiveServer(server.effective_port, bodies, big)
    server.close()
    server.task_dispatcher.shutdown()
    thread.join(5)


class Live:
    """One keep-alive connection to the live server."""

    def __init__(self, server: LiveServer) -> None:
        self.server = server
        self.conn = http.client.HTTPConnection('127.0.0.1', server.port, timeout=10)

    def request(self, method: str, path: str, headers: dict[str, str] | None = None):
        self.conn.request(method, path, headers=headers or {})
        resp = self.conn.getresponse()
        return resp, resp.read()


@pytest.fixture
def http_(live):
    conn = Live(live)
    yield conn
    conn.conn.close()


@pytest.fixture
def waitress_warnings(caplog):
    caplog.set_level(logging.WARNING, logger='waitress')
    yield lambda: [r for r in caplog.records if r.name.startswith('waitress')]


def test_live_get(http_):
    resp, body = http_.request('GET', URL)
    assert resp.status == 200
    assert body == DATA
    assert resp.getheader('Content-Type') == 'image/png'
    assert resp.getheader('X-Content-Type-Options') == 'nosniff'


def test_live_head(http_, waitress_warnings):
    resp, body = http_.request('HEAD', URL)
    assert resp.status == 200
    assert body == b''
    assert resp.getheader('Content-Length') == str(len(DATA))
    assert waitress_warnings() == []


def test_live_304_if_none_match(http_, waitress_warnings):
    etag = http_.request('HEAD', URL)[0].getheader('ETag')
    resp, body = http_.request('GET', URL, {'If-None-Match': etag})
    assert resp.status == 304
    assert body == b''
    assert resp.getheader('ETag') == etag
    assert resp.getheader('Content-Security-Policy') == "default-src 'none'; sandbox"
    assert waitress_warnings() == []


def test_live_304_if_modified_since(http_):
    last_modified = http_.request('HEAD', URL)[0].getheader('Last-Modified')
    resp, body = http_.request('GET', URL, {'If-Modified-Since': last_modified})
    assert resp.status == 304
    assert body == b''


@pytest.mark.parametrize('header, start, stop', [
    ('bytes=0-9', 0, 10),
    ('bytes=-5', 1019, 1024),
    ('bytes=10-', 10, 1024),
])
def test_live_206(http_, header, start, stop, waitress_warnings):
    resp, body = http_.request('GET', URL, {'Range': header})
    assert resp.status == 206
    assert body == DATA[start:stop]
    assert resp.getheader('Content-Range') == f'bytes {start}-{stop - 1}/{len(DATA)}'
    assert waitress_warnings() == []


def test_live_416(http_):
    resp, _ = http_.request('GET', URL, {'Range': 'bytes=99999-'})
    assert resp.status == 416
    assert resp.getheader('Content-Range') == f'bytes */{len(DATA)}'


@pytest.mark.parametrize('headers', [
    {'Range': 'bytes=0-9', 'If-Range': '"other"'},
    {'Range': 'bytes=0-1,5-6'},
    {'Range': 'bytes=nonsense'},
], ids=['if-range-mismatch', 'several-ranges', 'malformed'])
def test_live_whole_file_instead_of_range(http_, headers):
    resp, body = http_.request('GET', URL, headers)
    assert resp.status == 200
    assert body == DATA


def test_live_405(http_):
    resp, _ = http_.request('POST', URL)
    assert resp.status == 405
    assert resp.getheader('Allow') == 'GET, HEAD'


@pytest.mark.parametrize('path', [
    '/images/../etc',
    '/images/2025/01/01/..%2f..%2f..%2fetc',
    '/images/%2e%2e/etc',
    '/images/2025/01/01/cat%00.png',
    '/images/2025/01/01/cat%5c..%5c..%5cetc',
    '/images/2025/01/01/nope.png',
    '/images/2025/01/01/gone.png',
    '/images/2025/01/01/old.png',
])
def test_live_refusals_reach_the_app(http_, path):
    resp, body = http_.request('GET', path)
    assert resp.status == 404
    assert body == b'inner'


def test_live_range_in_a_large_file_is_exact(http_, waitress_warnings):
    resp, body = http_.request('GET', '/images/' + BIG_REL, {'Range': 'bytes=1000000-2999999'})
    assert resp.status == 206
    assert body == http_.server.big[1000000:3000000]
    assert http_.server.bodies[-1] is ReadOnlyFileBasedBuffer
    # The connection stays usable, so the body ended exactly at Content-Length.
    resp, body = http_.request('GET', URL, {'Range': 'bytes=0-9'})
    assert body == DATA[:10]
    assert waitress_warnings() == []


def test_live_large_file_whole(http_):
    resp, body = http_.request('GET', '/images/' + BIG_REL)
    assert resp.status == 200
    assert resp.getheader('Content-Length') == str(len(http_.server.big))
    assert body == http_.server.big
    assert http_.server.bodies[-1] is ReadOnlyFileBasedBuffer
