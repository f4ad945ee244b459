"""The upload endpoint, ``/api/1/upload``: read parameters, call the service, answer like Chevereto."""
from __future__ import annotations

import io
import json
import threading
import time
from datetime import datetime
from typing import Any

from flask import Blueprint, Response, current_app, g, request
from werkzeug.exceptions import RequestEntityTooLarge

from . import chevereto, intake, params, sharex, sources, spool
from .auth import actor_for_key, header_key, presented_key
from .expiry import parse_expiration
from .errors import Busy, EmptySource, ImgzError, InvalidParameter, InvalidURL, NoStorage, RateLimited, TooBig
from .service import Actor, Options

bp = Blueprint("api", __name__)

# Room for the other form fields around a file part or a base64 string.
FORM_ROOM = 1_000_000
MAX_FORM_PARTS = 10_000
# File parts that get a temp file (an upload needs one: `source`, or imgBB's `image`). Later
# ones are thrown away unopened and the request is refused: no request holds a file per part.
MAX_FILE_PARTS = 2
# The fields that may hold the source as a string: their first value is read by intake.py.
SOURCE_FIELDS = ("source", "image")
# Until a key is known, bodies above this are read one request at a time, and not at all once
# the request is refused.
KEYLESS_BODY = 1_000_000
_KEYLESS_PARSES = threading.BoundedSemaphore(1)
SPOOL_RELEASE = 32_000_000  # bodies from this size on give their spooled copy back early


def body_limit(max_upload: int) -> int:
    """The largest request body to read: base64 makes the source a third larger than the file."""
    return max_upload * 4 // 3 + FORM_ROOM


def json_response(body: dict[str, Any], status: int = 200) -> Response:
    return current_app.response_class(json.dumps(body, ensure_ascii=False), status=status,
                                      mimetype="application/json")


# For these "0" is an answer (no), not an absent value.
_FLAGS = {"nsfw", "use_file_date"}


def param(name: str) -> str | None:
    """A parameter from the body, else the query string; the first of repeated values counts.

    A body value that counts as absent (empty, or "0" but for the flags) leaves the query's."""
    value = request.form.get(name)
    if value is None or value == "" or (value == "0" and name not in _FLAGS):
        return request.args.get(name, value)
    return value


def _stream_factory(writers: list[spool.HashingWriter], limit: int, limit_mb: float):
    cfg = current_app.config["IMGZ"]
    parts = 0

    def factory(total_content_length: int | None, content_type: str | None,
                filename: str | None, content_length: int | None = None) -> Any:
        nonlocal parts
        parts += 1
        g.imgz_file_parts = parts
        if parts > MAX_FILE_PARTS:
            return _Nowhere()
        writer = spool.upload_writer(cfg.data_dir, limit, limit_mb, cfg.keep_exif, drain=True)
        writers.append(writer)
        return writer

    return factory


# No path may redirect: a redirect turns the client's POST into a GET and loses the body. Werkzeug
# would answer doubled slashes with one; without merging they are an API 404 instead.
@bp.route("/api/1/upload", methods=["GET", "POST"], merge_slashes=False)
@bp.route("/api/1/upload/", methods=["GET", "POST"], merge_slashes=False)
def upload() -> Response:
    service = current_app.config["IMGZ_SERVICE"]
    start = time.monotonic()
    try:
        return _upload(service)
    finally:
        if g.pop("imgz_admitted", False):
            service.admission.leave(time.monotonic() - start)


