"""Albums in the browser: the list (/albums: new, rename, public or private, delete, each with how
many uploads it holds) and an album's own page (/a/<page_key>), a grid like "My uploads".

An album's page is at an address nobody can guess. A private album's page is 404 for anyone but
its owner and admins; a public one shows to anyone who has the address. Deleting an album keeps
its uploads. Every change is a POST with the session's CSRF token and answers with a redirect.
"""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, abort, flash, redirect, render_template, request

from . import library
from .manage import back_to, cursor, messages, page_size, pager, person, service, site
from .records import Listing
from .signin import SessionUser, page_user, signed_in_user

bp = Blueprint("albumpages", __name__)


@bp.route("/albums", methods=["GET"])
@page_user()
def albums(me: SessionUser) -> Response:
    found = library.albums(service(), person(me))
    html = render_template("albums.html", albums=found, max_albums=library.MAX_ALBUMS,
                           max_name=library.MAX_ALBUM_NAME, messages=messages())
    return Response(html, mimetype="text/html")


@bp.route("/albums", methods=["POST"])
@page_user()
def create(me: SessionUser) -> Any:
    album = library.create_album(service(), person(me), request.form.get("name", ""))
    flash(f"Album {album.name} made. Pick uploads in My uploads and move them in.")
    return redirect("/albums", code=303)


@bp.route("/albums/<public_id>/<action>", methods=["POST"])
@page_user()
def change(me: SessionUser, public_id: str, action: str) -> Any:
    who, back = person(me), back_to("/albums")
    if action == "rename":
        album = library.rename_album(service(), who, public_id, request.form.get("name", ""))
        flash(f"Album renamed to {album.name}.")
    elif action in {"public", "private"}:
        album = library.set_public(service(), who, public_id, action == "public")
        flash(f"{album.name} is {action} now." + (" Anyone with its address can see it."
                                                  if action == "public" else ""))
    elif action == "delete":
        album = library.delete_album(service(), who, public_id)
        flash(f"Album {album.name} deleted. Its uploads are still in My uploads.")
        back = "/albums"
    else:
        abort(404)
    return redirect(back, code=303)


@bp.route("/a/<page_key>", methods=["GET"])
def album_page(page_key: str) -> Response:
    me = signed_in_user()
    who = person(me) if me is not None else None
    album = library.album_page(service(), page_key, who)
    if album is None:
        abort(404, "There is no such album, or it is private.")
    listing = Listing(user_id=album.user_id, album_id=album.id)
    found = library.page(service(), listing, site(), page_size(), cursor("before"), cursor("after"))
    kept = {"n": str(page_size())} if "n" in request.args else {}
    owner = who is not None and who.id == album.user_id
    html = render_template("album.html", album=album, page=found, owner=owner,
                           back=request.full_path.rstrip("?"), messages=messages(),
                           address=site().base_url + request.path,
                           **pager(found, request.path, kept))
    response = Response(html, mimetype="text/html")
    # the address is the key: no Referer carries it away, no index keeps it
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["X-Robots-Tag"] = "noindex, nofollow"
    if not album.is_public:
        response.headers["Cache-Control"] = "private, no-store"
    return response
