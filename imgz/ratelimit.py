"""Flood protection: token buckets per API key and per client address.

A limit is written ``N/SECONDS`` (``60/60``: sixty requests a minute, in bursts of up to sixty).
``Limiter`` keeps its buckets in this process's memory (one server on SQLite); a restart forgets
them, which is fine for flood protection. ``SharedLimiter`` has the same ``hit`` and keeps them
where every process sharing a database sees them (PostgreSQL), through the functions it is given.
"""
from __future__ import annotations

import math
import re
import threading
import time
from dataclasses import dataclass
from typing import Callable

_LIMIT = re.compile(r"\s*([0-9]+)\s*/\s*([0-9]+(?:\.[0-9]+)?)\s*")
MAX_BUCKETS = 50_000
PRUNE_EVERY = 60.0  # seconds between two clear-outs of full buckets by one SharedLimiter


@dataclass(frozen=True)
class Limit:
    count: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.count / self.seconds


def parse_limit(text: str) -> Limit | None:
    """'N/SECONDS' -> Limit; '' or '0' -> None (off)."""
    if text.strip() in {"", "0", "off"}:
        return None
    match = _LIMIT.fullmatch(text)
    if not match or int(match.group(1)) < 1 or float(match.group(2)) <= 0:
        raise ValueError("expected N/SECONDS, e.g. 60/60 for sixty a minute")
    return Limit(int(match.group(1)), float(match.group(2)))


class Limiter:
    """Token buckets by name; ``hit(name)`` takes a token or says how long to wait for one."""

    def __init__(self, limit: Limit, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def hit(self, name: str) -> int:
        """0 when allowed; else the whole seconds until a request would be allowed (at least 1)."""
        now = self.clock()
        capacity, rate = float(self.limit.count), self.limit.rate
        with self._lock:
            tokens, stamp = self._buckets.get(name, (capacity, now))
            tokens = min(capacity, tokens + (now - stamp) * rate)
            if tokens >= 1:
                self._buckets[name] = (tokens - 1, now)
                if len(self._buckets) > MAX_BUCKETS:
                    self._forget_full(now)
                return 0
            self._buckets[name] = (tokens, now)
            return max(1, math.ceil((1 - tokens) / rate))

    def _forget_full(self, now: float) -> None:
        # A bucket that has refilled is the same as no bucket: drop those to bound memory.
        rate, capacity = self.limit.rate, float(self.limit.count)
        for name, (tokens, stamp) in list(self._buckets.items()):
            if tokens + (now - stamp) * rate >= capacity:
                del self._buckets[name]


class SharedLimiter:
    """Token buckets kept outside the process. ``take(name, capacity, rate, now)`` takes a token in
    one step and returns 0 or the seconds until one is there; ``prune(now)`` forgets the buckets
    that are full again. ``clock`` is wall-clock time, which processes on several hosts share.
    """

    def __init__(self, limit: Limit, take: Callable[[str, float, float, float], float],
                 prune: Callable[[float], object], clock: Callable[[], float] = time.time) -> None:
        self.limit = limit
        self.take = take
        self.prune = prune
        self.clock = clock
        self._pruned = clock()

    def hit(self, name: str) -> int:
        """0 when allowed; else the whole seconds until a request would be allowed (at least 1)."""
        now = self.clock()
        wait = self.take(name, float(self.limit.count), self.limit.rate, now)
        if now - self._pruned >= PRUNE_EVERY:
            self._pruned = now
            self.prune(now)
        return 0 if wait <= 0 else max(1, math.ceil(wait))
