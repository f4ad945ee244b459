"""The upload page, ``/`` (for a signed-in person, and for guests where guest uploads are on),
and its form's own endpoint, ``POST /upload``, which uploads without JavaScript.

With JavaScript (imgz/static/upload.js) the page posts each file to ``/api/1/upload`` with the
session and its CSRF token in a header, and never holds an API key; files above
``IMGZ_RESUMABLE_MB`` go up in tus chunks (signed-in people only). Without it the form posts
here: the same admission, body reading and service call as the API (api.py, body.py), several
files at once, answered with a page of the stored files and their links. A file that fails
takes the ones stored before it in the same form away with it: nothing is half-stored.
"""
from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, current_app, g, render_template, request

from . import chevereto, db, embed
from .api import admit, admitted, check_spooled, read_upload, throttle
from .auth import session_actor
from .body import part_source, upload_options, url_source
from .errors import EmptySource, InvalidParameter, Unauthorized
from .page import upload_page
from .records import Actor
from .signin import signed_in_user
from .views import start_page

bp = Blueprint("uploadpage", __name__)

FORM_PATH = "/upload"
FORM_FILES = 20  # files one form may send; each gets a temp file while the request lasts
ALBUMS_LISTED = 500
TUS_ENDPOINT = "/api/1/tus/"
TUS_CLIENT = "vendor/tus-js-client/tus.min.js"
SIGN_IN = "Sign in to upload: this server takes no uploads from guests."
FORGED = "This form has expired or did not come from this site. Reload the page and try again."
EXPIRATIONS = (("", "Never"), ("PT1H", "After an hour"), ("P1D", "After a day"),
               ("P7D", "After a week"), ("P30D", "After 30 days"), ("P365D", "After a year"))


def must_sign_in() -> Unauthorized:
    """The refusal of a form upload by a visitor without a session where guests are off (the
    server's gate gives the same one before reading a large body)."""
    return Unauthorized(SIGN_IN)


@bp.route("/", methods=["GET", "HEAD"])
def index() -> str:
    """The upload page for whoever may upload from a browser; else the start page."""
    cfg = current_app.config["IMGZ"]
    me = signed_in_user()
    if me is None and not cfg.guest_uploads:
        return start_page()
    g.csp_connect = True  # its script posts the files
    service = current_app.config["IMGZ_SERVICE"]
    albums = db.user_albums(service.connection(), me.id, ALBUMS_LISTED) if me else []
    limit_mb = cfg.max_upload_mb if me else cfg.guest_max_upload_mb
    return render_template(
        "upload.html", albums=albums, expirations=EXPIRATIONS, guest=me is None,
        limit_mb=f"{limit_mb:g}", limit_bytes=int(limit_mb * 1_000_000), max_files=FORM_FILES,
        # resumable chunks are for signed-in people only; 0 turns them off in the script
        resumable_bytes=int(cfg.resumable_mb * 1_000_000) if me else 0,
        tus_endpoint=TUS_ENDPOINT, tus_client=TUS_CLIENT, url_sources=cfg.url_sources and me is not None,
        deleted="deleted" in request.args)


@bp.route(FORM_PATH, methods=["POST"])
@admitted
def form_upload() -> Any:
    service = current_app.config["IMGZ_SERVICE"]
    cfg = current_app.config["IMGZ"]
    throttle("IP", request.remote_addr or "")
    me = signed_in_user()
    if me is None and not cfg.guest_uploads:
        raise must_sign_in()
    if me is not None:
        limit, limit_mb = cfg.max_upload_bytes, cfg.max_upload_mb
    else:
        limit, limit_mb = cfg.guest_max_upload_bytes, cfg.guest_max_upload_mb
    admit(service, limit, limit_mb)
    # The CSRF token is a form field, known only once the body is read; a signed-in person's
    # body is read as a keyed one is, a guest's as a keyless one.
    read_upload(me is not None, limit, limit_mb, FORM_FILES)
    actor = Actor(user_id=None)
    if me is not None:
        found = session_actor()
        if found is None:
            abort(400, FORGED)
        actor = found
        throttle("KEY", f"user:{actor.user_id}")
    check_spooled()
    if g.get("imgz_file_parts", 0) > FORM_FILES:
        raise InvalidParameter(f"Too many files: at most {FORM_FILES} at once.", status=413)
    now = service.now()
    options = upload_options(False, now, actor)
    # a file input left empty still sends a part, without a name or a byte
    parts = [p for p in request.files.getlist("source") if p.filename or getattr(p.stream, "size", 0)]
    url = request.form.get("url", "").strip()
    if not parts and not url:
        raise EmptySource("Choose a file to upload" + (", or give its URL." if me else "."))
    stored: list[tuple[Any, str]] = []
    try:
        for part in parts:
            stored.append(service.upload(part_source(part, limit, limit_mb), actor, options))
        if url:
            stored.append(service.upload(url_source(url, actor, limit, limit_mb), actor, options))
    except BaseException:
        for upload, _ in stored:
            service.delete(upload)
        raise
    site = current_app.config["IMGZ_SITE"]()
    items = [(chevereto.image_object(upload, site, delete_secret=secret, now=now),
              embed.share_codes(upload_page(upload, site))) for upload, secret in stored]
    response = current_app.response_class(render_template("uploaded.html", items=items), mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"  # it shows the delete links, once
    return response
