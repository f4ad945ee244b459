"""What a benchmark run says of itself before it starts: the versions of what it measures with,
and roughly how long the chosen parts take."""
from __future__ import annotations

import argparse
import platform
import shutil
import subprocess

import PIL

import inputs


def versions(use_wrk: bool) -> str:
    def first_line(cmd: list[str]) -> str:
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            return (out.stdout or out.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.SubprocessError):
            return "absent"

    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    return (f"Python {platform.python_version()}, Pillow {PIL.__version__}, "
            f"{first_line([inputs.ffmpeg(), '-version'])[:40]}; "
            f"nginx: {first_line([nginx, '-v'])}; "
            f"GET client: {'wrk' if use_wrk else 'Python'}")


def estimate(args: argparse.Namespace) -> float:
    """Seconds the chosen parts take on an idle 2-core machine, roughly."""
    seconds = 40.0  # inputs
    if "uploads" in args.parts:
        seconds += 9 * (args.rounds * (args.upload_seconds + 1.5) + 4)
    if "serving" in args.parts:
        seconds += 8 * (args.rounds * args.get_seconds + 1) + 5
    for part, cost in (("frame", 10), ("expiry", 10), ("memory", 60 + args.big_mib / 40),
                       ("startup", 10 + args.startup_uploads / 3000),
                       ("scale-uploads", 4 * (args.rounds * (args.upload_seconds + 1.5) + 4)),
                       ("scale-serving", 40 + 4 * (args.rounds * args.get_seconds + 1)),
                       ("scale-memory", 60 + args.big_mib / 20), ("scale-costs", 30),
                       ("two-procs", args.two_procs_seconds + 30),
                       ("scale-migrate", 40 if args.quick else 150), ("pages", 40 if args.quick else 120),
                       ("resumable", 60 + args.big_mib / 15),
                       ("backup", 60 if args.quick else 200),
                       ("opscost", 10 + 2 * (args.rounds * args.get_seconds + 1)),
                       ("percost", 60 + 8 * (2 * args.upload_seconds + 5) + args.big_mib / 20)):
        if part in args.parts:
            seconds += cost
    return seconds
