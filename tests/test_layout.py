"""The key layout: keys of an upload's files, date folders, what a key may be."""
from __future__ import annotations

from datetime import datetime

import pytest

from imgz import layout


@pytest.mark.parametrize("kind, extension, variant, key", [
    ("image", "png", "", "2025/01/02/cat.png"),
    ("image", "png", "th", "2025/01/02/cat.th.png"),
    ("image", "jpg", "md", "2025/01/02/cat.md.jpg"),
    ("image", "webp", "md", "2025/01/02/cat.md.webp"),
    ("video", "mp4", "", "2025/01/02/cat.mp4"),
    ("video", "mp4", "th", "2025/01/02/cat.th.jpeg"),
    ("video", "webm", "md", "2025/01/02/cat.md.jpeg"),
    ("video", "mov", "fr", "2025/01/02/cat.fr.jpeg"),
])
def test_file_keys(kind, extension, variant, key):
    assert layout.file_key("2025/01/02", "cat", extension, kind, variant) == key
    assert layout.is_key(key) and layout.is_safe(key)
    assert layout.folder_of(key) == "2025/01/02"


@pytest.mark.parametrize("moment, folder", [
    (datetime(2025, 3, 9, 23, 59), "2025/03/09"), (datetime(1970, 1, 1), "1970/01/01"),
    (datetime(999, 6, 15), "0999/06/15"), (datetime(9999, 12, 31), "9999/12/31"),
])
def test_date_folders(moment, folder):
    assert layout.date_folder(moment) == folder
    assert layout.is_key(f"{folder}/name.png")


@pytest.mark.parametrize("text", [
    "2025/01/01/cat-Ab12Cd34.png", "2025/01/01/cat.th.png", "0999/12/31/_x", "2025/01/01/a",
])
def test_keys_of_the_layout(text):
    assert layout.is_key(text)


@pytest.mark.parametrize("text", [
    "", "cat.png", "2025/01/cat.png", "2025/1/01/cat.png", "25/01/01/cat.png",
    "2025/01/01/", "2025/01/01/.hidden", "2025/01/01/..", "2025/01/01/sub/cat.png",
    "/2025/01/01/cat.png", "2025/01/01/a b.png", "2025/01/01/caf\u00e9.png", "2025/01/01/a%20b",
    "2025/01/01/a\\b", "2025/01/01/a\x00", "2025/01/01/cat.png/", "\u0662\u0660\u0662\u0665/01/01/cat.png",
])
def test_what_is_not_a_key_of_the_layout(text):
    assert not layout.is_key(text)


@pytest.mark.parametrize("key", [
    "2025/01/01/cat.png", "stray", "2025/01/01/odd name.txt", "2025/01/01/.hidden", "a/..b",
    "...", "2025/01/01/caf\u00e9.png",
])
def test_safe_keys(key):
    assert layout.is_safe(key)


@pytest.mark.parametrize("key", [
    "", "/", "/etc/passwd", "..", ".", "../x", "a/../b", "a/..", "./a", "a/./b", "a//b", "a/",
    "a\\b", "a\x00b",
])
def test_keys_that_would_leave_the_store(key):
    assert not layout.is_safe(key)


def test_the_url_prefix_is_the_folder():
    assert layout.URL_PREFIX == f"/{layout.DIR}/"
    assert layout.folder_of("stray") == ""
