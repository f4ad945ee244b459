"""Token buckets of the rate limits kept in the database, where every process sharing it sees
them: one INSERT ... ON CONFLICT DO UPDATE per hit works the bucket out in SQL.

A bucket holds ``tokens`` as of ``stamp`` (Unix seconds) and refills at ``rate`` a second up to
``capacity``. A hit takes a token when the refilled level is at least one; otherwise the row is
left as it is (a refused hit takes nothing, as in memory) and the caller hears how long to wait.
A bucket that has refilled is the same as no bucket: ``prune_buckets`` deletes those.
"""
from __future__ import annotations

from types import ModuleType

from sqlalchemy import Double, bindparam, case, func, literal_column, select
from sqlalchemy.engine import Connection
from sqlalchemy.sql.dml import Insert

from .connection import lock, transaction, value, write
from .prepared import Prepared
from .tables import rate_buckets, shared

_ONE, _ZERO = literal_column("1.0", Double), literal_column("0.0", Double)  # in the SQL, not bound
_NOW = bindparam("now", type_=Double)
_CAPACITY = bindparam("capacity", type_=Double)
_RATE = bindparam("rate", type_=Double)
_ELAPSED = case((_NOW > rate_buckets.c.stamp, _NOW - rate_buckets.c.stamp), else_=_ZERO)
_REFILLED = rate_buckets.c.tokens + _ELAPSED * _RATE
_LEVEL = case((_REFILLED < _CAPACITY, _REFILLED), else_=_CAPACITY)


def _take(dialect: ModuleType) -> Insert:
    return (dialect.upsert(rate_buckets)
            .values(name=bindparam("name"), tokens=_CAPACITY - _ONE, stamp=_NOW,
                    full_at=_NOW + _ONE / _RATE)
            .on_conflict_do_update(index_elements=[rate_buckets.c.name],
                                   set_={"tokens": _LEVEL - _ONE, "stamp": _NOW,
                                         "full_at": _NOW + (_CAPACITY - _LEVEL + _ONE) / _RATE},
                                   where=_LEVEL >= _ONE)
            .returning(rate_buckets.c.tokens))


_TAKE = Prepared(_take)
_LEVEL_NOW = Prepared(select(_LEVEL).where(rate_buckets.c.name == bindparam("name")))
_PRUNE = rate_buckets.delete().where(rate_buckets.c.full_at <= _NOW)


def prepare_buckets(conn: Connection) -> None:
    """Make the buckets' table when the database has none yet."""
    with transaction(conn):
        lock(conn, "schema")
        shared.create_all(conn, checkfirst=True)


def take_token(conn: Connection, name: str, capacity: float, rate: float, now: float) -> float:
    """Take a token from the bucket ``name``: 0.0 when taken, else the seconds until one is there."""
    params = {"name": name, "capacity": capacity, "rate": rate, "now": now}
    if _TAKE.first(conn, params) is not None:
        return 0.0
    found = _LEVEL_NOW.first(conn, params)
    level = capacity if found is None else float(found[0])
    return max(0.0, (1 - level) / rate) or 1 / rate


def prune_buckets(conn: Connection, now: float) -> int:
    """Delete the buckets that are full again; return how many."""
    return write(conn, _PRUNE, {"now": now})


def bucket_count(conn: Connection) -> int:
    return int(value(conn, select(func.count()).select_from(rate_buckets)))
