"""Pages for people: the viewer of an upload, the delete flow, tag pages, oEmbed.

Every HTML page gets a strict Content-Security-Policy: only this origin (and the base URL's, where
files are served from), with the inline style and script allowed by a per-response nonce.
"""
from __future__ import annotations

import functools
import hashlib
import re
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from flask import (Blueprint, Flask, Response, abort, current_app, g, redirect, render_template, request,
                   send_from_directory)

from . import chevereto, db, embed, lookup
from .api import json_response
from .page import tile, upload_page
from .records import Upload

bp = Blueprint("views", __name__)

TAG_PAGE_SIZE = 24
VIEWER_MAX_AGE = 60  # seconds a signed-out viewer page may be kept by browsers and caches
HOME_TAGS = 40
NO_TAG = "No public upload carries this tag (any more): the start page lists the tags that do."

# Link previewers, crawlers and HTTP libraries: their GETs are not people looking at the page.
_BOTS = re.compile(
    r"bot|crawl|spider|slurp|preview|facebookexternalhit|facebookcatalog|whatsapp|embedly"
    r"|iframely|http\.rb|vkshare|archive\.org|curl|wget|python-|httpclient|httpx|aiohttp"
    r"|okhttp|go-http-client|java/|libwww|node-fetch|axios|scrapy|feedfetcher|\+https?://",
    re.IGNORECASE)


def is_person(user_agent: str) -> bool:
    """Whether a User-Agent looks like a person's browser (an empty one does not)."""
    return bool(user_agent.strip()) and not _BOTS.search(user_agent)


def _counts_as_view() -> bool:
    if request.method != "GET" or "Range" in request.headers:
        return False
    # Speculative loads (prefetch, prerender) are not looks at the page.
    purpose = request.headers.get("Sec-Purpose", "") + request.headers.get("Purpose", "")
    if "prefetch" in purpose.lower():
        return False
    return is_person(request.headers.get("User-Agent", ""))


def _site() -> chevereto.Site:
    return current_app.config["IMGZ_SITE"]()


def _split_ident(ident: str) -> tuple[str | None, str]:
    slug, dot, public_id = ident.rpartition(".")
    return (slug if dot else None), public_id


def _live_upload(public_id: str) -> Upload:
    upload = lookup.get_live(current_app.config["IMGZ_SERVICE"], public_id)
    if upload is None:
        abort(404, "This upload does not exist, was deleted or has expired.")
    return upload


def _json_error(status: int, message: str) -> Response:
    return json_response(chevereto.error_body(status, message, status), status)


def viewer(route: str, ident: str) -> Response | str:
    _, public_id = _split_ident(ident)
    upload = _live_upload(public_id)
    site = _site()
    canonical = chevereto.viewer_path(upload, site)
    if request.path != canonical:
        return redirect(canonical, code=302)
    if _counts_as_view():
        db.add_view(current_app.config["IMGZ_SERVICE"].connection(), upload.id)
    page = upload_page(upload, site)
    response = Response(render_template(
        "viewer.html", page=page, meta=embed.meta_tags(page),
        oembed_url=embed.oembed_url(site, page.viewer_url), codes=embed.share_codes(page),
        public_tags=current_app.config["IMGZ"].public_tags), mimetype="text/html")
    # Anyone's copy of the page may be kept a minute, never past the upload's expiry, and only
    # for people signed out (signed in, _page_headers makes it private and kept by nobody).
    left = VIEWER_MAX_AGE
    if upload.expires_at is not None:
        now = current_app.config["IMGZ_SERVICE"].now()
        left = min(left, int((upload.expires_at - now).total_seconds()))
    response.cache_control.public = left > 0
    response.cache_control.max_age = max(0, left)
    if left <= 0:
        response.cache_control.no_cache = True
    response.vary.add("Cookie")
    return response


def video_alias(ident: str) -> Response:
    return redirect(f"/{current_app.config['IMGZ'].route_video}/{ident}", code=302)


def delete(route: str, public_id: str, secret: str) -> Response | str:
    service = current_app.config["IMGZ_SERVICE"]
    upload = lookup.get_live(service, public_id)
    if upload is None or not lookup.secret_valid(service, public_id, secret):
        return _nothing_to_delete()
    if request.method in {"GET", "HEAD"}:
        return render_template("delete.html", page=upload_page(upload, _site()))
    if not service.delete(upload):
        # another deletion of the same upload removed it first: only that one succeeded
        return _nothing_to_delete()
    if wants_json():
        return json_response(chevereto.deleted_answer())
    if request.form.get("confirm") == "page":
        # after the page's button: a reload or Back must not send the deletion again
        return redirect("/?deleted=1", code=303)
    return render_template("deleted.html", page=upload_page(upload, _site()))


def _nothing_to_delete() -> Response:
    if wants_json():
        return _json_error(404, "Not found")
    abort(404, "There is nothing to delete here: the link is wrong or the upload is gone.")


def wants_json() -> bool:
    """Whether the client names JSON above any HTML it names.

    Only named types count (application/* names JSON, text/* HTML): script clients send
    'application/json, text/plain, */*', where the wildcard would rank HTML as high as JSON;
    browsers name text/html and never JSON. Media types are compared without case.
    """
    json_q = html_q = 0.0
    for value, quality in request.accept_mimetypes:
        kind = value.lower()
        if kind in {"application/json", "application/*"}:
            json_q = max(json_q, quality)
        elif kind in {"text/html", "text/*"}:
            html_q = max(html_q, quality)
    return json_q > html_q


