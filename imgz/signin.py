"""Signing in from a browser: the session cookie, Flask-Login's user, CSRF, and the pages that
sign in and out, set a password from a one-time link and change it.

A session is a row (``db.sessions``) named by the SHA-256 of a random token; the cookie, signed
with the install's secret, carries the token. Every process sharing the database knows every
session, and ending one (sign-out, a new password, a disabled user) takes effect at once.
"""
from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from functools import wraps
from typing import Any, Callable
from urllib.parse import urlsplit

from flask import (Blueprint, Flask, Response, abort, current_app, g, redirect, render_template,
                   request, session)
from flask.sessions import SecureCookieSessionInterface
from flask_login import LoginManager, UserMixin, current_user, login_user, logout_user
from flask_wtf.csrf import CSRFError, CSRFProtect, same_origin, validate_csrf
from wtforms import ValidationError

from . import db, ids, passwords, people
from .errors import RateLimited
from .ratelimit import Limit
from .records import User

bp = Blueprint("signin", __name__)
SEEN_STEP = 60  # seconds between two notes of when a session was last used
# Sign-in attempts, per address and per account name: bursts, then growing waits, never a lock.
ATTEMPT_LIMITS = (("signin-ip", Limit(20, 60)), ("signin-ip-hour", Limit(100, 3600)),
                  ("signin-user", Limit(5, 60)), ("signin-user-hour", Limit(30, 3600)))


class SessionUser(UserMixin):
    """The signed-in user of this request; its id for Flask-Login is the session's token."""

    def __init__(self, user: User, token: str) -> None:
        self.user, self.token = user, token

    def get_id(self) -> str:
        return self.token

    @property
    def id(self) -> int:
        return self.user.id

    @property
    def name(self) -> str:
        return self.user.name

    @property
    def is_admin(self) -> bool:
        return self.user.is_admin


class _Cookies(SecureCookieSessionInterface):
    """The session cookie is Secure whenever the request came over HTTPS (directly or through a
    trusted proxy) or the base URL is https."""

    def get_cookie_secure(self, app: Flask) -> bool:
        base = app.config["IMGZ"].base_url
        return base.startswith("https://") or request.is_secure


def _now() -> datetime:
    return current_app.config["IMGZ_SERVICE"].now()


def _conn() -> db.Connection:
    return current_app.config["IMGZ_SERVICE"].connection()


def setup(app: Flask, limiter_for: Callable[[Limit, str], Any]) -> None:
    """Cookie, secret, Flask-Login and CSRF for the app; the sign-in pages."""
    cfg = app.config["IMGZ"]
    conn = app.config["IMGZ_CONNECTIONS"].get()
    try:
        app.secret_key = cfg.secret_key or db.secret(conn, "session", secrets.token_urlsafe(48))
    finally:
        app.config["IMGZ_CONNECTIONS"].release()
    app.config.update(
        SESSION_COOKIE_NAME="imgz_session", SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax", PERMANENT_SESSION_LIFETIME=timedelta(days=cfg.session_days),
        # a page left open for hours still posts: the token lives as long as the session
        WTF_CSRF_TIME_LIMIT=None, WTF_CSRF_CHECK_DEFAULT=False,
        WTF_CSRF_HEADERS=["X-CSRFToken"])
    app.session_interface = _Cookies()
    CSRFProtect(app)
    manager = LoginManager(app)
    manager.session_protection = None  # a phone changes address all day; rows end sessions
    manager.user_loader(_load_user)
    app.config["IMGZ_SIGNIN_LIMITS"] = [(name, limiter_for(limit, name)) for name, limit in ATTEMPT_LIMITS]
    app.register_blueprint(bp)

    @app.context_processor
    def _signed_in() -> dict[str, Any]:
        return {"me": signed_in_user()}


def _load_user(token: str) -> SessionUser | None:
    now = _now()
    found = db.session_user(_conn(), ids.digest(token), now)
    if found is None:
        return None
    user, seen = found
    if (now - seen).total_seconds() >= SEEN_STEP:
        db.touch_session(_conn(), ids.digest(token), now)
    return SessionUser(user, token)


def signed_in_user() -> SessionUser | None:
    """The user signed in by this request's cookie, for showing pages (not for acting: see auth)."""
    if "imgz_me" not in g:
        user = current_user._get_current_object() if session.get("_user_id") else None
        g.imgz_me = user if isinstance(user, SessionUser) else None
    return g.imgz_me


def csrf_valid(header_only: bool = False) -> bool:
    """Whether this POST carries the session's CSRF token (X-CSRFToken header or form field).

    ``header_only`` looks at the header alone and leaves the body unread (before an upload's
    body is read, its stream must not be parsed here).
    """
    if not header_only:
        try:
            current_app.extensions["csrf"].protect()
        except CSRFError:
            return False
        return True
    try:
        validate_csrf(request.headers.get("X-CSRFToken"))
    except ValidationError:
        return False
    # as Flask-WTF does over HTTPS: the request must come from a page of this origin
    return not request.is_secure or same_origin(request.referrer or "", f"https://{request.host}/")


def require_csrf() -> None:
    if not csrf_valid():
        abort(400, "This form has expired or did not come from this site. Reload the page and try again.")


