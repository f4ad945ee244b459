"""imgz's performance benchmark: uploads, file serving, memory and disk of a huge upload, the video
frame step, the expiry sweep and start-up, each against its target.

    .venv/bin/python bench/run.py [--quick] [--only uploads,serving,...] [--keep]

Everything runs on 127.0.0.1 and is stopped at the end. Uploads and GETs compare servers in turn
(A B A B ...): imgz, a reference app doing only the contract's media work, a store-only app, a
bare wsgi.file_wrapper server, Flask's send_file and nginx (when installed). Each comparison
prints the median of each server and the median of the per-round ratios; a summary table with
each figure, its target and PASS/MISS comes last. Inputs are generated from a fixed seed.

Parts: uploads, serving, opscost (the 200 KB GETs with the access log and metrics on, then off:
bench/opscost.py), percost (server CPU per upload against the same file's media work in
process, latency of one upload, a 1 GB tagged video's answer time against its receive time:
bench/percost.py), frame, expiry, startup, memory, pages (server time of the start page and
My uploads with 100,000 uploads stored, on SQLite and on the run's PostgreSQL: bench/pages.py),
resumable (a video of --big-mib through tus in 32 MiB chunks, on both backend pairs:
bench/resumable.py),
backup (backup, verify and restore of a 1 GB data dir: bench/backup.py),
and on PostgreSQL + SeaweedFS (a server of each started for the run): scale-uploads, scale-serving, scale-memory, two-procs, scale-migrate,
scale-costs (bench/scale.py, twoprocs.py, scale_migrate.py); all by default.
"""
from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH), str(BENCH.parent)]

import about  # noqa: E402
import compare  # noqa: E402
import engines  # noqa: E402
import figures  # noqa: E402
import inputs  # noqa: E402
import load  # noqa: E402
import procs  # noqa: E402
from report import Row, at_most, median, say, table  # noqa: E402

SCALE_PARTS = ("scale-uploads", "scale-serving", "scale-memory", "two-procs", "scale-migrate",
               "scale-costs")
PARTS = ("uploads", "serving", "opscost", "percost", "frame", "expiry", "startup", "memory", "pages",
         "resumable", "backup", *SCALE_PARTS)