def start_page() -> str:
    """The start page for a visitor who cannot upload from the browser (uploadpage.py owns
    ``/``): how to upload here and, with public tags, where to look."""
    cfg = current_app.config["IMGZ"]
    service = current_app.config["IMGZ_SERVICE"]
    tags = db.popular_tags(service.connection(), service.now(), HOME_TAGS) if cfg.public_tags else []
    return render_template("index.html", base=_site().base_url, tags=tags,
                           deleted="deleted" in request.args)


@bp.route("/tag/<key>")
def tag(key: str) -> Response | str:
    if not current_app.config["IMGZ"].public_tags:
        abort(404)
    canonical = chevereto.tag_key(key)
    if canonical != key and canonical:
        return redirect(f"/tag/{quote(canonical)}", code=302)
    conn = current_app.config["IMGZ_SERVICE"].connection()
    found = db.get_tag(conn, key)
    page_text = request.args.get("page", "1")
    if found is None or not re.fullmatch(r"[0-9]{1,6}", page_text) or int(page_text) < 1:
        abort(404, NO_TAG)
    page = int(page_text)
    uploads, total = db.tag_uploads(conn, found.id, current_app.config["IMGZ_SERVICE"].now(),
                                    TAG_PAGE_SIZE, (page - 1) * TAG_PAGE_SIZE)
    pages = max(1, -(-total // TAG_PAGE_SIZE))
    # A tag whose uploads are all NSFW or expired is not public: it does not exist for visitors.
    if total == 0 or page > pages:
        abort(404, NO_TAG)
    site = _site()
    items = [tile(u, site) for u in uploads]
    return render_template("tag.html", tag=found, items=items, page=page, pages=pages, total=total)


@bp.route("/oembed")
@bp.route("/oembed/")
def oembed() -> Response:
    fmt = request.args.get("format", "json")
    if fmt != "json":
        return _json_error(501, "Only format=json is available")
    url = request.args.get("url", "")
    if not url:
        return _json_error(400, "The url parameter is required")
    site = _site()
    public_id = embed.public_id_from_url(url, site)
    service = current_app.config["IMGZ_SERVICE"]
    upload = lookup.get_live(service, public_id) if public_id else None
    if upload is None:
        return _json_error(404, "Not found")
    limits = []
    for name in ("maxwidth", "maxheight"):
        value = request.args.get(name, "")
        limits.append(int(value) if re.fullmatch(r"[0-9]{1,5}", value) and int(value) > 0 else None)
    answer = embed.oembed(upload_page(upload, site), site, max_width=limits[0], max_height=limits[1],
                          now=service.now())
    response = json_response(answer)
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


STATIC = Path(__file__).resolve().parent / "static"


@functools.lru_cache(maxsize=64)
def _static_version(name: str) -> str:
    try:
        return hashlib.sha256((STATIC / name).read_bytes()).hexdigest()[:12]
    except OSError:
        return "0"


def static_url(name: str) -> str:
    """The URL of a file under imgz/static, with its content's hash: cached for good."""
    return f"/static/{name}?v={_static_version(name)}"


@bp.route("/static/<path:name>")
def static_file(name: str) -> Response:
    """Scripts and styles of the pages (send_from_directory refuses paths out of the folder)."""
    response = send_from_directory(STATIC, name, max_age=0)
    if request.args.get("v") == _static_version(name):
        response.cache_control.max_age = 31_536_000
        response.cache_control.public = True
        response.cache_control.immutable = True
    else:
        response.cache_control.no_cache = True
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def csp_nonce() -> str:
    """This response's nonce for inline ``<style>`` and ``<script>``."""
    if "csp_nonce" not in g:
        g.csp_nonce = secrets.token_urlsafe(16)
    return g.csp_nonce


@bp.app_context_processor
def _template_helpers() -> dict[str, Any]:
    return {"csp_nonce": csp_nonce, "static_url": static_url}


@bp.after_app_request
def _page_headers(response: Response) -> Response:
    if response.mimetype != "text/html":
        return response
    nonce = csp_nonce()
    files = "'self'"
    base = current_app.config["IMGZ"].base_url
    if base:
        parts = urlsplit(base)
        files += f" {parts.scheme}://{parts.netloc}"
    # a page whose script sends requests (the upload page) may reach this origin, and no other
    connect = "connect-src 'self'; " if g.get("csp_connect") else ""
    response.headers.setdefault(
        "Content-Security-Policy",
        f"default-src 'none'; img-src {files} data:; media-src {files}; {connect}"
        f"style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; form-action 'self'; "
        "base-uri 'none'; frame-ancestors 'none'")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    if "/delete/" in request.path or request.path.startswith("/password/"):
        # The secret is in the URL: no Referer may carry it to another site, no index may keep
        # it. (The link's own form posts back here, with a same-origin Referer for CSRF's check.)
        response.headers["Referrer-Policy"] = "no-referrer" if "/delete/" in request.path else "same-origin"
        response.headers["X-Robots-Tag"] = "noindex, nofollow"
        response.headers["Cache-Control"] = "no-store"
    else:
        response.headers.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
    if g.get("imgz_me") is not None:
        # a signed-in person's page shows their own things: kept by no cache, theirs neither
        response.headers["Cache-Control"] = "private, no-store"
        response.vary.add("Cookie")
    return response


def register(app: Flask, route_image: str, route_video: str) -> None:
    """Add the viewer and delete routes under the configured route names."""
    for route in (route_image, route_video):
        app.add_url_rule(f"/{route}/<ident>", f"viewer_{route}", viewer, defaults={"route": route},
                         methods=["GET", "HEAD"])
        app.add_url_rule(f"/{route}/<public_id>/delete/<secret>", f"delete_{route}", delete,
                         defaults={"route": route}, methods=["GET", "POST", "DELETE"])
    if "video" not in (route_image, route_video):
        app.add_url_rule("/video/<path:ident>", "video_alias", video_alias, methods=["GET", "HEAD"])
