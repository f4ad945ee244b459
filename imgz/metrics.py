"""The process's Prometheus metrics (prometheus-client): what is counted, and its exposition.

Each ``python app.py serve`` process counts its own and is scraped at its own address (there is
no shared file between processes, so no multiprocess mode; Prometheus adds the instances up).
Media worker processes count nothing: their work is timed by the server process that waits for it.

Counters and histograms of prometheus-client take a lock per update, so threads may record at
once. Label values are few and fixed: a route class (``route_class``), an HTTP status, a kind.
"""
from __future__ import annotations

from typing import Any, Callable

from prometheus_client import (CollectorRegistry, Counter, Gauge, Histogram, PlatformCollector,
                               ProcessCollector, disable_created_metrics, generate_latest)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from .layout import URL_PREFIX

disable_created_metrics()  # no *_created series: a scrape is half as long
REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)

_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_WORK = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_SIZES = (10e3, 100e3, 1e6, 10e6, 100e6, 1e9)

REQUESTS = Counter("imgz_http_requests", "Requests answered, by route class and HTTP status.",
                   ("route", "status"), registry=REGISTRY)
LATENCY = Histogram("imgz_http_request_duration_seconds", "Time to answer a request (until "
                    "its body is handed to the server to send), by route class.",
                    ("route",), buckets=_LATENCY, registry=REGISTRY)
SENT = Counter("imgz_http_response_bytes", "Bytes of response bodies, by route class.",
               ("route",), registry=REGISTRY)
UPLOADS = Counter("imgz_uploads", "Uploads stored, by kind (image, video) and stored format.",
                  ("kind", "format"), registry=REGISTRY)
UPLOAD_BYTES = Histogram("imgz_upload_stored_bytes", "Bytes of each stored upload (its original "
                         "file), by kind.", ("kind",), buckets=_SIZES, registry=REGISTRY)
UPLOAD_SECONDS = Histogram("imgz_upload_processing_seconds", "Time from an upload's file being "
                           "read to its row being stored (media work included), by kind.",
                           ("kind",), buckets=_WORK, registry=REGISTRY)
QUEUE = Gauge("imgz_upload_queue_depth", "Uploads admitted to processing: in a media worker or "
              "waiting for one.", registry=REGISTRY)
QUEUE_LIMIT = Gauge("imgz_upload_queue_limit", "Uploads that may be admitted at once "
                    "(IMGZ_WORKERS + IMGZ_UPLOAD_QUEUE); more are answered 503.", registry=REGISTRY)
SWEEPS = Counter("imgz_expiry_sweeps", "Expiry sweeps run by this process.", registry=REGISTRY)
EXPIRED = Counter("imgz_expiry_removed_uploads", "Expired uploads removed by this process's "
                  "sweeps.", registry=REGISTRY)
ERRORS = Counter("imgz_errors", "Error answers made by the application, by HTTP status and "
                 "Chevereto error code.", ("status", "code"), registry=REGISTRY)

CONTENT_TYPE = CONTENT_TYPE_LATEST
CLASSES = ("file", "upload", "tus", "api", "viewer", "delete", "static", "health", "metrics", "page")


def exposition() -> bytes:
    """Every metric of this process in Prometheus's text format."""
    return generate_latest(REGISTRY)


def route_class(path: str, viewer_routes: frozenset[str]) -> str:
    """The class a request path is counted under; never the path itself (unbounded)."""
    if path.startswith(URL_PREFIX):
        return "file"
    if path.startswith("/api/1/upload") or path == "/upload":
        return "upload"
    if path.startswith("/api/1/tus"):
        return "tus"
    if path.startswith("/api/"):
        return "api"
    if "/delete/" in path:
        return "delete"
    if path.startswith("/static/"):
        return "static"
    if path in ("/healthz", "/readyz"):
        return "health"
    if path == "/metrics":
        return "metrics"
    if path.partition("/")[2].partition("/")[0] in viewer_routes:
        return "viewer"
    return "page"


_children: dict[tuple[str, int], tuple[Any, Any, Any]] = {}


def answered(route: str, status: int, seconds: float, sent: int) -> None:
    """Count one answered request (the labelled series are looked up once, then kept)."""
    found = _children.get((route, status))
    if found is None:
        found = _children[(route, status)] = (REQUESTS.labels(route, str(status)),
                                              LATENCY.labels(route), SENT.labels(route))
    requests, latency, sent_bytes = found
    requests.inc()
    latency.observe(seconds)
    if sent:
        sent_bytes.inc(sent)


def stored(kind: str, fmt: str, size: int, seconds: float) -> None:
    UPLOADS.labels(kind, fmt).inc()
    UPLOAD_BYTES.labels(kind).observe(size)
    UPLOAD_SECONDS.labels(kind).observe(seconds)


def swept(removed: int) -> None:
    SWEEPS.inc()
    if removed:
        EXPIRED.inc(removed)


def error(status: int, code: int) -> None:
    ERRORS.labels(str(status), str(code)).inc()


def watch_queue(depth: Callable[[], float], limit: int) -> None:
    """Read the upload queue's depth from ``depth`` at each scrape (the latest app's)."""
    QUEUE.set_function(depth)
    QUEUE_LIMIT.set(limit)