def _upload(service: Any) -> Response:
    cfg = current_app.config["IMGZ"]
    g.api_format = params.parse_format(request.args.get("format"))
    writers: list[spool.HashingWriter] = []
    g.imgz_writers = writers
    now = service.now()
    conn = service.connection()

    actor: Actor | None = None
    limit, limit_mb = cfg.max_upload_bytes, cfg.max_upload_mb
    # What can be refused before the body is read is refused first; the body is then read only
    # for the format to answer in, its file parts thrown away.
    try:
        throttle("IP", request.remote_addr or "")
        key_in_header = header_key(request)
        if key_in_header:
            actor = actor_for_key(conn, key_in_header, now)
            throttle("KEY", str(actor.key_id))
        if request.content_length is not None and request.content_length > body_limit(limit):
            raise TooBig(limit_mb)
        service.check_free_space()
        # Every place for an upload taken: the threads that pages and files need are not given
        # to one more upload waiting for a worker.
        if not service.admission.enter():
            raise Busy(service.admission.retry_after())
        g.imgz_admitted = True
    except ImgzError as exc:
        _learn_format(trusted=actor is not None and isinstance(exc, (TooBig, NoStorage, Busy)))
        raise

    # under waitress the limit is a maximum that a body read to its very end must stay below
    request.max_content_length = body_limit(limit) + 1
    request.max_form_memory_size = body_limit(limit)
    request.environ["imgz.stream_factory"] = _stream_factory(writers, limit, limit_mb)
    request.max_form_parts = MAX_FORM_PARTS
    if actor is None and (request.content_length is None or request.content_length > KEYLESS_BODY):
        # The key may be inside the body: until it is known, large bodies are read one at a time,
        # so clients without a key cannot make the server hold many at once.
        with _KEYLESS_PARSES:
            _parse_body(writers, limit, limit_mb)
    else:
        _parse_body(writers, limit, limit_mb)
    g.api_format = params.parse_format(param("format"))
    for writer in writers:
        if writer.error is not None:  # a file part past the limit, or a full disk
            raise writer.error
    if g.get("imgz_file_parts", 0) > MAX_FILE_PARTS:
        raise InvalidParameter(f"Too many files: send one, as 'source' (at most {MAX_FILE_PARTS} file parts)")
    if actor is None:
        key = presented_key(request)
        if key or not cfg.guest_uploads:
            actor = actor_for_key(conn, key, now)
            throttle("KEY", str(actor.key_id))
        else:
            actor = Actor(user_id=None)
            limit, limit_mb = cfg.guest_max_upload_bytes, cfg.guest_max_upload_mb

    imgbb = not _given("source") and _given("image")
    options = _options(imgbb, now, actor)
    incoming = _incoming("image" if imgbb else "source", actor, limit, limit_mb)
    upload, secret = service.upload(incoming, actor, options)
    site = current_app.config["IMGZ_SITE"]()
    image = chevereto.image_object(upload, site, delete_secret=secret, now=now)
    fmt = g.api_format
    if fmt == "txt":
        return current_app.response_class(image["url"], content_type="text/plain; charset=utf-8")
    if fmt == "redirect":
        response = current_app.response_class("", status=302)
        response.headers["Location"] = image["path_viewer"]
        return response
    if imgbb:
        return json_response(chevereto.imgbb_answer(image, upload, now))
    return json_response(chevereto.upload_answer(image))


def _read_form(writers: list[spool.HashingWriter], limit: int, limit_mb: float) -> None:
    """Read the form, file parts to disk through the stream factory and a long base64 source
    decoded on its way into a spool (intake.py): neither is ever whole in memory."""
    cfg = current_app.config["IMGZ"]
    spools: dict[str, sources.Base64Spool] = {}
    g.imgz_base64 = spools

    def make_spool(name: str) -> sources.Base64Spool:
        decoded = sources.Base64Spool(cfg.data_dir, limit, limit_mb, cfg.keep_exif)
        writers.append(decoded.writer)  # removed with the request's other files
        return decoded

    if request.mimetype == "multipart/form-data":
        form, files, found = intake.read_multipart(
            request.stream, request.mimetype_params.get("boundary", ""), divert=SOURCE_FIELDS,
            make_spool=make_spool, stream_factory=request.environ["imgz.stream_factory"],
            content_length=request.content_length,
            max_form_memory_size=request.max_form_memory_size, max_parts=request.max_form_parts)
    elif request.mimetype == "application/x-www-form-urlencoded":
        form, found = intake.read_urlencoded(request.stream, divert=SOURCE_FIELDS,
                                             make_spool=make_spool)
        files = request.parameter_storage_class()
    else:
        request.form
        return
    spools.update(found)  # type: ignore[arg-type]
    request.form, request.files = form, files


def _parse_body(writers: list[spool.HashingWriter], limit: int, limit_mb: float) -> None:
    """Parse the form (file parts stream to disk here), turning a broken body into a clear error."""
    try:
        _read_form(writers, limit, limit_mb)
        _release_spool()
    except UnicodeDecodeError:
        if request.mimetype == "multipart/form-data":
            raise InvalidParameter("Invalid multipart body: part headers must be UTF-8") from None
        raise InvalidParameter("Invalid form body: it must be UTF-8") from None
    except ValueError:
        # A body that cannot be read as a form (wrong or missing boundary, cut short) holds no
        # usable source; what was read stays empty, as the answer will say.
        request.form = request.parameter_storage_class()
        request.files = request.parameter_storage_class()
    except RequestEntityTooLarge:
        if (request.content_length or 0) <= body_limit(current_app.config["IMGZ"].max_upload_bytes):
            raise InvalidParameter(f"Too many form fields (at most {MAX_FORM_PARTS})", status=413) from None
        raise TooBig(limit_mb) from None


class _Nowhere(io.BytesIO):
    """A file part's destination that keeps nothing."""

    def write(self, data: Any) -> int:
        return len(data)


def _learn_format(trusted: bool) -> None:
    """Read the form only to learn the format an error found before it should be answered in.

    waitress has the whole body already; file parts are thrown away as they are parsed, so this
    costs no disk. Only a client with a valid key has a large body read; for others past
    KEYLESS_BODY, as for a body too broken to parse, the query string's format stands.
    """
    if not trusted and (request.content_length is None or request.content_length > KEYLESS_BODY):
        return
    request.environ["imgz.stream_factory"] = lambda *args, **kwargs: _Nowhere()
    # waitress bounds the body already (a urlencoded one is read whole, into memory). None would
    # mean Flask's 500 KB for a field; a limit equal to the length counts a whole body as too big.
    request.max_content_length = None
    request.max_form_memory_size = (request.content_length
                                    or body_limit(current_app.config["IMGZ"].max_upload_bytes)) + 1
    request.max_form_parts = MAX_FORM_PARTS
    try:
        request.form
    except Exception:  # whatever else is wrong with the body, the error at hand is the answer
        return
    g.api_format = params.parse_format(param("format"))


