"""The upload endpoint, ``/api/1/upload``: key, admission, the body read (body.py), the service
called, the answer in Chevereto's shape and the format asked for; and ShareX's uploader file."""
from __future__ import annotations

import functools
import json
import threading
import time
from datetime import datetime
from typing import Any, Callable

from flask import Blueprint, Response, current_app, g, request

from . import chevereto, params, sharex, spool
from .admission import ENVIRON_STREAMED
from .auth import actor_for_key, header_key, presented_key, session_actor
from .body import (KEYLESS_BODY, MAX_FILE_PARTS, MAX_FORM_PARTS, body_limit, given, learn_format,
                   param, read_body, source_file, stream_factory, upload_options)
from .errors import Busy, ImgzError, InvalidParameter, NoStorage, RateLimited, TooBig
from .records import Actor, Options
from .sources import Incoming

bp = Blueprint("api", __name__)

_KEYLESS_PARSES = threading.BoundedSemaphore(1)


def json_response(body: dict[str, Any], status: int = 200) -> Response:
    return current_app.response_class(json.dumps(body, ensure_ascii=False), status=status,
                                      mimetype="application/json")


def admit(service: Any, limit: int | None = None, limit_mb: float = 0.0, *,
          queue: bool = True) -> None:
    """Check the declared size against ``limit`` when one is given (413) and the free space
    (507), and with ``queue`` take a place in the upload queue (503 when none is free); the place
    is left when the request ends (``admitted``)."""
    if limit is not None and request.content_length is not None and request.content_length > body_limit(limit):
        raise TooBig(limit_mb)
    service.check_free_space()
    if not queue:
        return
    # Every place for an upload taken: the threads that pages and files need are not given
    # to one more upload waiting for a worker.
    if not service.admission.enter():
        raise Busy(service.admission.retry_after())
    g.imgz_admitted = True


def admitted(view: Callable[..., Response]) -> Callable[..., Response]:
    """A view that may ``admit``: its place in the upload queue is left when it returns."""
    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Response:
        service = current_app.config["IMGZ_SERVICE"]
        start = time.monotonic()
        try:
            return view(*args, **kwargs)
        finally:
            if g.pop("imgz_admitted", False):
                service.admission.leave(time.monotonic() - start)
    return wrapper


# No path may redirect: a redirect turns the client's POST into a GET and loses the body. Werkzeug
# would answer doubled slashes with one; without merging they are an API 404 instead.
@bp.route("/api/1/upload", methods=["GET", "POST"], merge_slashes=False)
@bp.route("/api/1/upload/", methods=["GET", "POST"], merge_slashes=False)
@admitted
def upload() -> Response:
    return _upload(current_app.config["IMGZ_SERVICE"])


def read_upload(known: bool, limit: int, limit_mb: float, max_files: int = MAX_FILE_PARTS) -> None:
    """Read the body: file parts (at most ``max_files`` kept) stream to temp files, removed when
    the request ends (``check_spooled`` then). Until the sender is ``known``, large bodies are
    read one at a time."""
    writers: list[spool.HashingWriter] = []
    g.imgz_writers = writers
    # under waitress the limit is a maximum that a body read to its very end must stay below
    request.max_content_length = body_limit(limit) + 1
    request.max_form_memory_size = body_limit(limit)
    request.environ["imgz.stream_factory"] = stream_factory(writers, limit, limit_mb, max_files)
    request.max_form_parts = MAX_FORM_PARTS
    if not known and (request.content_length is None or request.content_length > KEYLESS_BODY):
        # The key may be inside the body: until it is known, large bodies are read one at a time,
        # so clients without a key cannot make the server hold many at once.
        with _KEYLESS_PARSES:
            read_body(writers, limit, limit_mb)
    else:
        read_body(writers, limit, limit_mb)


def check_spooled() -> None:
    """Raise the first error met while writing a file part (past the limit, or a full disk)."""
    for writer in g.get("imgz_writers", ()):
        if writer.error is not None:
            raise writer.error


def _upload(service: Any) -> Response:
    cfg = current_app.config["IMGZ"]
    g.api_format = params.parse_format(request.args.get("format"))
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
        elif request.headers.get("X-CSRFToken") and request.args.get("key") is None:
            # the upload page: its session and the token in the header are known before the body
            actor = session_actor(header_only=True)
            if actor is not None:
                throttle("KEY", f"user:{actor.user_id}")
        # a body that still arrives takes its place in the queue once it is in, as one received
        # whole before the application runs does: a slow sender holds no place meanwhile
        streamed = bool(request.environ.get(ENVIRON_STREAMED))
        admit(service, limit, limit_mb, queue=not streamed)
    except ImgzError as exc:
        learn_format(trusted=actor is not None and isinstance(exc, (TooBig, NoStorage, Busy)))
        raise

    read_upload(actor is not None, limit, limit_mb)
    g.api_format = params.parse_format(param("format"))
    if streamed:
        admit(service)
    check_spooled()
    if g.get("imgz_file_parts", 0) > MAX_FILE_PARTS:
        raise InvalidParameter(f"Too many files: send one, as 'source' (at most {MAX_FILE_PARTS} file parts)")
    if actor is None:
        key = presented_key(request)
        actor = None if key else session_actor()
        if actor is not None:
            throttle("KEY", f"user:{actor.user_id}")
        elif key or not cfg.guest_uploads:
            actor = actor_for_key(conn, key, now)
            throttle("KEY", str(actor.key_id))
        else:
            actor = Actor(user_id=None)
            limit, limit_mb = cfg.guest_max_upload_bytes, cfg.guest_max_upload_mb

    imgbb = not given("source") and given("image")
    options = upload_options(imgbb, now, actor)
    incoming = source_file("image" if imgbb else "source", actor, limit, limit_mb)
    return upload_answer(service, incoming, actor, options, now, imgbb)


def upload_answer(service: Any, incoming: Incoming, actor: Actor, options: Options,
                  now: datetime, imgbb: bool = False) -> Response:
    """Store an incoming file as an upload and answer as ``/api/1/upload`` does, in the format
    asked for (``g.api_format``): the one path of the upload endpoint and of a finished
    resumable upload (tus.py)."""
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


def throttle(kind: str, name: str) -> None:
    """Take a token from the per-key or per-address bucket, or refuse with 429 and Retry-After."""
    limiter = current_app.config[f"IMGZ_LIMIT_{kind}"]
    if limiter is not None:
        wait = limiter.hit(name)
        if wait:
            raise RateLimited(wait)


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
