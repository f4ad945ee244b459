"""What monitoring asks of a running server: ``/healthz``, ``/readyz`` and ``/metrics``.

- ``GET /healthz``: the process answers (nothing else is asked; no database).
- ``GET /readyz``: the database answers, the store can be reached, and the data disk (and a local
  store's) has at least ``IMGZ_MIN_FREE_MB`` free; JSON with one entry per check, 200 or 503
  when one fails. The result is kept for a second, so polling it (or a flood of it) costs the
  database one read a second. Failures are named, never explained: the reason goes to the log.
- ``GET /metrics`` (``IMGZ_METRICS=1``): Prometheus's text format, for a direct loopback client
  that sent no forwarding header (behind a proxy on the same host every request comes from
  loopback, with such headers), or a request with ``Authorization: Bearer IMGZ_METRICS_TOKEN``.
"""
from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import shutil
import threading
import time
from typing import Any, Callable

from flask import Blueprint, Response, current_app, request

from . import db, metrics
from .accesslog import ENVIRON_FORWARDED, FORWARDING

bp = Blueprint("ops", __name__)
log = logging.getLogger("imgz")
READY_CACHE_SECONDS = 1.0
_NO_STORE = {"Cache-Control": "no-store"}


class Readiness:
    """The checks of ``/readyz``, run at most once per ``READY_CACHE_SECONDS``."""

    def __init__(self, checks: dict[str, Callable[[], None]]) -> None:
        self.checks = checks
        self._lock = threading.Lock()
        self._at = float("-inf")
        self._result: dict[str, dict[str, Any]] = {}
        self._failing: set[str] = set()

    def result(self) -> dict[str, dict[str, Any]]:
        with self._lock:  # one thread checks; the others wait a moment for its answer
            now = time.monotonic()
            if now - self._at >= READY_CACHE_SECONDS:
                self._result = self._run()
                self._at = time.monotonic()
            return self._result

    def _run(self) -> dict[str, dict[str, Any]]:
        result: dict[str, dict[str, Any]] = {}
        for name, check in self.checks.items():
            started = time.perf_counter()
            try:
                check()
            except Exception as exc:
                result[name] = {"ok": False, "error": "failed"}
                if name not in self._failing:
                    log.warning("readiness check %s failed: %s", name, exc)
                self._failing.add(name)
            else:
                result[name] = {"ok": True}
                if name in self._failing:
                    log.info("readiness check %s passes again", name)
                self._failing.discard(name)
            result[name]["seconds"] = round(time.perf_counter() - started, 4)
        return result


def readiness(cfg: Any, connections: db.LocalConnections, store: Any) -> Readiness:
    """The checks for a server: its database, its store, and free space where it writes."""
    floor = cfg.min_free_mb * 1_000_000

    def database() -> None:
        try:
            db.ready(connections)
        finally:
            connections.release()

    def disk() -> None:
        free = shutil.disk_usage(cfg.data_dir).free
        store_free = store.free_bytes()
        if store_free is not None:
            free = min(free, store_free)
        if free < floor:
            raise OSError(f"{free // 1_000_000} MB free, below IMGZ_MIN_FREE_MB={cfg.min_free_mb}")

    return Readiness({"database": database, "store": store.ready, "disk": disk})


@bp.route("/healthz", methods=["GET", "HEAD"])
def healthz() -> Response:
    return Response('{"status":"ok"}', mimetype="application/json", headers=_NO_STORE)


@bp.route("/readyz", methods=["GET", "HEAD"])
def readyz() -> Response:
    checks = current_app.config["IMGZ_READINESS"].result()
    ok = all(c["ok"] for c in checks.values())
    body = json.dumps({"status": "ok" if ok else "failing", "checks": checks})
    return Response(body, status=200 if ok else 503, mimetype="application/json", headers=_NO_STORE)


@bp.route("/metrics", methods=["GET"])
def metrics_page() -> Response:
    cfg = current_app.config["IMGZ"]
    if not cfg.metrics:
        return Response("Not Found\n", status=404, mimetype="text/plain")
    if not _may_scrape(cfg.metrics_token):
        return Response("Forbidden: /metrics answers a direct loopback client, or a request "
                        "with the metrics token\n", status=403, mimetype="text/plain",
                        headers={"WWW-Authenticate": "Bearer"} if cfg.metrics_token else {})
    return Response(metrics.exposition(), mimetype=metrics.CONTENT_TYPE, headers=_NO_STORE)


def _may_scrape(token: str) -> bool:
    sent = request.headers.get("Authorization", "")
    if token and sent:
        scheme, _, value = sent.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(),
                                                                   token.encode())
    environ = request.environ
    # waitress removes untrusted proxy headers before the application runs: its task notes them
    if environ.get(ENVIRON_FORWARDED) or any(f"HTTP_{name}" in environ for name in FORWARDING):
        return False
    try:
        return ipaddress.ip_address(environ.get("REMOTE_ADDR", "")).is_loopback
    except ValueError:
        return False
