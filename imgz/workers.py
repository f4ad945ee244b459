"""Media work in child processes, each job under a budget of CPU time, memory and wall-clock time.

A decode running in a thread cannot be stopped; a process can. Each worker is a child process
that runs one job at a time with a CPU-time limit (``RLIMIT_CPU``: the kernel ends it with
SIGXCPU), an address-space limit (``RLIMIT_AS``: an allocation past it fails) and a wall-clock
deadline kept by the parent, which kills the worker's whole process group (ffmpeg included). A
worker that was killed, crashed or grew large is replaced, so a decoder crash on a hostile file
harms one upload and the memory of a large animation goes back to the system.

Files cross by path: a job's arguments and its result are small records naming files on the
local disk, never their bytes.
"""
from __future__ import annotations

import atexit
import logging
import math
import multiprocessing
from multiprocessing import forkserver
import os
import pickle
import resource
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from .errors import TooComplex

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
        super().__init__(f"media worker ended with {_describe(exitcode)}")


@dataclass(frozen=True)
class Budget:
    """What one job may use: CPU seconds, and seconds on the clock (its memory is the pool's)."""

    cpu: float
    wall: float


@dataclass(frozen=True)
class Usage:
    """What a finished job used, as its worker measured it."""

    cpu: float        # CPU seconds of the worker itself during the job
    programs: float   # CPU seconds of the programs it ran (ffmpeg)
    peak_rss: int     # the worker's peak resident memory during the job, bytes


def _describe(exitcode: int | None) -> str:
    if exitcode is None:
        return "no exit status"
    if exitcode < 0:
        try:
            return f"signal {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"signal {-exitcode}"
    return f"exit {exitcode}"


def _cpu_used(who: int = resource.RUSAGE_SELF) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


# In a worker, during a job: (its CPU budget, the worker's and its children's CPU at the start).
_job: tuple[float, float, float] | None = None


def cpu_left() -> float | None:
    """CPU seconds the job running in this worker has left, its programs' included; None
    outside a worker."""
    if _job is None:
        return None
    budget, own, children = _job
    spent = (_cpu_used() - own) + (_cpu_used(resource.RUSAGE_CHILDREN) - children)
    return budget - spent


def limit_program(pid: int) -> None:
    """Hold a program the job started (ffmpeg) to what is left of the job's CPU budget.

    Its CPU counts against the job once it has ended; a program past the limit is ended by the
    kernel (SIGXCPU), which the caller reports as TooComplex.
    """
    left = cpu_left()
    if left is None:
        return
    seconds = max(1, math.ceil(left))
    try:
        resource.prlimit(pid, resource.RLIMIT_CPU, (seconds, seconds + 1))
    except (ProcessLookupError, PermissionError, OSError):
        pass  # it has ended already


def _status_kb(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


def _reset_peak() -> None:
    """Start the peak-RSS count (VmHWM) afresh, so each job's own peak is measured."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
    except OSError:
        pass


def _child(conn: Any, memory: int) -> None:
    """A worker's life: take jobs one at a time and answer each with its result or error."""
    os.setsid()  # its own process group: a kill takes the ffmpeg it started along
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the server, which stops us
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if memory:
        _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        resource.setrlimit(resource.RLIMIT_AS, (memory, hard))
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        fn, args, cpu = job
        global _job
        before = _cpu_used()
        _job_children = _cpu_used(resource.RUSAGE_CHILDREN)
        _job = (cpu, before, _job_children)
        # The soft limit is absolute: the worker's CPU so far plus this job's budget. The hard
        # limit stays where it was, so the next job can be given its own.
        _soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
        # Whole seconds, rounded down so a job never gets more than its budget (but at least
        # the rest of the second it is in).
        soft = math.floor(before + cpu)
        if soft <= before:
            soft = math.floor(before) + 1
        resource.setrlimit(resource.RLIMIT_CPU,
                           (soft, hard if hard == resource.RLIM_INFINITY else max(hard, soft)))
        _reset_peak()
        try:
            reply: tuple[str, Any] = ("ok", fn(*args))
        except MemoryError:
            reply = ("err", TooComplex())
        except BaseException as exc:  # everything goes back to the parent, which raises it
            reply = ("err", exc)
        finally:
            _job = None
        own = _cpu_used() - before
        programs = _cpu_used(resource.RUSAGE_CHILDREN) - _job_children
        usage = Usage(own, programs, _status_kb("VmHWM:") * 1024)
        rss = _status_kb("VmRSS:") * 1024
        try:
            conn.send((reply, usage, rss))
        except (pickle.PicklingError, TypeError, AttributeError):
            error = reply[1] if reply[0] == "err" else None
            conn.send((("err", RuntimeError(f"unpicklable result: {error!r}")), usage, rss))


class _Worker:
    def __init__(self, ctx: Any, memory: int) -> None:
        self.conn, child_conn = ctx.Pipe()
        self.proc = ctx.Process(target=_child, args=(child_conn, memory), daemon=True,
                                name="imgz-media")
        self.proc.start()
        child_conn.close()
        self.cpu = 0.0

    @property
    def pid(self) -> int:
        return self.proc.pid

    def kill(self) -> None:
        """End the worker and everything it started; never raises."""
        for kill in (lambda: os.killpg(self.proc.pid, signal.SIGKILL), self.proc.kill):
            try:
                kill()
            except (ProcessLookupError, PermissionError, OSError, ValueError, AttributeError):
                pass
        try:
            self.proc.join(5)
            self.conn.close()
        except (OSError, ValueError, AssertionError):
            pass

    def stop(self) -> None:
        """Ask an idle worker to end; kill it when it does not."""
        try:
            self.conn.send(None)
            self.proc.join(2)
        except (OSError, ValueError, AssertionError):
            pass
        self.kill()


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
        self._idle: list[_Worker] = []
        self._live = 0
        self._cond = threading.Condition()
        self._closed = False
        self.last_usage: Usage | None = None
        atexit.register(self.close)

    def _take(self) -> _Worker:
        with self._cond:
            while not self._idle and self._live >= self.size:
                self._cond.wait()
            if self._idle:
                return self._idle.pop()
            self._live += 1
        try:
            return _Worker(self._ctx, self.memory)
        except BaseException:
            self._lost()
            raise

    def _give_back(self, worker: _Worker) -> None:
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
                    log.warning("media work stopped past its CPU budget (%s)", _describe(code))
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
