"""One media worker process: its life (a job at a time, each under a CPU-time limit), what a
job may still spend and what it used, and the parent's handle on the process.

A job's CPU budget is the worker's ``RLIMIT_CPU`` (the kernel ends it with SIGXCPU), renewed for
each job; programs the job starts (ffmpeg) are held to what is left of it (``limit_program``).
The address-space limit is set once, when the worker starts. The pool (workers.py) keeps the
wall clock and replaces a worker that was killed, crashed or grew large.
"""
from __future__ import annotations

import math
import os
import pickle
import resource
import signal
from dataclasses import dataclass
from typing import Any

from .errors import TooComplex


@dataclass(frozen=True)
class Usage:
    """What a finished job used, as its worker measured it."""

    cpu: float        # CPU seconds of the worker itself during the job
    programs: float   # CPU seconds of the programs it ran (ffmpeg)
    peak_rss: int     # the worker's peak resident memory during the job, bytes


def describe(exitcode: int | None) -> str:
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


class Worker:
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