def page_user(admin: bool = False) -> Callable:
    """For pages of a signed-in user: GETs without one go to the sign-in page; POSTs need the
    CSRF token (checked before anything is done)."""
    def wrap(view: Callable) -> Callable:
        @wraps(view)
        def inner(*args: Any, **kwargs: Any) -> Any:
            me = signed_in_user()
            if me is None:
                if request.method in {"GET", "HEAD"}:
                    return redirect(f"/signin?next={_local(request.full_path)}", code=303)
                abort(401, "Sign in first.")
            if request.method not in {"GET", "HEAD"}:
                require_csrf()
            if admin and not me.is_admin:
                abort(403, "Only admins can see this page.")
            return view(me, *args, **kwargs)
        return inner
    return wrap


def _local(target: str | None) -> str:
    """A path on this site to go to after signing in; anything else is the start page."""
    target = (target or "").rstrip("?") or "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _throttle(name: str) -> None:
    address = request.remote_addr or ""
    wait = 0
    for kind, limiter in current_app.config["IMGZ_SIGNIN_LIMITS"]:
        if limiter is None:
            continue
        wait = max(wait, limiter.hit(address if kind.startswith("signin-ip") else name.casefold()))
    if wait:
        raise RateLimited(wait)


def start_session(user: User) -> None:
    """Sign this browser in as ``user`` with a new session (a new token and a new cookie)."""
    session.clear()  # nothing of the signed-out cookie carries over, the CSRF token neither
    token = secrets.token_urlsafe(32)
    now = _now()
    db.add_session(_conn(), ids.digest(token), user.id, now, now + timedelta(days=current_app.config["IMGZ"].session_days))
    session.permanent = True
    login_user(SessionUser(user, token))
    g.imgz_me = SessionUser(user, token)


@bp.route("/signin", methods=["GET", "POST"])
def signin() -> Any:
    target = _local(request.values.get("next"))
    if request.method == "GET":
        if signed_in_user() is not None:
            return redirect(target, code=303)
        return render_template("signin.html", next=target, name="", error=None)
    require_csrf()
    name = request.form.get("name", "").strip()[:200]
    password = request.form.get("password", "")
    try:
        _throttle(name)
    except RateLimited as exc:
        html = render_template("signin.html", next=target, name=name, error=(
            f"Too many sign-in attempts. Wait {exc.headers['Retry-After']} seconds and try again."))
        return Response(html, status=429, headers=exc.headers, mimetype="text/html")
    conn = _conn()
    found = db.password_hash(conn, name) if name else None
    if not passwords.verify(found[1] if found else None, password):
        html = render_template("signin.html", next=target, name=name, error="Wrong name or password.")
        return Response(html, status=401, mimetype="text/html")
    user_id, hashed = found
    if passwords.outdated(hashed):
        db.set_password(conn, user_id, passwords.hash_password(password))
    start_session(db.get_user(conn, user_id))
    return redirect(target, code=303)


@bp.route("/signout", methods=["POST"])
def signout() -> Any:
    require_csrf()
    me = signed_in_user()
    if me is not None:
        if request.form.get("everywhere"):
            db.end_sessions(_conn(), me.id)
        else:
            db.end_session(_conn(), ids.digest(me.token))
    logout_user()
    session.clear()
    return redirect("/", code=303)


@bp.route("/password/<token>", methods=["GET", "POST"])
def password_link(token: str) -> Any:
    """A one-time link: opening it shows the form (a chat preview uses nothing); posting the
    form sets the password, uses the link up and signs in."""
    conn, now = _conn(), _now()
    user = db.link_user(conn, ids.digest(token), now)
    gone = "This link was used already or has expired. Ask for a new one."
    if user is None:
        abort(404, gone)
    if request.method == "GET":
        return render_template("password.html", user=user, error=None, link=True)
    require_csrf()
    new, again = request.form.get("password", ""), request.form.get("again", "")
    problem = passwords.problem(new, again)
    if problem:
        return Response(render_template("password.html", user=user, error=problem, link=True),
                        status=400, mimetype="text/html")
    if people.set_password_by_link(conn, token, new, now) is None:
        abort(404, gone)
    start_session(db.get_user(conn, user.id))
    return redirect("/", code=303)


@bp.route("/account", methods=["GET", "POST"])
@page_user()
def account(me: SessionUser) -> Any:
    conn, now = _conn(), _now()
    done = error = None
    status = 200
    if request.method == "POST":
        found = db.password_hash(conn, me.name)
        new, again = request.form.get("password", ""), request.form.get("again", "")
        if not passwords.verify(found[1] if found else None, request.form.get("current", "")):
            error, status = "The current password is wrong.", 400
        elif (error := passwords.problem(new, again)) is not None:
            status = 400
        else:
            db.set_password(conn, me.id, passwords.hash_password(new))
            ended = db.end_sessions(conn, me.id, keep=ids.digest(me.token))
            done = f"Password changed. {ended} other session{'s' if ended != 1 else ''} signed out."
    html = render_template("account.html", error=error, done=done,
                           sessions=db.count_sessions(conn, me.id, now))
    return Response(html, status=status, mimetype="text/html")
