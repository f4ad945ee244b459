"""Profile imgz with py-spy while it takes uploads of one file (or serves it); print the top functions.

    .venv/bin/python bench/profile_server.py FILE [--get] [--seconds 20] [--concurrency 8] [--idle] [--gil]
        [--subprocesses] [--scale]

py-spy is not a dependency of imgz: install it into the virtualenv for profiling only
(``.venv/bin/pip install py-spy``); it needs ptrace rights over the server (root, or
``kernel.yama.ptrace_scope=0``). Starts imgz on a temporary data dir on 127.0.0.1, uploads FILE
from `concurrency` clients for `seconds` (with --get: uploads it once, then GETs the stored file,
with wrk when installed) while sampling every thread, and prints the functions with the most
samples, inclusive and self. --idle counts threads blocked in system calls too
(fsync, pipes to ffmpeg), which CPU-only sampling leaves out. --scale runs imgz on PostgreSQL + SeaweedFS (started for the
run, as the scale parts of bench/run.py do) instead of SQLite + the local disk.
"""
from __future__ import annotations

import argparse
import collections
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH), str(BENCH.parent)]

import load  # noqa: E402
import procs  # noqa: E402

# Where idle threads sit (waitress's workers between requests, its socket loop, the scheduler's
# executor): never work, even with --idle.
_IDLE = ("Condition.wait (", "Event.wait (", "_worker (futures/thread.py)",
         "poll (waitress/wasyncore.py)")


def py_spy() -> str | None:
    return shutil.which("py-spy") or next(
        (str(p) for p in [Path(sys.executable).parent / "py-spy"] if p.exists()), None)


def _function(frame: str) -> str:
    """'name (path/to/file.py:123)' -> 'name (to/file.py)': one entry per function."""
    match = re.fullmatch(r"(.*) \((.*?)(?::\d+)?\)", frame)
    if match is None:
        return frame
    path = match.group(2).split("site-packages/")[-1].split("/lib/python3")[-1]
    return f"{match.group(1)} ({'/'.join(path.split('/')[-2:])})"


def summarise(raw: Path, top: int) -> str:
    """Inclusive and self sample counts per function from py-spy's collapsed stacks."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = [_function(frame) for frame in stack.split(";")]
        leaf = frames[-1]
        if any(leaf.startswith(idle) for idle in _IDLE):
            continue
        count = int(count_text)
        total += count
        own[leaf] += count
        for frame in set(frames):
            inclusive[frame] += count
    lines = [f"{total} busy samples", "", "inclusive (function, % of busy samples):"]
    for frame, count in inclusive.most_common(top):
        lines.append(f"  {100 * count / total:5.1f}%  {frame}")
    lines += ["", "self:"]
    for frame, count in own.most_common(top):
        lines.append(f"  {100 * count / total:5.1f}%  {frame}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", type=Path)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--get", action="store_true", help="profile GETs of the stored file")
    parser.add_argument("--idle", action="store_true", help="sample blocked threads too")
    parser.add_argument("--subprocesses", action="store_true",
                        help="sample the media workers too (their samples are counted alongside)")
    parser.add_argument("--gil", action="store_true",
                        help="only threads holding the GIL: Python's own CPU, no waits in calls")
    parser.add_argument("--scale", action="store_true",
                        help="imgz on PostgreSQL + SeaweedFS, both started for the run")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--rate", type=int, default=200, help="samples per second")
    args = parser.parse_args()
    spy = py_spy()
    if spy is None:
        sys.exit("py-spy is not installed: .venv/bin/pip install py-spy")
    work = Path(tempfile.mkdtemp(prefix="imgz-profile-"))
    pool = procs.Pool()
    engines = None
    try:
        settings = {"IMGZ_MAX_UPLOAD_MB": "2000"}
        if args.scale:
            import engines as engines_module

            engines = engines_module.Engines(work)
            _, db_url = engines.database()
            settings = engines_module.scale_env(db_url, engines.bucket(), **settings)
        child, base, key = procs.start_imgz(pool, work / "data", work / "imgz.log",
                                            settings=settings)
        body = load.multipart(args.file)
        url, headers = base + "/api/1/upload", {"X-API-Key": key}
        if args.get:
            status, answer = load.post(url, body.payload(), body.length, body.content_type, headers)
            if status != 200:
                sys.exit(f"upload failed: {status} {answer[:300]!r}")
            file_url = base + "/images/" + json.loads(answer)["image"]["url"].split("/images/", 1)[1]
            use_wrk = load.wrk_path() is not None

            def work_load(seconds: float) -> load.RunResult:
                return load.get_run(file_url, concurrency=args.concurrency, seconds=seconds,
                                    use_wrk=use_wrk)
        else:
            def work_load(seconds: float) -> load.RunResult:
                return load.upload_run(url, body, headers, concurrency=args.concurrency,
                                       seconds=seconds)
        work_load(2)
        raw = work / "stacks.txt"
        command = [spy, "record", "-p", str(child.pid), "-r", str(args.rate), "-d",
                   str(int(args.seconds)), "-f", "raw", "-o", str(raw), "--nonblocking"]
        if args.idle:
            command.append("--idle")
        if args.gil:
            command.append("--gil")
        if args.subprocesses:
            command.append("--subprocesses")
        spy_run = threading.Thread(target=subprocess.run, args=(command,),
                                   kwargs=dict(capture_output=True, timeout=args.seconds + 60))
        spy_run.start()
        result = work_load(args.seconds)
        spy_run.join()
        what = "GETs" if args.get else "uploads"
        print(f"{result.requests} {what} of {args.file.name} in {result.seconds:.1f} s = "
              f"{result.rate:.2f}/s ({result.errors} errors, client {result.tool})")
        print(summarise(raw, args.top))
    finally:
        pool.stop_all()
        if engines is not None:
            engines.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