UPLOAD_CASES = compare.UPLOAD_CASES
MAX_RUN_SECONDS = 30


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="a short run: 3 rounds of 4 s uploads and 3 s GETs, a 200 MiB video, "
                        "20,000 uploads for start-up (figures are rougher)")
    p.add_argument("--only", help="comma-separated parts to run (default: all)")
    p.add_argument("--skip", help="comma-separated parts to leave out")
    p.add_argument("--rounds", type=int, help="rounds (A B pairs) per comparison (default 5)")
    p.add_argument("--upload-seconds", type=float, help="length of one upload run (default 10)")
    p.add_argument("--get-seconds", type=float, help="length of one GET run (default 5)")
    p.add_argument("--concurrency", type=int, default=8, help="clients at once (default 8)")
    p.add_argument("--threads", type=int, default=8, help="waitress threads of every server (8)")
    p.add_argument("--big-mib", type=int,
                   help="size of the memory and resumable runs' video (default 1000)")
    p.add_argument("--startup-uploads", type=int, help="uploads stored for start-up (100000)")
    p.add_argument("--two-procs-seconds", type=float,
                   help="length of the two-procs run (default 60; 15 with --quick)")
    p.add_argument("--expiry-uploads", type=int, default=10_000,
                   help="expired uploads swept at once (default 10000)")
    p.add_argument("--cases", help="comma-separated upload cases to run: png, jpeg, mp4, gif "
                                   "(default: all)")
    p.add_argument("--python-client", action="store_true", help="GETs from Python even with wrk")
    p.add_argument("--baseline", metavar="REV",
                   help="also upload to imgz as of this git revision (e.g. origin/main), started "
                        "from an exported copy beside this one: imgz ÷ baseline is printed")
    p.add_argument("--no-nginx", action="store_true", help="leave nginx out")
    p.add_argument("--inputs", type=Path, help="make and keep inputs here, reusing what exists")
    p.add_argument("--workdir", type=Path, help="parent of the temporary work dir")
    p.add_argument("--keep", action="store_true", help="keep the work dir (data dirs, logs)")
    args = p.parse_args(argv)
    quick = args.quick
    defaults = dict(rounds=3 if quick else 5, upload_seconds=4 if quick else 10,
                    get_seconds=3 if quick else 5, big_mib=200 if quick else 1000,
                    startup_uploads=20_000 if quick else 100_000,
                    two_procs_seconds=15 if quick else 60)
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    for name in ("rounds", "concurrency", "threads"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be at least 1")
    for name in ("upload_seconds", "get_seconds"):
        if not 0 < getattr(args, name) <= MAX_RUN_SECONDS:
            p.error(f"--{name.replace('_', '-')} must be in (0, {MAX_RUN_SECONDS}]")
    parts = set(PARTS)
    if args.only:
        parts = _parts(p, args.only)
    if args.skip:
        parts -= _parts(p, args.skip)
    args.parts = [part for part in PARTS if part in parts]
    args.cases = _names(p, args.cases, UPLOAD_CASES, "case") if args.cases else set(UPLOAD_CASES)
    return args


def _parts(p: argparse.ArgumentParser, text: str) -> set[str]:
    return _names(p, text, PARTS, "part")


def _names(p: argparse.ArgumentParser, text: str, known: tuple[str, ...], what: str) -> set[str]:
    names = {t.strip().lower() for t in text.split(",") if t.strip()}
    unknown = names - set(known)
    if unknown:
        p.error(f"unknown {what}(s) {', '.join(sorted(unknown))}; {what}s: {', '.join(known)}")
    return names


class Session:
    """One benchmark run: its work dir, its children and the rows of its summary."""

    def __init__(self, args: argparse.Namespace, work: Path, pool: procs.Pool) -> None:
        self.args = args
        self.work = work
        self.pool = pool
        self.rows: list[Row] = []
        self.inputs: inputs.Inputs | None = None
        self.inputs_dir = args.inputs or work / "inputs"
        self._imgz: tuple[procs.Child, str, str] | None = None
        self.use_wrk = load.wrk_path() is not None and not args.python_client
        self._baseline: tuple[procs.Child, str, str] | None = None
        self.engines = engines.Engines(work, log=say)

    def run_part(self, part: str) -> None:
        if part in SCALE_PARTS:
            import scale

            self.rows += scale.part(part)(self)
        else:
            getattr(self, part)()

    def prepared(self) -> inputs.Inputs:
        if self.inputs is None:
            say(f"inputs in {self.inputs_dir} (seed {inputs.SEED})")
            started = time.perf_counter()
            self.inputs = inputs.prepare(self.inputs_dir, log=say)
            say(f"  ready in {time.perf_counter() - started:.0f} s")
        return self.inputs

    def imgz(self) -> tuple[procs.Child, str, str]:
        """The imgz server of the upload and GET runs, started once."""
        if self._imgz is None:
            self._imgz = procs.start_imgz(
                self.pool, self.work / "data", self.work / "imgz.log",
                settings={"IMGZ_MAX_UPLOAD_MB": str(compare.MAX_UPLOAD_MB),
                          "IMGZ_THREADS": str(self.args.threads)})
            say(f"imgz serving on {self._imgz[1]} (data {self.work / 'data'})")
        return self._imgz

    def baseline(self) -> tuple[procs.Child, str, str] | None:
        """imgz as of ``--baseline REV``, exported and started beside this one, or None."""
        rev = self.args.baseline
        if rev and self._baseline is None:
            root = procs.checkout(rev, self.work / "baseline-tree")
            self._baseline = procs.start_imgz(
                self.pool, self.work / "baseline-data", self.work / "baseline.log", root=root,
                name="baseline", settings={"IMGZ_MAX_UPLOAD_MB": str(compare.MAX_UPLOAD_MB),
                                           "IMGZ_THREADS": str(self.args.threads)})
            say(f"baseline imgz ({rev}) serving on {self._baseline[1]}")
        return self._baseline

    # -----------------------------------------------------------------------------------------

    def uploads(self) -> None:
        self.rows += compare.uploads(self)

    def serving(self) -> None:
        self.rows += compare.serving(self)

    def opscost(self) -> None:
        import opscost

        self.rows += opscost.part(self)

    def percost(self) -> None:
        import percost

        self.rows += percost.part(self)

    # -----------------------------------------------------------------------------------------

    def frame(self) -> None:
        ins = self.prepared()
        repeats = 5 if self.args.quick else 9
        say(f"\n== video frame: imgz.video in process vs bare ffmpeg, {repeats} pairs")
        r = figures.frame_timing(ins.mp4, self.work, repeats)
        say(f"  probe {r.probe * 1000:.0f} ms; frame at {r.at:.3f} s: imgz {r.frame * 1000:.0f} ms, "
            f"bare ffmpeg -ss T -i {r.bare * 1000:.0f} ms; thumb+medium from the frame "
            + (f"{r.variants * 1000:.0f} ms" if r.variants is not None else "n/a")
            + "; remux " + (f"{r.remux * 1000:.0f} ms" if r.remux is not None else "n/a"))
        self.rows.append(at_most("video frame step: imgz ÷ bare ffmpeg", r.ratio, 1.1))
        self.rows.append(Row("video frame step: imgz / bare ms",
                             f"{r.frame * 1000:.0f} / {r.bare * 1000:.0f}"))
        self.rows.append(Row("video probe (ffmpeg -i) ms", f"{r.probe * 1000:.0f}"))
        if r.variants is not None:
            self.rows.append(Row("video thumb+medium from the frame ms", f"{r.variants * 1000:.0f}"))
        if r.remux is not None:
            self.rows.append(Row("video remux (with its check) ms", f"{r.remux * 1000:.0f}"))

    def expiry(self) -> None:
        count = self.args.expiry_uploads
        say(f"\n== expiry: one sweep of {count:,} expired uploads (and as many live ones)")
        removed, took = figures.expiry_run(self.work, count)
        say(f"  removed {removed:,} in {took:.2f} s")
        self.rows.append(at_most(f"expiry sweep of {count:,} uploads", took, 5.0, "{:.2f}",
                                 unit=" s"))

    def startup(self) -> None:
        count = self.args.startup_uploads
        say(f"\n== start-up: spawn to first 200 on / with {count:,} uploads stored")
        times = figures.startup_run(self.pool, self.work, count, 3, log=say)
        self.rows.append(at_most(f"start-up with {count:,} uploads (median of 3)", median(times),
                                 1.5, "{:.2f}", unit=" s"))
        self.rows.append(Row("start-up slowest of 3", f"{max(times):.2f} s"))

    def pages(self) -> None:
        import pages

        self.rows += pages.part(self)

    def resumable(self) -> None:
        import resumable

        self.rows += resumable.part(self)

    def backup(self) -> None:
        import backup

        self.rows += backup.part(self)

    def memory(self) -> None:
        ins = self.prepared()
        mib = self.args.big_mib
        say(f"\n== memory: one upload of a video of at least {mib} MiB")
        # as a phone writes it: a title and location in the container, the index at the end
        video = inputs.make_big_video(self.inputs_dir / f"big-phone-{mib}.mp4", mib * inputs.MIB,
                                      log=say, faststart=False)
        r = figures.memory_run(self.pool, self.work, video, ins.small_mp4, log=say)
        say(f"  {r.size / inputs.MIB:.0f} MiB in {r.seconds:.1f} s ({r.size / 1e6 / r.seconds:.0f} MB/s); "
            f"HTTP {r.status}; {r.checksum_note}")
        say(f"  body sent in {r.sent:.1f} s, answered after {r.seconds:.1f} s: "
            f"{r.answer_ratio:.2f}x the receive time; CPU of the server and its workers "
            f"{r.cpu:.1f} s")
        say(f"  RSS before {r.rss_before_kib / 1024:.1f} MiB, peak {r.hwm_kib / 1024:.1f} MiB"
            + ("" if r.peak_reset else " (peak not resettable: since start)"))
        say(f"  disk peak {r.disk_peak / inputs.MIB:.0f} MiB = {r.copies:.2f} copies "
            f"({r.disk_hidden / inputs.MIB:.0f} MiB of it in unlinked files the server holds open, "
            f"which du does not see; du alone peaked at {r.disk_visible / inputs.MIB:.0f} MiB), "
            f"{r.samples} samples")
        ok = r.status == 200 and r.checksum_ok
        self.rows.append(Row(f"memory run {r.size / inputs.MIB:.0f} MiB video: answer",
                             f"HTTP {r.status}, md5 {'ok' if r.checksum_ok else 'wrong'}",
                             "200, md5 ok", "PASS" if ok else "MISS"))
        self.rows.append(at_most("memory run: answer time / receive time", r.answer_ratio, 2.0,
                                 "{:.2f}", "{:.1f}"))
        self.rows.append(at_most("memory run: peak RSS growth", r.growth_mib, 16, "{:.1f}", "{:.0f}",
                                 " MiB"))
        self.rows.append(at_most("memory run: peak disk in copies (tmp + images + open spool)",
                                 r.copies, 2.0, "{:.2f}"))
        self.rows.append(Row("memory run: peak disk in copies, du of tmp + images alone",
                             f"{r.disk_visible / r.size:.2f}"))
        self.rows.append(Row("memory run: upload speed", f"{r.size / 1e6 / r.seconds:.0f} MB/s"))


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="imgz-bench-", dir=args.workdir))
    pool = procs.Pool()
    session = Session(args, work, pool)
    began = time.perf_counter()
    say(f"imgz benchmark{' (quick)' if args.quick else ''}: parts {', '.join(args.parts)}")
    say(f"machine: {procs.cpu_count()} cores, load {procs.load_average()}; {about.versions(session.use_wrk)}")
    say(f"work dir {work}; expected length about {about.estimate(args) / 60:.0f} min")
    failed = False
    try:
        for part in args.parts:
            try:
                session.run_part(part)
            except KeyboardInterrupt:
                raise
            except Exception as exc:
                failed = True
                traceback.print_exc()
                session.rows.append(Row(f"{part}", f"{type(exc).__name__}: {exc}"[:60], "", "error"))
    except KeyboardInterrupt:
        failed = True
        say("\ninterrupted")
    finally:
        pool.stop_all()
        session.engines.stop()
        if args.keep:
            say(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    say(f"\n== summary ({time.perf_counter() - began:.0f} s, load {procs.load_average()}, "
        f"{args.rounds} rounds, uploads {args.upload_seconds:g} s, GETs {args.get_seconds:g} s"
        f"{', quick' if args.quick else ''})")
    say(table(session.rows))
    misses = sum(r.result == "MISS" for r in session.rows)
    say(f"{sum(r.result == 'PASS' for r in session.rows)} PASS, {misses} MISS")
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
