"""Media workers: one job per child process at a time, each within its CPU, memory and time budget."""
from __future__ import annotations

import errno
import os
import threading
import time

import pytest

import workerjobs
from imgz import worker, workers
from imgz.errors import InvalidImage, TooComplex

MB = 1024 * 1024


@pytest.fixture
def pool():
    made = workers.Pool(2, memory=1024 * MB)
    yield made
    made.close()


def budget(cpu: float = 30, wall: float = 30) -> workers.Budget:
    return workers.Budget(cpu=cpu, wall=wall)


def test_no_more_jobs_run_at_once_than_there_are_workers(pool):
    results: list[tuple[int, float, float]] = []
    threads = [threading.Thread(target=lambda: results.append(pool.run(workerjobs.spans, (0.1,), budget())))
               for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 6
    assert len({pid for pid, _, _ in results}) <= 2
    assert os.getpid() not in {pid for pid, _, _ in results}
    for _, start, _ in results:
        running = sum(1 for _, s, e in results if s <= start < e)
        assert running <= 2


def test_a_job_past_its_cpu_budget_is_stopped_and_the_worker_replaced(pool):
    with pytest.raises(TooComplex) as caught:
        pool.run(workerjobs.spin, (), budget(cpu=1, wall=60))
    assert caught.value.status == 400 and caught.value.message == "Image too complex"
    assert pool.run(workerjobs.pid, (), budget()) > 0


def test_the_programs_a_job_runs_spend_its_cpu_budget_too(pool):
    with pytest.raises(TooComplex):
        pool.run(workerjobs.ffmpeg_spin, (), budget(cpu=2, wall=120))
    # the worker answered (the clock did not have to kill it) after ffmpeg's CPU ran out
    assert pool.last_usage is not None and 1 <= pool.last_usage.programs <= 4
    assert worker.cpu_left() is None, "outside a worker nothing is limited"


def test_a_job_past_its_wall_clock_deadline_is_killed_with_what_it_started(pool, tmp_path):
    pid_file = tmp_path / "child.pid"
    assert pool.run(workerjobs.pid, (), budget()) > 0  # a worker is up: the clock is the job's
    with pytest.raises(TooComplex):
        pool.run(workerjobs.hang_with_child, (str(pid_file),), budget(wall=1.0))
    child = int(pid_file.read_text())
    for _ in range(50):
        if not _alive(child):
            break
        time.sleep(0.1)
    assert not _alive(child), "the worker's own child (ffmpeg) was killed with it"
    assert pool.run(workerjobs.pid, (), budget()) > 0


def test_a_job_past_its_memory_is_refused_as_too_complex():
    small = workers.Pool(1, memory=400 * MB)
    try:
        with pytest.raises(TooComplex):
            small.run(workerjobs.allocate, (800,), budget())
        assert small.run(workerjobs.allocate, (50,), budget()) == 50 * MB
    finally:
        small.close()


def test_a_crash_harms_one_job_only(pool):
    with pytest.raises(workers.WorkerDied) as caught:
        pool.run(workerjobs.crash, (), budget())
    assert "SIGABRT" in str(caught.value)
    assert pool.run(workerjobs.pid, (), budget()) > 0


def test_errors_cross_as_they_were_raised(pool):
    with pytest.raises(InvalidImage) as caught:
        pool.run(workerjobs.refuse, ("Invalid image: no frames",), budget())
    assert caught.value.message == "Invalid image: no frames" and caught.value.status == 400
    with pytest.raises(OSError) as full:
        pool.run(workerjobs.full_disk, (), budget())
    assert full.value.errno == errno.ENOSPC


def test_a_worker_that_grew_large_is_replaced_so_its_memory_goes_back():
    small = workers.Pool(1, memory=1024 * MB, recycle_rss=100 * MB)
    try:
        first = small.run(workerjobs.pid, (), budget())
        assert small.run(workerjobs.pid, (), budget()) == first, "a healthy worker is kept"
        grown = small.run(workerjobs.keep, (200,), budget())
        assert grown == first
        assert not _alive_within(grown, 5), "the grown worker has ended"
        assert small.run(workerjobs.pid, (), budget()) != first
    finally:
        small.close()


def test_a_job_reports_its_peak_memory(pool):
    pool.run(workerjobs.allocate, (120,), budget())
    assert pool.last_usage is not None and pool.last_usage.peak_rss >= 120 * MB


def test_admission_refuses_past_its_limit_and_says_when_to_come_back():
    admission = workers.Admission(3, workers=1)
    assert [admission.enter() for _ in range(4)] == [True, True, True, False]
    assert 1 <= admission.retry_after() <= 120
    admission.leave(1.0)
    assert admission.enter()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _alive_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _alive(pid):
            return False
        time.sleep(0.05)
    return True
