"""What the access log and the metrics cost: the 200 KB JPEG GET load against two imgz servers in
turn (A B, B A, A B ...), one with ``IMGZ_ACCESS_LOG=1 IMGZ_METRICS=1``, one with both off. Each
server's stderr (the on server's: a line per request) is appended to a file, as a service's log
may be. Target: the cost ≤ 5%, as 1 - on ÷ off of the rates (median of the per-round ratios),
and as on ÷ off - 1 of the server's CPU time per request, which other work on a shared machine
disturbs far less than the rates.
"""
from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

import compare
import load
import procs
from report import Row, at_most, median, say

if TYPE_CHECKING:
    from run import Session

SETTINGS = {"on": {"IMGZ_ACCESS_LOG": "1", "IMGZ_METRICS": "1"},
            "off": {"IMGZ_ACCESS_LOG": "0", "IMGZ_METRICS": "0"}}


def _cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _start(s: Session, name: str, settings: dict[str, str]) -> tuple[procs.Child, str, str]:
    """``app.py serve`` with its stderr appended to a file (as a service's log would be), its
    stdout (the first key) read here; returns the child, its base URL and the key."""
    port = procs.free_port()
    command = procs.imgz_command(s.work / f"ops-{name}", port)
    shell = ['sh', '-c', 'exec "$@" 2>>"$OPS_STDERR"', 'sh', *command]
    env = procs.clean_env(IMGZ_MIN_FREE_MB="0", OPS_STDERR=str(s.work / f"ops-{name}.stderr"),
                          **settings)
    child = s.pool.add(procs.Child(f"imgz-{name}", shell, s.work / f"ops-{name}.log", env,
                                   procs.ROOT))
    key = child.wait_for(r"once\): (imgz_\w+)", 60).group(1)
    base = f"http://{procs.HOST}:{port}"
    if not procs.wait_http(base + "/healthz", 60, child):
        raise RuntimeError(f"imgz ({name}) did not answer; see {s.work / f'ops-{name}.stderr'}")
    return child, base, key


def part(s: Session) -> list[Row]:
    ins = s.prepared()
    a = s.args
    urls: dict[str, str] = {}
    started = []
    try:
        for name, settings in SETTINGS.items():
            child, base, key = _start(s, name, {**settings, "IMGZ_THREADS": str(a.threads)})
            started.append(child)
            body = load.multipart(ins.small_jpeg)
            status, answer = load.post(base + "/api/1/upload", body.payload(), body.length,
                                       body.content_type, {"X-API-Key": key})
            if status != 200:
                raise RuntimeError(f"uploading to imgz ({name}): {status} {answer[:300]!r}")
            urls[name] = json.loads(answer)["image"]["url"]
            stored = s.work / f"ops-{name}" / "images" / urls[name].split("/images/", 1)[1]
            compare.check_same_bytes(urls[name], stored, f"imgz ({name})")
        if procs.http_status(urls["on"].split("/images/")[0] + "/metrics") != 200:
            raise RuntimeError("the server with metrics on does not answer /metrics")
        tool = "wrk (1 thread)" if s.use_wrk else "Python client (no wrk)"
        say(f"\n== access log and metrics on vs off: JPEG 200 KB, concurrency {a.concurrency}, "
            f"{a.rounds} rounds of {a.get_seconds:g} s, {tool}")

        pids = {"on": started[0].pid, "off": started[1].pid}
        cpu: dict[str, list[float]] = {"on": [], "off": []}

        def run(name: str, seconds: float) -> load.RunResult:
            before = _cpu_seconds(pids[name])
            result = load.get_run(urls[name], concurrency=a.concurrency, seconds=seconds,
                                  use_wrk=s.use_wrk)
            if result.requests:
                cpu[name].append((_cpu_seconds(pids[name]) - before) / result.requests)
            return result

        rates = compare.rounds(["on", "off"], run, count=a.rounds, seconds=a.get_seconds,
                               warmup=1.0, unit="req/s", alternate=True)
        cost = 1 - compare.pair_ratio(rates["on"], rates["off"])
        # the warm-up runs come first in each list: left out
        per_request = {name: values[1:] for name, values in cpu.items()}
        cpu_cost = compare.pair_ratio(per_request["on"], per_request["off"]) - 1
        say("  server CPU per request: " + ", ".join(
            f"{name} {median(values) * 1e6:.0f} µs" for name, values in per_request.items())
            + f"; on ÷ off {1 + cpu_cost:.3f}")
        with open(s.work / "ops-on.stderr", encoding="utf-8", errors="replace") as log:
            logged = sum(1 for line in log if " GET /images/" in line)
        say(f"  cost of the access log and metrics: {cost * 100:.1f}% "
            f"({logged:,} access log lines written by the on server)")
        return [Row("serve JPEG 200 KB, access log + metrics on: req/s", f"{median(rates['on']):,.0f}"),
                Row("serve JPEG 200 KB, access log + metrics off: req/s",
                    f"{median(rates['off']):,.0f}"),
                at_most("access log + metrics cost on 200 KB GETs (rate)", cost * 100, 5.0,
                        fmt="{:.1f}", goal_fmt="{:.0f}", unit="%"),
                at_most("access log + metrics cost on 200 KB GETs (server CPU per request)",
                        cpu_cost * 100, 5.0, fmt="{:.1f}", goal_fmt="{:.0f}", unit="%")]
    finally:
        for child in started:
            s.pool.stop(child)
