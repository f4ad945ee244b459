"""Secrets that travel in request paths, kept out of the logs.

A delete URL's secret, a one-time password link and a resumable upload's id each grant what they
name to whoever holds them, so no log line carries one: the application's own lines write paths
through ``mask``, and ``install`` puts a filter on waitress's logger, whose lines name the path
of a request it failed to serve (a client that went away, an exception).
"""
from __future__ import annotations

import logging
import re

_SECRET_IN_PATH = re.compile(r"(/delete/|/password/|/api/1/tus/)[^/\s?#'\"]+")
_LOGGERS = ("waitress",)


def mask(text: str) -> str:
    """``text`` with the secret of every secret-bearing path in it replaced by ``***``."""
    if "/delete/" not in text and "/password/" not in text and "/api/1/tus/" not in text:
        return text  # most paths: no regular expression run
    return _SECRET_IN_PATH.sub(r"\1***", text)


class MaskPaths(logging.Filter):
    """Rewrites a record whose message names a secret-bearing path (never drops one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def install() -> None:
    """Put the filter on waitress's logger (once)."""
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, MaskPaths) for f in logger.filters):
            logger.addFilter(MaskPaths())
