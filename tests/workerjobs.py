"""Jobs for the media worker tests: each does one thing a hostile file could make a decoder do."""
from __future__ import annotations

import errno
import os
import subprocess
import time

from imgz.errors import InvalidImage

_kept: list[bytes] = []


def spans(seconds: float) -> tuple[int, float, float]:
    """Wait, and say which process waited and when."""
    start = time.monotonic()
    time.sleep(seconds)
    return os.getpid(), start, time.monotonic()


def spin() -> None:
    """Use CPU until stopped."""
    while True:
        pass


def hang_with_child(pid_file: str) -> None:
    """Start a child process, as ffmpeg would be, then wait without using CPU."""
    child = subprocess.Popen(["sleep", "600"])
    with open(pid_file, "w") as fh:
        fh.write(str(child.pid))
    time.sleep(600)


def allocate(megabytes: int) -> int:
    """Hold a large buffer for a moment."""
    block = bytearray(megabytes * 1024 * 1024)
    block[::4096] = b"x" * len(block[::4096])
    return len(block)


def keep(megabytes: int) -> int:
    """Grow the worker's memory and keep it (as a fragmented heap does after a large job)."""
    block = bytes(bytearray(megabytes * 1024 * 1024))
    _kept.append(block)
    return os.getpid()


def pid() -> int:
    return os.getpid()


def crash() -> None:
    os.abort()


def refuse(message: str) -> None:
    raise InvalidImage(message)


def full_disk() -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def ffmpeg_spin() -> None:
    """Make ffmpeg work without end, as a costly video would."""
    from imgz import video

    video._run("spin", ["-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=1000", "-f", "null", "-"],
               time.monotonic() + 120)
