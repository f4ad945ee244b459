"""The "My uploads" page (/uploads): a person's uploads in a grid, newest first, a page at a time,
filtered by album, tag, kind and words; picked by their checkboxes to be deleted or moved in and
out of albums. Admins also see everyone's (/uploads?all=1) and may delete any.

Filters are a GET form, so a filtered page is a link; every change is a POST with the session's
CSRF token (``signin.page_user``), which answers with a redirect back to the page it came from.
The rules are ``library``'s; this module reads forms and renders pages.
"""
from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, abort, current_app, flash, get_flashed_messages, redirect, render_template, request

from . import db, library
from .chevereto import Site
from .library import Person
from .signin import SessionUser, page_user

bp = Blueprint("manage", __name__)

MAX_PAGE_SIZE = 200
_CURSOR = re.compile(r"[0-9]{1,12}")
_BACK = re.compile(r"/(uploads|a/[A-Za-z0-9_-]{1,64})(\?[^\\\s]*)?")


def service() -> Any:
    return current_app.config["IMGZ_SERVICE"]


def site() -> Site:
    return current_app.config["IMGZ_SITE"]()


def person(me: SessionUser) -> Person:
    return Person(me.id, me.is_admin)


def cursor(name: str) -> int | None:
    value = request.args.get(name, "")
    return int(value) if _CURSOR.fullmatch(value) else None


def page_size() -> int:
    value = request.args.get("n", "")
    return min(int(value), MAX_PAGE_SIZE) if value.isdigit() and 0 < int(value) <= 9999 else library.PAGE_SIZE


def pager(found: library.Page, path: str, kept: dict[str, str]) -> dict[str, str | None]:
    """The links to the older and newer pages, keeping the filters (and page size) shown."""
    def link(name: str, value: int | None) -> str | None:
        return None if value is None else f"{path}?{urlencode({**kept, name: value})}"
    return {"older_url": link("before", found.older), "newer_url": link("after", found.newer)}


def back_to(default: str) -> str:
    """Where a form goes back to: the page it was on (one of these pages), else ``default``."""
    target = request.form.get("back", "")
    return target if _BACK.fullmatch(target) else default


def picked() -> list[str]:
    return [v for v in request.form.getlist("id") if v][:db.MAX_PAGE + 1]


def messages() -> list[str]:
    return [str(m) for m in get_flashed_messages()]


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


@bp.route("/uploads", methods=["GET"])
@page_user()
def uploads(me: SessionUser) -> Response:
    everyone = request.args.get("all") == "1"
    fields = {name: request.args.get(name, "").strip()[:200] for name in ("album", "tag", "kind", "q")}
    listing = library.listing_for(service(), person(me), everyone, fields["album"], fields["tag"],
                                  fields["kind"], fields["q"])
    found = library.page(service(), listing, site(), page_size(), cursor("before"), cursor("after"))
    kept = {name: value for name, value in fields.items() if value}
    if everyone:
        kept["all"] = "1"
    if "n" in request.args:
        kept["n"] = str(page_size())
    albums = library.album_choices(service(), person(me))
    html = render_template("uploads.html", page=found, fields=fields, everyone=everyone, albums=albums,
                           filtered=any(fields.values()), back=request.full_path.rstrip("?"),
                           messages=messages(), **pager(found, "/uploads", kept))
    return Response(html, mimetype="text/html")


@bp.route("/uploads", methods=["POST"])
@page_user()
def act(me: SessionUser) -> Any:
    """Delete (after a confirmation page), move into an album, or take out of albums."""
    action, ids = request.form.get("action", ""), picked()
    back = back_to("/uploads")
    if not ids:
        flash("Tick the uploads to act on first: nothing was changed.")
        return redirect(back, code=303)
    if action == "delete":
        if request.form.get("confirm") != "1":
            chosen = library.chosen(service(), person(me), ids, any_owner=True)
            return render_template("confirm.html", chosen=chosen, back=back)
        done = library.delete(service(), person(me), ids)
        flash(f"{_plural(done, 'upload')} deleted.")
    elif action == "move":
        album = library.own_album(service(), person(me), request.form.get("to", ""))
        moved = library.move(service(), person(me), ids, album.public_id)
        flash(f"{_plural(moved, 'upload')} moved to {album.name}.")
    elif action == "remove":
        moved = library.move(service(), person(me), ids, None)
        flash(f"{_plural(moved, 'upload')} taken out of their albums.")
    else:
        abort(400, "Pick Delete, Move to album or Remove from album.")
    return redirect(back, code=303)
