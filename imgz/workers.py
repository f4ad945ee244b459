"""Media work in child processes, each job under a budget of CPU time, memory and wall-clock time.

A decode running in a thread cannot be stopped; a process can. Each worker is a child process
that runs one job at a time with a CPU-time limit (``RLIMIT_CPU``: the kernel ends it with
SIGXCPU), an address-space limit (``RLIMIT_AS``: an allocation past it fails) and a wall-clock
deadline kept by the parent, which kills the worker's whole process group (ffmpeg included). A
worker that was killed, crashed or grew large is replaced, so a decoder crash on a hostile file
harms one upload and the memory of a large animation goes back to the system.

Files cross by path: a job's arguments and its result are small records naming files on the
local disk, never their bytes. This is the parent's side: the pool, each job's budget and the
admission of uploads to the queue; the worker process itself is worker.py's.
"""
from __future__ import annotations

import atexit
import logging
import math
import multiprocessing
from multiprocessing import forkserver
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from .errors import TooComplex
from .worker import Usage, Worker, describe

log = logging.getLogger("imgz")

# A worker whose resident memory is above this after a job is replaced: the memory a large
# animation or a huge image took goes back to the system instead of staying with the worker.
RECYCLE_RSS = 192 * 1024 * 1024
# A worker that has used this much CPU in all is replaced too: a long-lived process only
# gathers a fragmented heap, and a fresh one costs a fork.
RECYCLE_CPU = 120.0
# Modules the workers need, imported once by the fork server so a new worker starts at once.
PRELOAD = ["imgz.render"]


def start_fork_server() -> None:
    """Start the process that workers are forked from, with the media modules loaded.

    Called by ``serve`` before it points temporary files at the data disk: the fork server's
    socket lives in a temporary folder of its own, which belongs in the system's.
    """
    multiprocessing.set_forkserver_preload(PRELOAD)
    forkserver.ensure_running()


class WorkerDied(Exception):
    """A worker ended during a job by other means than its budget (a crash in a decoder)."""

    def __init__(self, exitcode: int | None) -> None:
        self.exitcode = exitcode
        super().__init__(f"media worker ended with {describe(exitcode)}")


@dataclass(frozen=True)
class Budget:
    """What one job may use: CPU seconds, and seconds on the clock (its memory is the pool's)."""

    cpu: float
    wall: float


class Pool:
    """``size`` worker processes, started when first needed; ``run`` waits for a free one.

    Uploads are admitted before they reach the pool (``Admission``), so the wait here is short
    and bounded by the number admitted.
    """

    def __init__(self, size: int, *, memory: int, recycle_rss: int = RECYCLE_RSS) -> None:
        self.size = size
        self.memory = memory
        self.recycle_rss = recycle_rss
        self._ctx = multiprocessing.get_context("forkserver")
        self._ctx.set_forkserver_preload(PRELOAD)
        self._idle: list[Worker] = []
        self._live = 0
        self._cond = threading.Condition()
        self._closed = False
        self.last_usage: Usage | None = None
        atexit.register(self.close)

    def _take(self) -> Worker:
        with self._cond:
            while not self._idle and self._live >= self.size:
                self._cond.wait()
            if self._idle:
                return self._idle.pop()
            self._live += 1
        try:
            return Worker(self._ctx, self.memory)
        except BaseException:
            self._lost()
            raise

    def _give_back(self, worker: Worker) -> None:
        with self._cond:
            if self._closed:
                worker.stop()
                self._live -= 1
            else:
                self._idle.append(worker)
            self._cond.notify()

    def _lost(self) -> None:
        with self._cond:
            self._live -= 1
            self._cond.notify()

    def run(self, fn: Callable[..., Any], args: tuple, budget: Budget) -> Any:
        """Run ``fn(*args)`` in a worker within budget and return its result or raise its error.

        Past the CPU or wall-clock budget, or out of memory, the worker is killed and replaced
        and TooComplex is raised; a worker that dies otherwise raises WorkerDied.
        """
        worker = self._take()
        healthy = False
        try:
            start = time.monotonic()
            worker.conn.send((fn, args, budget.cpu))
            if not worker.conn.poll(budget.wall):
                log.warning("media work stopped after %.0f s on the clock", time.monotonic() - start)
                raise TooComplex()
            try:
                reply, usage, rss = worker.conn.recv()
            except (EOFError, OSError):
                worker.proc.join(5)
                code = worker.proc.exitcode
                if code in (-signal.SIGXCPU, -signal.SIGKILL):
                    log.warning("media work stopped past its CPU budget (%s)", describe(code))
                    raise TooComplex() from None
                raise WorkerDied(code) from None
            self.last_usage = usage
            worker.cpu += usage.cpu
            healthy = rss <= self.recycle_rss and worker.cpu < RECYCLE_CPU
            status, value = reply
            if status == "err":
                raise value
            return value
        finally:
            if healthy:
                self._give_back(worker)
            else:
                worker.kill()
                self._lost()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            self._live -= len(idle)
        for worker in idle:
            worker.stop()


class Admission:
    """At most ``limit`` uploads in processing or waiting for a worker; the rest hear 503.

    Each admitted upload holds a server thread while it waits, so the limit is what keeps the
    threads that pages and files need free (the server starts that many threads more).
    """

    def __init__(self, limit: int, workers: int) -> None:
        self.limit = limit
        self.workers = max(1, workers)
        self._inside = 0
        self._lock = threading.Lock()
        self._seconds = 2.0  # a running estimate of one upload's time in processing

    def enter(self) -> bool:
        with self._lock:
            if self._inside >= self.limit:
                return False
            self._inside += 1
            return True

    def leave(self, seconds: float | None = None) -> None:
        with self._lock:
            self._inside -= 1
            if seconds is not None:
                self._seconds = 0.8 * self._seconds + 0.2 * seconds

    def depth(self) -> int:
        """Uploads admitted now: in a worker or waiting for one."""
        return self._inside

    def retry_after(self) -> int:
        """Seconds until a place is likely free: the queue ahead, worked off by the workers."""
        with self._lock:
            return max(1, min(120, math.ceil(self._seconds * self._inside / self.workers)))


def budget_for(cpu: float, *, video_timeout: float | None = None) -> Budget:
    """The budget of one job: wall-clock time allows for waiting on a busy CPU; a video's
    ffmpeg runs keep their own timeout, within which they all fit."""
    wall = 3 * cpu + 5
    if video_timeout is not None:
        wall = max(wall, 2 * video_timeout + 10)
    return Budget(cpu=cpu, wall=wall)
