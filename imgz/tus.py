"""Resumable uploads over tus 1.0 (core, creation, termination) at ``/api/1/tus/``, and the call
that finishes one: ``POST /api/1/tus/<id>/finish`` answers as ``/api/1/upload`` does.

    POST   /api/1/tus/            Upload-Length (required), Upload-Metadata (filename, filetype)
                                  -> 201, Location: /api/1/tus/<id>
    HEAD   /api/1/tus/<id>        -> Upload-Offset, Upload-Length (423 while a PATCH is stored)
    PATCH  /api/1/tus/<id>        Upload-Offset, Content-Type: application/offset+octet-stream
                                  -> 204, Upload-Offset
    DELETE /api/1/tus/<id>        -> 204
    OPTIONS                       -> Tus-Version, Tus-Extension, Tus-Max-Size
    POST   /api/1/tus/<id>/finish the options of /api/1/upload -> its answer

Who acts: auth.header_actor (a key; or a session with its token in X-CSRFToken, on every method).
Clients that cannot send PATCH or DELETE send POST with ``X-HTTP-Method-Override``. The body of
a PATCH is the one waitress read (to its buffer file, in the scratch folder), streamed from
there to the store; when the connection was cut mid-body the server hands the application what
arrived (channel.py), which is stored and counted like any other PATCH. Errors are in
Chevereto's shape, with the tus headers.
"""
from __future__ import annotations

import base64
import binascii
import re

from flask import Blueprint, Response, current_app, g, request

from . import params, resumable
from .api import admit, admitted, throttle, upload_answer
from .auth import header_actor
from .body import FORM_ROOM, MAX_FORM_PARTS, _Nowhere, param, upload_options
from .errors import ImgzError, InvalidParameter
from .records import Actor

bp = Blueprint("tus", __name__)

VERSION = "1.0.0"
EXTENSIONS = "creation,termination"
OCTETS = "application/offset+octet-stream"
METADATA_MOST = 4096  # bytes of Upload-Metadata
_NUMBER = re.compile(r"[0-9]{1,19}")
_OVERRIDES = {"PATCH", "DELETE", "HEAD"}


class WrongVersion(ImgzError):
    status, code, message = 412, 412, f"Tus-Resumable: {VERSION} is the version spoken here"


def _service():
    return current_app.config["IMGZ_SERVICE"]


@bp.after_request
def _tus_headers(response: Response) -> Response:
    response.headers["Tus-Resumable"] = VERSION
    response.headers["Cache-Control"] = "no-store"
    if response.status_code in (204, 412) or request.method == "OPTIONS":
        response.headers["Tus-Version"] = VERSION
    return response


def _options() -> Response:
    response = current_app.response_class("", status=204)
    response.headers["Tus-Extension"] = EXTENSIONS
    response.headers["Tus-Max-Size"] = str(current_app.config["IMGZ"].max_upload_bytes)
    return response


def _actor() -> Actor:
    """The rate limit per address, who acts (401), then the protocol's version (412)."""
    g.api_format = "json"
    throttle("IP", request.remote_addr or "")
    service = _service()
    actor = header_actor(service.connection(), service.now())
    if request.headers.get("Tus-Resumable", "").strip() != VERSION:
        raise WrongVersion()
    return actor


def _number(header: str) -> int:
    value = request.headers.get(header, "").strip()
    if not _NUMBER.fullmatch(value):
        raise InvalidParameter(f"{header} must be a whole number of bytes")
    return int(value)


def _metadata() -> dict[str, str]:
    """Upload-Metadata: comma-separated ``key base64(value)`` pairs (a key alone: no value)."""
    raw = request.headers.get("Upload-Metadata", "")
    if len(raw) > METADATA_MOST:
        raise InvalidParameter(f"Upload-Metadata is longer than {METADATA_MOST} bytes")
    found: dict[str, str] = {}
    for pair in filter(None, (p.strip() for p in raw.split(","))):
        name, _, value = pair.partition(" ")
        try:
            found[name] = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise InvalidParameter(f"Upload-Metadata: the value of {name!r} is not base64 of "
                                   "UTF-8 text") from None
    return {k: v[:255] for k, v in found.items()}


