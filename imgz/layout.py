"""The key layout of stored files: ``YYYY/MM/DD/<name>.<ext>`` and the names in it.

An upload's original is ``<folder>/<name>.<ext>``; its thumb, medium and a video's frame are
``<name>.th.<ext>``, ``<name>.md.<ext>`` and ``<name>.fr.jpeg`` beside it. Keys are the same
whatever keeps the files: the store (imgz.store) maps them to places, the file URLs put
``URL_PREFIX`` before them. This module only spells keys; it never touches a disk.
"""
from __future__ import annotations

import re
from datetime import datetime
from typing import Callable

from anyascii import anyascii

from . import ids

# The stored files' folder under the data directory, and the first segment of their URLs.
DIR = "images"
URL_PREFIX = f"/{DIR}/"

# Stored names are [A-Za-z0-9_-] plus variant and extension suffixes, so an allow-list refuses
# every trick at once: `..`, empty segments, backslashes, NUL, `%`, spaces, non-ASCII.
KEY = re.compile(r"\d{4}/\d{2}/\d{2}/[A-Za-z0-9_-][A-Za-z0-9._-]*", re.ASCII)
# What no key may hold, whoever made it: an empty, "." or ".." segment (a leading "/" makes an
# empty one), a backslash or a NUL.
UNSAFE = re.compile(r"(?:^|/)\.{0,2}(?:/|$)|[\\\x00]")

MAX_NAME = 80
_NAME_RUNS = re.compile(r"[\s_-]+")
_NAME_DROP = re.compile(r"[^A-Za-z0-9_-]")


def is_key(text: str) -> bool:
    """Whether text is a key of this layout (what a file URL may name)."""
    return KEY.fullmatch(text) is not None


def is_safe(key: str) -> bool:
    """Whether a key stays below the store's root: relative, no empty, "." or ".." segment, no
    backslash or NUL. Any store refuses the others; a key need not follow the layout to be safe
    (a stray file found under the root is listed and removed by its key)."""
    return KEY.fullmatch(key) is not None or UNSAFE.search(key) is None  # the first is quicker


def in_data_dir(key: str) -> str:
    """How reports name a stored file: its key as a path under the data directory."""
    return f"{DIR}/{key}"


def date_folder(moment: datetime) -> str:
    """'YYYY/MM/DD', always zero-padded (strftime's %Y gives '999' for year 999 on glibc)."""
    return f"{moment.year:04d}/{moment.month:02d}/{moment.day:02d}"


def file_key(folder: str, name: str, extension: str, kind: str, variant: str = "") -> str:
    """The key of one file of an upload: variant '' (original), th, md or fr.

    Thumbs, mediums and frames of videos are JPEG; those of images keep the original's format.
    """
    if not variant:
        return f"{folder}/{name}.{extension}"
    ext = "jpeg" if kind == "video" else extension
    return f"{folder}/{name}.{variant}.{ext}"


def folder_of(key: str) -> str:
    """The folder part of a key ('' for a key without one)."""
    return key.rpartition("/")[0]


def clean_name(text: str) -> str:
    """A file-name-safe ASCII version of text: runs of space, _ and - become one -, no dots."""
    ascii_text = anyascii(text)
    joined = _NAME_RUNS.sub("-", ascii_text)
    kept = _NAME_DROP.sub("", joined)
    kept = re.sub(r"-{2,}", "-", kept).strip("-")
    return kept[:MAX_NAME].strip("-")


def choose_name(original_stem: str, mode: str, fallback: str, folder: str,
                reserve: Callable[[str], bool]) -> str:
    """Pick and reserve a stored name in folder; ``reserve('YYYY/MM/DD/name')`` claims it atomically."""
    base = clean_name(original_stem) or fallback
    for attempt in range(64):
        if mode == "random":
            name = ids.random_base62(16)
        elif mode == "original" and attempt == 0:
            name = base
        else:
            suffix = ids.random_base62(8)
            name = f"{base[:MAX_NAME - 9].rstrip('-')}-{suffix}"
        if reserve(f"{folder}/{name}"):
            return name
    raise RuntimeError("could not reserve a stored name")
