"""The expiry sweep on an interval, run by one APScheduler BackgroundScheduler per process; it
also removes resumable uploads abandoned for a day (resumable.sweep: rows, bytes, a bucket's
multipart uploads), whose rows' leases keep two processes from removing one twice.

The schedule keeps no state of its own: the database's expiry index is the queue, so a restart
loses nothing. Two processes never sweep at the same time: on SQLite they take in turn a lock of
the data directory they share (scratch.exclusive); processes sharing a PostgreSQL database, on one
host or many, take the database's own lock batch by batch (``Service.purge_expired``).
"""
from __future__ import annotations

import atexit
import logging
import os
import threading
from datetime import datetime, timezone

from apscheduler.schedulers.background import BackgroundScheduler

from . import metrics, resumable, scratch
from .service import Service

log = logging.getLogger("imgz.jobs")
_lock = threading.Lock()
_scheduler: BackgroundScheduler | None = None
_owner_pid: int | None = None


def sweep(service: Service) -> int | None:
    """Run one sweep unless another process holds the data dir's lock; return the count or None."""
    if service.config.database_url:
        removed = service.purge_expired()  # the database's lock, batch by batch
    else:
        with scratch.exclusive(service.data, "expiry") as taken:
            if not taken:
                log.info("expiry sweep skipped: another process is sweeping %s", service.config.data)
                return None
            removed = service.purge_expired()
    metrics.swept(removed)
    if removed:
        log.info("expiry sweep removed %d expired upload%s", removed, "" if removed == 1 else "s")
    service.prune_copies()
    service.prune_sign_ins()
    resumable.sweep(service)
    return removed


def _safe_sweep(service: Service) -> None:
    try:
        sweep(service)
    except Exception:  # the next round tries again; a crash here must not stop the scheduler
        log.exception("expiry sweep failed")


def start(service: Service) -> BackgroundScheduler:
    """Start this process's scheduler (once) and add the sweep for this service's data dir."""
    global _scheduler, _owner_pid
    with _lock:
        # After a fork the parent's scheduler thread does not exist in the child: start anew.
        if _scheduler is None or _owner_pid != os.getpid():
            _scheduler = BackgroundScheduler(daemon=True, timezone="UTC")
            _scheduler.start()
            _owner_pid = os.getpid()
            atexit.register(stop)
        _scheduler.add_job(_safe_sweep, "interval", args=[service],
                           seconds=service.config.expiry_interval, id=f"expire:{service.config.data}",
                           replace_existing=True, max_instances=1, coalesce=True,
                           # the first sweep right away: what expired while the server was down
                           next_run_time=datetime.now(timezone.utc))
        return _scheduler


def stop() -> None:
    global _scheduler
    with _lock:
        if _scheduler is not None and _owner_pid == os.getpid():
            _scheduler.shutdown(wait=True)
        _scheduler = None