@bp.route("/api/1/tus", methods=["POST", "OPTIONS"], merge_slashes=False)
@bp.route("/api/1/tus/", methods=["POST", "OPTIONS"], merge_slashes=False)
def create() -> Response:
    if request.method == "OPTIONS":
        return _options()
    actor = _actor()
    if request.headers.get("Upload-Defer-Length") is not None:
        raise InvalidParameter("Upload-Defer-Length is not supported: send Upload-Length")
    if request.headers.get("Upload-Length") is None:
        raise InvalidParameter("Upload-Length is required")
    length = _number("Upload-Length")
    metadata = _metadata()
    throttle("KEY", str(actor.key_id) if actor.key_id is not None else f"user:{actor.user_id}")
    upload_id = resumable.create(_service(), actor, length, metadata)
    response = current_app.response_class("", status=201)
    response.headers["Location"] = f"/api/1/tus/{upload_id}"
    return response


@bp.route("/api/1/tus/<upload_id>", methods=["HEAD", "PATCH", "DELETE", "POST", "OPTIONS"],
          merge_slashes=False)
def one(upload_id: str) -> Response:
    method = request.method
    if method == "OPTIONS":
        return _options()
    if method == "POST":
        method = request.headers.get("X-HTTP-Method-Override", "").strip().upper()
        if method not in _OVERRIDES:
            raise ImgzError("POST here needs X-HTTP-Method-Override: PATCH, DELETE or HEAD", 405, 405)
    actor = _actor()
    service = _service()
    if method == "HEAD":
        progress = resumable.progress(service, actor, upload_id)
        response = current_app.response_class("", status=200)
        response.headers["Upload-Offset"] = str(progress.offset)
        response.headers["Upload-Length"] = str(progress.length)
        return response
    if method == "DELETE":
        resumable.terminate(service, actor, upload_id)
        return current_app.response_class("", status=204)
    if request.mimetype != OCTETS:
        raise ImgzError(f"A PATCH carries Content-Type: {OCTETS}", 415, 415)
    offset = _number("Upload-Offset")
    size = request.content_length
    if size is None:
        raise ImgzError("A PATCH needs a Content-Length (or a chunked body)", 411, 411)
    progress = resumable.append(service, actor, upload_id, offset, size, request.stream)
    response = current_app.response_class("", status=204)
    response.headers["Upload-Offset"] = str(progress.offset)
    return response


@bp.route("/api/1/tus/<upload_id>/finish", methods=["POST"], merge_slashes=False)
@admitted
def finish(upload_id: str) -> Response:
    """The finished upload stored as ``/api/1/upload`` stores a file, with the same options and
    the same answer; its resumable upload is gone afterwards."""
    service = _service()
    g.api_format = params.parse_format(request.args.get("format"))
    throttle("IP", request.remote_addr or "")
    actor = header_actor(service.connection(), service.now())
    # the options, as a form (or the query): a small body, any file part thrown away
    request.max_content_length = FORM_ROOM
    request.max_form_memory_size = FORM_ROOM
    request.max_form_parts = MAX_FORM_PARTS
    request.environ["imgz.stream_factory"] = lambda *args, **kwargs: _Nowhere()
    try:
        request.form
    except ValueError:
        raise InvalidParameter("The options must be a form (or in the query string)") from None
    g.api_format = params.parse_format(param("format"))
    now = service.now()
    options = upload_options(False, now, actor)
    resumable.find(service, actor, upload_id)  # an unknown id is 404 before a place is taken
    admit(service)
    incoming = resumable.finish(service, actor, upload_id)
    return upload_answer(service, incoming, actor, options, now)
