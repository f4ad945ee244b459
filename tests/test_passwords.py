"""Password hashes (argon2id through argon2-cffi), the rules for a new password, and the cap of two
hashes computed at once."""
from __future__ import annotations

import threading
import time

import pytest
from argon2 import PasswordHasher

from imgz import passwords
from imgz.errors import Busy


def test_a_hash_is_argon2id_and_checks_only_its_password():
    hashed = passwords.hash_password("correct horse battery")
    assert hashed.startswith("$argon2id$")
    assert passwords.verify(hashed, "correct horse battery")
    assert not passwords.verify(hashed, "correct horse batterY")
    assert not passwords.outdated(hashed)


@pytest.mark.parametrize("hashed", [None, "", "not a hash", "$argon2id$v=19$m=1,t=1,p=1$broken"])
def test_no_hash_or_a_broken_one_never_matches(hashed):
    assert not passwords.verify(hashed, "anything")


def test_a_hash_of_other_parameters_is_outdated():
    weak = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash("words words")
    assert passwords.verify(weak, "words words") and passwords.outdated(weak)


@pytest.mark.parametrize("new,again,problem", [
    ("1234567", None, "at least 8"), ("x" * 257, None, "at most 256"), (" " * 9, None, "only spaces"),
    ("long enough", "long enougH", "differ"), ("long enough", "long enough", None),
    ("x" * 256, None, None), ("ünïcödé ok", None, None)])
def test_the_rules_for_a_new_password(new, again, problem):
    found = passwords.problem(new, again)
    assert (found is None) if problem is None else (problem in found)


def test_at_most_two_hashes_are_computed_at_once(monkeypatch):
    running, most = [0], [0]
    lock = threading.Lock()

    class Slow:
        def hash(self, password: str) -> str:
            with lock:
                running[0] += 1
                most[0] = max(most[0], running[0])
            time.sleep(0.05)
            with lock:
                running[0] -= 1
            return "hashed"

    monkeypatch.setattr(passwords, "_HASHER", Slow())
    threads = [threading.Thread(target=passwords.hash_password, args=("x" * 8,)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most[0] == passwords.AT_ONCE == 2


def test_a_hash_that_waits_too_long_for_a_slot_is_busy(monkeypatch):
    monkeypatch.setattr(passwords, "WAIT", 0.05)
    taken = [passwords._SLOTS.acquire() for _ in range(passwords.AT_ONCE)]
    try:
        with pytest.raises(Busy):
            passwords.hash_password("long enough")
    finally:
        for _ in taken:
            passwords._SLOTS.release()
