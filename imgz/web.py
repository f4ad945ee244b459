"""The web application: settings, data directory, routes, the file responder and error pages."""
from __future__ import annotations

import functools
import json
import logging
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from PIL import Image
from flask import Flask, Request, Response, g, render_template, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.formparser import default_stream_factory
from werkzeug.middleware.proxy_fix import ProxyFix

from . import chevereto, config as config_mod, db, logpaths, metrics, scratch
from .errors import DatabaseError, ImgzError, TooBig
from .files import FileInfo, FileResponder
from .ratelimit import Limit, Limiter, SharedLimiter, parse_limit
from .service import Service
from .store import for_config as store_for
from .views import wants_json

log = logging.getLogger("imgz")
FILE_CACHE = 20_000
FILE_CACHE_SECONDS = 30
TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


class ImgzRequest(Request):
    """A request whose multipart file parts stream into the factory the view puts in the environ.

    Its form parser is not silent: the upload view tells a broken body from an empty one.
    """

    def make_form_data_parser(self) -> Any:
        parser = super().make_form_data_parser()
        parser.silent = False
        return parser

    def _get_file_stream(self, total_content_length: int | None, content_type: str | None,
                         filename: str | None = None, content_length: int | None = None) -> Any:
        factory = self.environ.get("imgz.stream_factory")
        if factory is None:
            return default_stream_factory(total_content_length, content_type, filename, content_length)
        return factory(total_content_length, content_type, filename, content_length)


def init_data(cfg: config_mod.Config) -> None:
    """Create the data layout and schema and the admin user; ``tmp`` is not touched.

    A data directory or database that cannot be used raises ConfigError naming its setting.
    Scratch folders are cleaned by those that write (``serve``, and commands that change files)
    with clean_scratch: a command that only reads must not take away a running server's files.
    """
    try:
        store_for(cfg).prepare()
    except OSError as exc:
        if cfg.storage == "s3":
            raise config_mod.refused("s3_bucket", cfg.s3_bucket, f"cannot use it: {exc}") from None
        raise config_mod.refused("data", cfg.data, f"cannot use it: {exc.strerror or exc}") from None
    setting = "database_url" if cfg.database_url else "db"
    try:
        if not cfg.database_url:
            Path(cfg.db).parent.mkdir(parents=True, exist_ok=True)
        conn = db.connect(cfg.database)
        try:
            db.migrate(conn)
            if db.get_user_by_name(conn, "admin") is None:
                db.add_user(conn, "admin", True, datetime.now(timezone.utc))
        finally:
            conn.close()
    except db.MissingDriver as exc:
        raise config_mod.refused(setting, cfg.database, f"PostgreSQL needs {exc.package}, which is not "
                                 f"installed: pip install -r {exc.requirements}") from None
    except (OSError, ImgzError) as exc:  # the database layer's errors say why in detail or cause
        reason = (getattr(exc, "strerror", None) or getattr(exc, "detail", None) or exc.__cause__
                  or exc)
        reason = (str(reason).strip().splitlines() or [""])[0]  # the driver's first line
        raise config_mod.refused(setting, cfg.database, f"cannot open it: {reason}") from None


def clean_scratch(cfg: config_mod.Config) -> None:
    """Remove the scratch folders of processes that are gone; a live process's folder stays."""
    try:
        scratch.clean(cfg.data_dir)
    except OSError as exc:
        raise config_mod.refused("data", cfg.data, f"cannot use it: {exc.strerror or exc}") from None