def _release_spool() -> None:
    """Empty the server's copy of the request body once the form is parsed.

    waitress spools a large body to a temporary file that lives until the request ends; the
    upload is on disk in our own file by now, so its blocks can go back before processing.
    """
    if (request.content_length or 0) < SPOOL_RELEASE:
        return
    body = request.environ.get("wsgi.input")
    truncate = getattr(body, "truncate", None)
    if truncate is not None and getattr(body, "name", None) is not None:
        try:
            truncate(0)
        except (OSError, ValueError):
            pass


def throttle(kind: str, name: str) -> None:
    """Take a token from the per-key or per-address bucket, or refuse with 429 and Retry-After."""
    limiter = current_app.config[f"IMGZ_LIMIT_{kind}"]
    if limiter is not None:
        wait = limiter.hit(name)
        if wait:
            raise RateLimited(wait)


def _given(field: str) -> bool:
    """Whether the body or the query holds a source under this name (a file, a long base64
    value streamed to disk, or a value that is not absent)."""
    return (field in request.files or field in g.get("imgz_base64", {})
            or not params.absent(param(field)))


def _incoming(field: str, actor: Actor, limit: int, limit_mb: float) -> sources.Incoming:
    """The source as a file on disk, whichever form it came in."""
    cfg = current_app.config["IMGZ"]
    if field in request.files:
        part = request.files[field]
        writer = part.stream
        if not isinstance(writer, spool.HashingWriter):
            raise EmptySource()
        if writer.size > limit:
            raise TooBig(limit_mb)
        return sources.from_writer(writer, part.filename)
    decoded = g.get("imgz_base64", {}).get(field)
    if decoded is not None:  # a body value, so it beats the query's
        return decoded.incoming(limit, limit_mb)
    value = (param(field) or "").strip()
    if params.absent(value):
        raise EmptySource()
    if not sources.is_url(value):
        return sources.from_base64(value, cfg.data_dir, limit, limit_mb, cfg.keep_exif)
    if not cfg.url_sources:
        raise InvalidURL("URL sources are turned off")
    if actor.user_id is None:
        raise InvalidURL("URL sources need an API key")
    return sources.from_url(value, cfg.data_dir, limit, limit_mb, deadline=cfg.url_timeout,
                            allow_nets=cfg.url_allow_nets, keep_metadata=cfg.keep_exif)


def _options(imgbb: bool, now: datetime, actor: Actor) -> Options:
    raw_title = param("title")
    if imgbb and params.absent(raw_title):
        raw_title = param("name")
    title = None if params.absent(raw_title) else params.clean_title(raw_title or "") or None
    raw_description = param("description")
    description = None if params.absent(raw_description) else params.clean_description(raw_description or "")
    service = current_app.config["IMGZ_SERVICE"]
    album = param("album_id")
    category = param("category_id")
    expiration = param("expiration")
    expires_at = None
    if expiration not in (None, ""):
        cfg = current_app.config["IMGZ"]
        expires_at = parse_expiration(expiration, now, cfg.expiration_min, cfg.expiration_max)
    return Options(
        album_id=None if params.absent(album) else service.album_for(actor, album or ""),
        category_id=None if params.absent(category) else service.category_for(category or ""),
        expires_at=expires_at,
        title=title,
        description=description,
        tags=params.parse_tags(param("tags")),
        width=params.parse_width(param("width")),
        nsfw=params.parse_flag(param("nsfw")),
        use_file_date=params.parse_flag(param("use_file_date")),
    )


@bp.route("/sharex.sxcu", methods=["GET"])
def sharex_config() -> Response:
    """The ShareX uploader for the key presented (header or ``key``), as a download."""
    service = current_app.config["IMGZ_SERVICE"]
    throttle("IP", request.remote_addr or "")
    key = header_key(request) or request.args.get("key", "").strip() or None
    actor_for_key(service.connection(), key, service.now())
    base = current_app.config["IMGZ_SITE"]().base_url
    problem = sharex.unusable_base(base)
    if problem is not None:  # opened as http://0.0.0.0:8080/...: ShareX could not reach that
        raise InvalidParameter(f"No uploader for {base}: {problem}. Open this page by an address "
                               "that clients can reach, or set IMGZ_BASE_URL.")
    body = json.dumps(sharex.uploader(base, key or ""), indent=2)
    response = current_app.response_class(body, mimetype="application/json")
    response.headers["Content-Disposition"] = f'attachment; filename="{sharex.filename(base)}"'
    response.headers["Cache-Control"] = "no-store"
    return response
