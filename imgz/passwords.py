"""Passwords: argon2id hashes through argon2-cffi, and the rules a new password must meet.

Each hash costs 64 MiB and tens of milliseconds of CPU (argon2-cffi's default, RFC 9106's
low-memory profile), so a process computes at most two at once: a flood of sign-in attempts
waits for a slot, a bounded time, and is then answered 503, while memory stays bounded.
"""
from __future__ import annotations

import threading

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from .errors import Busy

MIN_LENGTH = 8
MAX_LENGTH = 256  # characters; argon2 takes any length, a form field should not
AT_ONCE = 2
WAIT = 10.0  # seconds a hash may wait for a slot before the request hears 503

_HASHER = PasswordHasher()
_SLOTS = threading.BoundedSemaphore(AT_ONCE)
_DUMMY: list[str] = []  # a hash to check against when there is no user, so both take as long


def problem(password: str, again: str | None = None) -> str | None:
    """Why a new password cannot be used, or None."""
    if len(password) < MIN_LENGTH:
        return f"A password needs at least {MIN_LENGTH} characters."
    if len(password) > MAX_LENGTH:
        return f"A password may have at most {MAX_LENGTH} characters."
    if not password.strip():
        return "A password cannot be only spaces."
    if again is not None and again != password:
        return "The two passwords differ."
    return None


class _Slot:
    def __enter__(self) -> None:
        if not _SLOTS.acquire(timeout=WAIT):
            raise Busy(5)

    def __exit__(self, *exc: object) -> None:
        _SLOTS.release()


def hash_password(password: str) -> str:
    with _Slot():
        return _HASHER.hash(password)


def verify(hashed: str | None, password: str) -> bool:
    """Whether ``password`` matches ``hashed``; with no hash (no such user, or no password set)
    a dummy is checked, so the answer takes as long and is False."""
    if len(password) > MAX_LENGTH:
        return False
    with _Slot():
        if not hashed:
            if not _DUMMY:
                _DUMMY.append(_HASHER.hash("not a password of anyone"))
            target, real = _DUMMY[0], False
        else:
            target, real = hashed, True
        try:
            _HASHER.verify(target, password)
        except (VerificationError, InvalidHashError):
            return False
        return real


def outdated(hashed: str) -> bool:
    """Whether a hash was made with other parameters than today's (rehash at the next sign-in)."""
    try:
        return _HASHER.check_needs_rehash(hashed)
    except InvalidHashError:
        return True
