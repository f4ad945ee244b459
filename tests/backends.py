"""The backend pair the end-to-end tests run against: where rows and stored files are kept.

``sqlite-local`` (the default) is the embedded install: an SQLite file and ``<data>/images``;
an app needs no setting for it. ``postgres-s3`` gives every data dir a PostgreSQL database of its
own and a prefix of its own in an S3 bucket, from two providers beside this module:

- ``pgserver.fresh_database_url() -> str``: the URL of a new, empty database on the test
  PostgreSQL server (``postgresql://...``), started on first use;
- ``s3server.settings(prefix: str) -> dict[str, str]``: IMGZ_STORAGE=s3 and the IMGZ_S3_*
  settings of a bucket on the test S3 server, with ``prefix`` as IMGZ_S3_PREFIX, plus the
  AWS_* variables that give the SDK its credentials, started on first use.

Each may define ``stop()``; it is called once at the end of the run (tests/conftest.py).

The pair is chosen once per run (``--backend`` or IMGZ_TEST_BACKEND); ``settings(data)`` answers
the same for the same data dir, so an app started again on a data dir finds its rows and files.
"""
from __future__ import annotations

import importlib
import os
import sys
import uuid
from pathlib import Path

import pytest

SQLITE_LOCAL = "sqlite-local"
POSTGRES_S3 = "postgres-s3"
NAMES = (SQLITE_LOCAL, POSTGRES_S3)
ENV = "IMGZ_TEST_BACKEND"
PROVIDERS = ("pgserver", "s3server")

_chosen = SQLITE_LOCAL
_made: dict[str, dict[str, str]] = {}


def default() -> str:
    """The pair named by IMGZ_TEST_BACKEND, else sqlite-local."""
    return os.environ.get(ENV, "").strip() or SQLITE_LOCAL


def choose(name: str) -> None:
    global _chosen
    if name not in NAMES:
        raise ValueError(f"unknown backend pair {name!r}; one of {', '.join(NAMES)}")
    _chosen = name


def chosen() -> str:
    return _chosen


def settings(data: Path) -> dict[str, str]:
    """The environment an app on ``data`` needs for the chosen pair: IMGZ_* settings and the
    variables its libraries read (AWS_*). Nothing for sqlite-local."""
    if _chosen == SQLITE_LOCAL:
        return {}
    where = str(Path(data).resolve())
    if where not in _made:
        url = _provider("pgserver", "fresh_database_url")()
        store = _provider("s3server", "settings")(f"t{uuid.uuid4().hex[:16]}/")
        _made[where] = {"IMGZ_DATABASE_URL": url, **store}
    return dict(_made[where])


def split(env: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """``env`` as (IMGZ_* settings, everything else)."""
    own = {k: v for k, v in env.items() if k.startswith("IMGZ_")}
    return own, {k: v for k, v in env.items() if k not in own}


def in_process(data: Path) -> dict[str, str]:
    """The IMGZ_* settings of an app made in this process on ``data``; the other variables (the
    SDK's credentials, read from the process's environment) are put into ``os.environ``."""
    own, other = split(settings(data))
    os.environ.update(other)
    return own


def stop() -> None:
    """Stop what the providers started, if they were used and can say so."""
    for name in PROVIDERS:
        module = sys.modules.get(name)
        if module is not None and callable(getattr(module, "stop", None)):
            module.stop()


def _provider(module_name: str, function: str):
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        pytest.fail(f"backend {POSTGRES_S3} needs tests/{module_name}.py (with {function}()); "
                    "it is not there", pytrace=False)
    found = getattr(module, function, None)
    if not callable(found):
        pytest.fail(f"backend {POSTGRES_S3} needs {module_name}.{function}(); "
                    f"tests/{module_name}.py has none", pytrace=False)
    return found
