"""Who can upload, from the browser: a user's API keys (/keys) and, for admins, the users (/users).

Every change is a POST form with the session's CSRF token (``signin.page_user``). A new key and
a one-time link are shown once, on the page that made them, and never again.
"""
from __future__ import annotations

import json
import re
from typing import Any

from flask import Blueprint, Response, abort, current_app, render_template, request

from . import db, ids, people, sharex
from .chevereto import size_formatted
from .page import local_time
from .signin import SessionUser, page_user

bp = Blueprint("access", __name__)

LABEL_LENGTH = 80
MAX_LIVE_KEYS = 100  # per user: a page that makes keys is no way to fill a database
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def _service() -> Any:
    return current_app.config["IMGZ_SERVICE"]


def _base() -> str:
    return current_app.config["IMGZ_SITE"]().base_url


def _when(moment: Any) -> str:
    return local_time(moment, current_app.config["IMGZ"].timezone) or "never"


def _page(template: str, status: int = 200, **values: Any) -> Response:
    return Response(render_template(template, when=_when, **values), status=status, mimetype="text/html")


# -- keys ----------------------------------------------------------------------------------------

def _keys_page(me: SessionUser, status: int = 200, **values: Any) -> Response:
    keys = db.list_keys(_service().connection(), me.id)
    live = [k for k in keys if k.revoked_at is None]
    revoked = [k for k in keys if k.revoked_at is not None][-20:]
    return _page("keys.html", status, live=live, revoked=revoked, base=_base(), **values)


def _new_key(me: SessionUser, label: str) -> str:
    service = _service()
    conn = service.connection()
    if sum(1 for k in db.list_keys(conn, me.id) if k.revoked_at is None) >= MAX_LIVE_KEYS:
        abort(400, f"You have {MAX_LIVE_KEYS} keys already: revoke one first.")
    key = ids.new_api_key()
    db.add_key(conn, me.id, ids.digest(key), label, service.now())
    return key


@bp.route("/keys", methods=["GET", "POST"])
@page_user()
def keys(me: SessionUser) -> Response:
    if request.method == "GET":
        return _keys_page(me)
    label = request.form.get("label", "").strip()[:LABEL_LENGTH]
    return _keys_page(me, status=201, new_key=_new_key(me, label), new_label=label)


@bp.route("/keys/<int:key_id>/revoke", methods=["POST"])
@page_user()
def revoke(me: SessionUser, key_id: int) -> Response:
    service = _service()
    # only the user's own keys: someone else's id is not found
    if not db.revoke_key(service.connection(), key_id, service.now(), user_id=me.id):
        abort(404, "There is no such key of yours, or it is revoked already.")
    return _keys_page(me, done="The key is revoked: uploads with it are refused from now on.")


@bp.route("/keys/sharex", methods=["POST"])
@page_user()
def sharex_file(me: SessionUser) -> Response:
    """A new key, made for ShareX, delivered in its uploader file (the key is in no page)."""
    base = _base()
    problem = sharex.unusable_base(base)
    if problem is not None:
        abort(400, f"No uploader for {base}: {problem}. Open this page by an address that "
                   "ShareX can reach, or set IMGZ_BASE_URL.")
    key = _new_key(me, "ShareX")
    response = Response(json.dumps(sharex.uploader(base, key), indent=2), mimetype="application/json")
    response.headers["Content-Disposition"] = f'attachment; filename="{sharex.filename(base)}"'
    response.headers["Cache-Control"] = "no-store"
    return response


# -- users (admins) ------------------------------------------------------------------------------

def _users_page(status: int = 200, **values: Any) -> Response:
    summaries = db.list_users(_service().connection())
    return _page("users.html", status, users=summaries, size=size_formatted, **values)


def _link_for(user_id: int, name: str, done: str) -> Response:
    service = _service()
    token = people.new_link(service.connection(), user_id, service.now())
    return _users_page(link=people.link_url(_base(), token), link_user=name, done=done)


@bp.route("/users", methods=["GET", "POST"])
@page_user(admin=True)
def users(me: SessionUser) -> Response:
    if request.method == "GET":
        return _users_page()
    name = request.form.get("name", "").strip()
    if not _NAME.fullmatch(name):
        return _users_page(status=400, error="A name has 1 to 64 letters, digits, dots, dashes or "
                                             "underscores, and starts with a letter or digit.")
    service = _service()
    conn = service.connection()
    if db.get_user_by_name(conn, name) is not None:
        return _users_page(status=409, error=f"There is a user called {name} already.")
    user_id = db.add_user(conn, name, bool(request.form.get("admin")), service.now())
    return _link_for(user_id, name, f"{name} is added. Send them this link to set their password:")


def _other_user(me: SessionUser, user_id: int) -> Any:
    user = db.get_user(_service().connection(), user_id)
    if user is None:
        abort(404, "There is no such user.")
    if user.id == me.id:
        abort(400, "Not on your own account: ask another admin, or use python app.py user.")
    return user


@bp.route("/users/<int:user_id>/<action>", methods=["POST"])
@page_user(admin=True)
def user_action(me: SessionUser, user_id: int, action: str) -> Response:
    service = _service()
    conn = service.connection()
    if action == "link":
        user = db.get_user(conn, user_id)
        if user is None:
            abort(404, "There is no such user.")
        return _link_for(user.id, user.name, f"A one-time link for {user.name}, valid for an hour:")
    user = _other_user(me, user_id)
    if action == "disable":
        people.disable(conn, user.id, service.now())
        done = f"{user.name} is disabled: signed out everywhere, keys refused. Their uploads stay."
    elif action == "enable":
        people.enable(conn, user.id)
        done = f"{user.name} is enabled again."
    elif action == "admin":
        db.set_admin(conn, user.id, True)
        done = f"{user.name} is an admin now."
    elif action == "unadmin":
        db.set_admin(conn, user.id, False)
        done = f"{user.name} is no longer an admin."
    else:
        abort(404)
    return _users_page(done=done)
