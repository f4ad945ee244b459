"""The upload's request body: how large it may be, reading it as a form, the source and the
options in it.

The form is read by intake.py (file parts and a long base64 source go to disk as they arrive);
here are the rules around it: which fields may hold the source and in which forms (a file part,
a base64 string, a URL), how many file parts and fields a body may have, that a body value counts
before the query's, and how the optional parameters are parsed (params.py).
"""
from __future__ import annotations

import io
from datetime import datetime
from typing import Any

from flask import current_app, g, request
from werkzeug.exceptions import RequestEntityTooLarge

from . import intake, lookup, params, sources, spool
from .expiry import parse_expiration
from .errors import EmptySource, InvalidParameter, InvalidURL, TooBig
from .records import Actor, Options

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
SPOOL_RELEASE = 32_000_000  # bodies from this size on give their spooled copy back early


def body_limit(max_upload: int) -> int:
    """The largest request body to read: base64 makes the source a third larger than the file."""
    return max_upload * 4 // 3 + FORM_ROOM


# For these "0" is an answer (no), not an absent value.
_FLAGS = {"nsfw", "use_file_date"}


def param(name: str) -> str | None:
    """A parameter from the body, else the query string; the first of repeated values counts.

    A body value that counts as absent (empty, or "0" but for the flags) leaves the query's."""
    value = request.form.get(name)
    if value is None or value == "" or (value == "0" and name not in _FLAGS):
        return request.args.get(name, value)
    return value


def stream_factory(writers: list[spool.HashingWriter], limit: int, limit_mb: float,
                   max_files: int = MAX_FILE_PARTS):
    """File parts to temp files, up to ``max_files`` of them; later ones are thrown away."""
    cfg = current_app.config["IMGZ"]
    parts = 0

    def factory(total_content_length: int | None, content_type: str | None,
                filename: str | None, content_length: int | None = None) -> Any:
        nonlocal parts
        parts += 1
        g.imgz_file_parts = parts
        if parts > max_files:
            return _Nowhere()
        writer = spool.upload_writer(cfg.data_dir, limit, limit_mb, cfg.keep_exif, drain=True)
        writers.append(writer)
        return writer

    return factory


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


def read_body(writers: list[spool.HashingWriter], limit: int, limit_mb: float) -> None:
    """Parse the form (file parts stream to disk here), turning a broken body into a clear error."""
    try:
        _read_form(writers, limit, limit_mb)
        _release_spool()
    except UnicodeDecodeError:
        if request.mimetype == "multipart/form-data":
            raise InvalidParameter("Invalid multipart body: part headers must be UTF-8") from None
        raise InvalidParameter('Invalid form body: a urlencoded body must be UTF-8 text. Send a file as a '
                               'multipart form field named source: curl -F "source=@file.png"') from None
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


def learn_format(trusted: bool) -> None:
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


def given(field: str) -> bool:
    """Whether the body or the query holds a source under this name (a file, a long base64
    value streamed to disk, or a value that is not absent)."""
    return (field in request.files or field in g.get("imgz_base64", {})
            or not params.absent(param(field)))


def source_file(field: str, actor: Actor, limit: int, limit_mb: float) -> sources.Incoming:
    """The source as a file on disk, whichever form it came in."""
    if field in request.files:
        return part_source(request.files[field], limit, limit_mb)
    decoded = g.get("imgz_base64", {}).get(field)
    if decoded is not None:  # a body value, so it beats the query's
        return decoded.incoming(limit, limit_mb)
    value = (param(field) or "").strip()
    if params.absent(value):
        raise EmptySource()
    if not sources.is_url(value):
        cfg = current_app.config["IMGZ"]
        return sources.from_base64(value, cfg.data_dir, limit, limit_mb, cfg.keep_exif)
    return url_source(value, actor, limit, limit_mb)


def part_source(part: Any, limit: int, limit_mb: float) -> sources.Incoming:
    """A file part (streamed to disk as it came) as the incoming file."""
    writer = part.stream
    if not isinstance(writer, spool.HashingWriter):
        raise EmptySource()
    if writer.size > limit:
        raise TooBig(limit_mb)
    return sources.from_writer(writer, part.filename)


def url_source(value: str, actor: Actor, limit: int, limit_mb: float) -> sources.Incoming:
    """An http(s) URL, downloaded where URL sources are on and the actor is a user."""
    cfg = current_app.config["IMGZ"]
    if not cfg.url_sources:
        raise InvalidURL("URL sources are turned off")
    if actor.user_id is None:
        raise InvalidURL("URL sources need an API key")
    return sources.from_url(value, cfg.data_dir, limit, limit_mb, deadline=cfg.url_timeout,
                            allow_nets=cfg.url_allow_nets, keep_metadata=cfg.keep_exif)


def upload_options(imgbb: bool, now: datetime, actor: Actor) -> Options:
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
        album_id=None if params.absent(album) else lookup.album_for(service, actor, album or ""),
        category_id=None if params.absent(category) else lookup.category_for(service, category or ""),
        expires_at=expires_at,
        title=title,
        description=description,
        tags=params.parse_tags(param("tags")),
        width=params.parse_width(param("width")),
        nsfw=params.parse_flag(param("nsfw")),
        use_file_date=params.parse_flag(param("use_file_date")),
    )