def create_app(overrides: Mapping[str, Any] | None = None, *,
               environ: Mapping[str, str] | None = None,
               cfg: config_mod.Config | None = None, jobs: bool = True) -> Flask:
    """Build the application: settings (environment, then overrides), data dir, routes, handlers.

    With ``jobs`` (the default) the process's scheduler starts sweeping expired uploads.
    """
    cfg = cfg or config_mod.load(environ, overrides=overrides)
    init_data(cfg)
    clean_scratch(cfg)
    try:
        scratch.folder(cfg.data_dir)  # made now: a tmp that cannot be written stops the start
    except OSError as exc:
        raise config_mod.refused("data", cfg.data, f"cannot use it: {exc.strerror or exc}") from None
    # Our own header check refuses large images first; Pillow's guard must not undercut the setting.
    Image.MAX_IMAGE_PIXELS = max(cfg.max_pixels, Image.MAX_IMAGE_PIXELS or 0)
    logpaths.install()  # waitress's lines name paths too
    app = Flask(__name__, template_folder=str(TEMPLATES), static_folder=None)
    app.request_class = ImgzRequest
    app.config["IMGZ"] = cfg
    # PostgreSQL's pool: a connection for each thread of pages and files, more for uploads (their
    # own threads), the server's loop and the scheduler
    connections = db.LocalConnections(cfg.database, pool_size=cfg.threads,
                                      max_overflow=cfg.workers + cfg.upload_queue + 4)
    service = Service(cfg, connections.get)
    app.config["IMGZ_CONNECTIONS"] = connections
    app.config["IMGZ_SERVICE"] = service

    # With a public bucket or a CDN in front of it, answers and pages point there: at the object.
    files_url = f"{cfg.public_url}/{cfg.s3_prefix}" if cfg.public_url else ""

    def site() -> chevereto.Site:
        base = cfg.base_url or request.host_url.rstrip("/")
        return chevereto.Site(base, cfg.route_image, cfg.route_video, cfg.timezone, files_url)

    app.config["IMGZ_SITE"] = site
    for name in ("key", "ip"):
        limit = parse_limit(getattr(cfg, f"rate_limit_{name}"))
        app.config[f"IMGZ_LIMIT_{name.upper()}"] = _limiter(limit, name, connections) if limit else None

    from . import access, albumpages, api, manage, ops, signin, tus, uploadpage, views

    app.config["IMGZ_READINESS"] = ops.readiness(cfg, connections, service.store)
    if cfg.metrics:
        metrics.watch_queue(service.admission.depth, service.admission.limit)

    signin.setup(app, lambda limit, name: _limiter(limit, name, connections))
    app.register_blueprint(access.bp)
    app.register_blueprint(manage.bp)
    app.register_blueprint(albumpages.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(tus.bp)
    app.register_blueprint(views.bp)
    app.register_blueprint(uploadpage.bp)
    app.register_blueprint(ops.bp)
    views.register(app, cfg.route_image, cfg.route_video)

    _register_errors(app)

    def fresh(relpath: str) -> FileInfo | None:
        found = db.file_lookup(connections.get(), relpath)
        return None if found is None else FileInfo(mime=found.mime, expires_at=found.expires_at)

    @functools.lru_cache(maxsize=FILE_CACHE)
    def known_file(relpath: str, era: tuple[int, int]) -> FileInfo:
        found = fresh(relpath)
        if found is None:
            raise LookupError(relpath)  # not cached: the file may be placed a moment later
        return found

    def remembered(relpath: str) -> FileInfo | None:
        # One server on its own database: a file's type and expiry never change and its name is
        # never reused, so they are remembered; expiry is checked on every request. A deletion
        # here starts a new era at once, and the era also turns every FILE_CACHE_SECONDS, so a
        # file whose row is gone is not served even when it could not be removed, or was deleted
        # by a command.
        era = (service.deletions, int(time.monotonic() // FILE_CACHE_SECONDS))
        try:
            return known_file(relpath, era)
        except LookupError:
            return None

    # Processes sharing a database server are one server: a delete or an expiry through any of
    # them takes effect in all at once, so each request asks the database.
    lookup = fresh if connections.pooled else remembered
    app.wsgi_app = FileResponder(app.wsgi_app, store=service.store, lookup=lookup,
                                 accel=cfg.accel, now=service.now)
    app.wsgi_app = _Outer(app.wsgi_app, app, connections)
    if jobs:
        from . import jobs as jobs_mod

        jobs_mod.start(service)
    if cfg.trust_proxy:
        n = cfg.trust_proxy
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n, x_port=n)
    return app


def _limiter(limit: Limit, kind: str, connections: db.LocalConnections) -> Limiter | SharedLimiter:
    """In memory for one server on SQLite; in the database when processes share it."""
    if not connections.pooled:
        return Limiter(limit)
    conn = connections.get()
    db.prepare_buckets(conn)
    connections.release()

    def take(name: str, capacity: float, rate: float, now: float) -> float:
        return db.take_token(connections.get(), f"{kind}:{name}", capacity, rate, now)

    return SharedLimiter(limit, take, lambda now: db.prune_buckets(connections.get(), now))


class _Outer:
    """Around the file responder and the application: a database error met in front of Flask
    (a file's lookup) is answered as the application answers it (503 with Retry-After when the
    database is unreachable); and the thread's database connection goes back to the pool once
    the answer is made (files are streamed after that with none held)."""

    def __init__(self, wsgi_app: Any, app: Flask, connections: db.LocalConnections) -> None:
        self.wsgi_app, self.app, self.connections = wsgi_app, app, connections

    def __call__(self, environ: dict, start_response: Any) -> Any:
        try:
            return self.wsgi_app(environ, start_response)
        except ImgzError as exc:
            with self.app.request_context(environ):
                response = _error_response(exc.status, exc.message, exc.code)
                response.headers.update(exc.headers)
            return response(environ, start_response)
        finally:
            self.connections.release()


def _is_api() -> bool:
    if request.path.startswith("/api/") or request.path == "/sharex.sxcu":
        return True
    # a script deleting with Accept: application/json hears of a failure in JSON too
    return "/delete/" in request.path and request.method != "GET" and wants_json()


def _log_path() -> str:
    """The request path for the log: a delete secret, a one-time link or a resumable upload's id
    never reaches it."""
    return logpaths.mask(request.path)


def _error_response(status: int, message: str, code: int) -> Response:
    metrics.error(status, code)
    if _is_api():
        fmt = g.get("api_format", "json")
        if fmt in {"txt", "redirect"}:
            return Response(message, status=status, content_type="text/plain; charset=utf-8")
        return Response(json.dumps(chevereto.error_body(status, message, code), ensure_ascii=False),
                        status=status, mimetype="application/json")
    html = render_template("error.html", status=status, message=message,
                           reason=chevereto.reason(status))
    return Response(html, status=status, mimetype="text/html")


def _register_errors(app: Flask) -> None:
    cfg = app.config["IMGZ"]

    @app.errorhandler(ImgzError)
    def imgz_error(exc: ImgzError) -> Response:
        if exc.__cause__ is not None:
            # e.g. ffmpeg's own words on a refused video: for the log, never for the client
            log.warning("%s %s refused (%s): %s", request.method, _log_path(), exc.message, exc.__cause__)
        response = _error_response(exc.status, exc.message, exc.code)
        response.headers.update(exc.headers)
        return response

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(exc: RequestEntityTooLarge) -> Response:
        err = TooBig(cfg.max_upload_mb)
        return _error_response(err.status, err.message, err.code)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        if _is_api():
            response = _error_response(status, exc.name, status)
        else:
            response = _error_response(status, exc.description or exc.name, status)
        if status == 405 and hasattr(exc, "valid_methods") and exc.valid_methods:
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        return response

    @app.errorhandler(DatabaseError)
    def database_error(exc: DatabaseError) -> Response:
        log.error("database error on %s %s: %s", request.method, _log_path(), exc.detail,
                  exc_info=exc)
        return _error_response(exc.status, exc.message, exc.code)

    @app.errorhandler(Exception)
    def crash(exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, _log_path())
        return _error_response(500, "Internal error", 500)

    @app.teardown_request
    def drop_temp_files(exc: BaseException | None) -> None:
        for writer in g.get("imgz_writers", ()):
            writer.discard()
