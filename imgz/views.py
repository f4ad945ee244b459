"""Pages for people: the viewer of an upload and the delete confirmation."""
from __future__ import annotations

import re

from flask import Blueprint, Response, abort, current_app, redirect, render_template, request

from . import chevereto, db
from .records import Upload

bp = Blueprint("views", __name__)

_BOTS = re.compile(r"bot|crawl|spider|slurp|preview|facebookexternalhit|whatsapp|telegram|embedly"
                   r"|curl|wget|python-requests|httpclient", re.IGNORECASE)


def _split_ident(ident: str) -> tuple[str | None, str]:
    slug, dot, public_id = ident.rpartition(".")
    return (slug if dot else None), public_id


def _live_upload(public_id: str) -> Upload:
    upload = current_app.config["IMGZ_SERVICE"].get_live(public_id)
    if upload is None:
        abort(404)
    return upload


def is_person(user_agent: str) -> bool:
    return bool(user_agent) and not _BOTS.search(user_agent)


def viewer(route: str, ident: str) -> Response | str:
    slug, public_id = _split_ident(ident)
    upload = _live_upload(public_id)
    site = current_app.config["IMGZ_SITE"]()
    canonical = chevereto.viewer_path(upload, site)
    if request.path != canonical:
        return redirect(canonical, code=302)
    if (request.method == "GET" and "Range" not in request.headers
            and is_person(request.headers.get("User-Agent", ""))):
        db.add_view(current_app.config["IMGZ_SERVICE"].connection(), upload.id)
    image = chevereto.image_object(upload, site)
    return render_template("viewer.html", upload=upload, image=image)


def video_alias(ident: str) -> Response:
    return redirect(f"/{current_app.config['IMGZ'].route_video}/{ident}", code=302)


def delete(route: str, public_id: str, secret: str) -> Response | str:
    service = current_app.config["IMGZ_SERVICE"]
    upload = service.get_live(public_id)
    if upload is None or not service.secret_valid(public_id, secret):
        if wants_json():
            return current_app.response_class(
                '{"status_code":404,"error":{"message":"Not found","code":404},"status_txt":"Not Found"}',
                status=404, mimetype="application/json")
        abort(404)
    if request.method == "GET":
        image = chevereto.image_object(upload, current_app.config["IMGZ_SITE"]())
        return render_template("delete.html", upload=upload, image=image)
    service.delete(upload)
    if wants_json():
        return current_app.response_class(
            '{"status_code":200,"success":{"message":"file deleted","code":200},"status_txt":"OK"}',
            mimetype="application/json")
    return render_template("deleted.html", upload=upload)


def wants_json() -> bool:
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json" and request.accept_mimetypes["application/json"] > \
        request.accept_mimetypes["text/html"]


def register(app, route_image: str, route_video: str) -> None:
    """Add the viewer and delete routes under the configured route names."""
    for route in (route_image, route_video):
        app.add_url_rule(f"/{route}/<ident>", f"viewer_{route}", viewer, defaults={"route": route},
                         methods=["GET", "HEAD"])
        app.add_url_rule(f"/{route}/<public_id>/delete/<secret>", f"delete_{route}", delete,
                         defaults={"route": route}, methods=["GET", "POST", "DELETE"])
    app.add_url_rule("/video/<path:ident>", "video_alias", video_alias, methods=["GET", "HEAD"])
