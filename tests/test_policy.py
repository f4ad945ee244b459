"""The small pure rules: names, titles, tags, widths, sizes, durations, base64, ids."""
from __future__ import annotations

import base64
import unicodedata
from datetime import datetime, timedelta, timezone

import pytest

from imgz import chevereto, disk, ids, layout, params, sources
from imgz.errors import InvalidBase64, InvalidParameter
from imgz.service import exif_moment


@pytest.mark.parametrize("text,expected", [
    ("Badgers _ animated music video _ MrWeebl", "Badgers-animated-music-video-MrWeebl"),
    ("photo.th", "phototh"),
    ("Ärger über Öl", "Arger-uber-Ol"),
    ("北京", "BeiJing"),
    ("../../etc/passwd", "etcpasswd"),
    ("  --__  ", ""),
    ("a" * 100, "a" * 80),
    ("<script>", "script"),
])
def test_clean_name(text, expected):
    assert layout.clean_name(text) == expected


@pytest.mark.parametrize("mode,pattern_len", [("random", 16)])
def test_choose_name_random(mode, pattern_len):
    name = layout.choose_name("x", mode, "image", "2025/01/01", lambda stem: True)
    assert len(name) == pattern_len


def test_choose_name_original_takes_a_suffix_when_taken():
    taken = {"2025/01/01/shot"}
    name = layout.choose_name("shot", "original", "image", "2025/01/01",
                               lambda stem: stem not in taken)
    assert name.startswith("shot-") and len(name) == len("shot-") + 8


@pytest.mark.parametrize("mode, taken", [("mixed", set()), ("original", {"2025/01/01/" + "a" * 70 + "-" + "b" * 9})])
def test_a_cut_name_never_ends_in_a_doubled_dash(mode, taken):
    stem = "a" * 70 + " " + "b" * 20  # cut to 71 characters, the cut falls just after the '-'
    name = layout.choose_name(stem, mode, "image", "2025/01/01", lambda s: s not in taken)
    assert "--" not in name and len(name) <= layout.MAX_NAME
    assert name.startswith("a" * 70 + "-") and len(name) == 70 + 1 + 8


def test_choose_name_falls_back_when_nothing_is_left():
    assert layout.choose_name("...", "original", "image", "2025/01/01", lambda s: True) == "image"


@pytest.mark.parametrize("filename,title", [
    ("Badgers _ animated music video _ MrWeebl.mp4", "Badgers animated music video MrWeebl"),
    ("holiday-2024--beach.jpeg", "holiday 2024 beach"),
    ("no_extension", "no extension"),
    (".hidden", ".hidden"),
    ("a.b.c.png", "a.b.c"),
])
def test_title_from_filename(filename, title):
    assert params.title_from_filename(filename) == title


@pytest.mark.parametrize("value,expected", [
    ("  hello   world ", "hello world"),
    ("bell\x07 and nul\x00", "bell and nul"),
    ("line\nbreak", "line break"),
    ("x" * 150, "x" * 100),
])
def test_clean_title(value, expected):
    assert params.clean_title(value) == expected


def test_description_keeps_newlines_and_tabs_and_drops_controls():
    assert params.clean_description("a\tb\nc\x1bd\x00") == "a\tb\ncd"
    assert params.clean_description("   ") is None
    with pytest.raises(InvalidParameter, match="Description too long"):
        params.clean_description("x" * 10_001)


@pytest.mark.parametrize("value,expected", [
    ("a, b ,c", ["a", "b", "c"]),
    ("dup, DUP, dup", ["dup"]),
    ("  many   spaces  here ", ["many spaces here"]),
    ("ok, a/b, #x, " + "z" * 33, ["ok"]),
    (",,,", []),
    (",".join(f"t{i}" for i in range(80)), [f"t{i}" for i in range(50)]),
    ("a\tb, c\nd, e\r\n f", ["a b", "c d", "e f"]),
    ("0", []),
    ("0, zero", ["0", "zero"]),
    (".., ., ..., v1.2", ["v1.2"]),
    ("a\x1bb", ["ab"]),
])
def test_parse_tags(value, expected):
    assert params.parse_tags(value) == expected


@pytest.mark.parametrize("value,expected", [(None, None), ("", None), ("1", 1), ("800", 800),
                                            (" 640 ", 640), ("100000", 100000)])
def test_parse_width_good(value, expected):
    assert params.parse_width(value) == expected


@pytest.mark.parametrize("value", ["-5", "0", "1.5", "abc", "999999", "100001", "1e3", "+5", "٣"])
def test_parse_width_bad(value):
    with pytest.raises(InvalidParameter, match="Invalid width"):
        params.parse_width(value)


@pytest.mark.parametrize("value,expected", [("json", "json"), ("TXT", "txt"), ("redirect", "redirect"),
                                            ("xml", "json"), (None, "json"), ("", "json")])
def test_parse_format(value, expected):
    assert params.parse_format(value) == expected


@pytest.mark.parametrize("name,expected", [
    ("C:\\Users\\me\\shot.png", "shot.png"), ("../../etc/passwd.png", "passwd.png"),
    ("a\x00b.png", "ab.png"), ("..", ""), (None, ""),
])
def test_client_basename(name, expected):
    assert params.client_basename(name) == expected


@pytest.mark.parametrize("size,text", [(0, "0 B"), (812, "812 B"), (1000, "1 KB"), (296_400, "296.4 KB"),
                                       (3_011_299, "3 MB"), (1_200_000_000, "1.2 GB"),
                                       (999_999, "1 MB"), (5_060_000, "5.1 MB")])
def test_size_formatted(size, text):
    assert chevereto.size_formatted(size) == text


@pytest.mark.parametrize("seconds,text", [(0, "00:00"), (73, "01:13"), (3725, "62:05"), (59, "00:59")])
def test_duration_time(seconds, text):
    assert chevereto.duration_time(seconds) == text


@pytest.mark.parametrize("title,short", [("Badgers animated music video MrWeebl", "Badgers animated music vi..."),
                                         ("x" * 28, "x" * 28), ("x" * 29, "x" * 25 + "...")])
def test_truncate_title(title, short):
    assert chevereto.truncate_title(title) == short


def test_how_long_ago():
    now = datetime(2025, 1, 1, tzinfo=timezone.utc)
    assert chevereto.how_long_ago(now, now) == "moments ago"
    assert chevereto.how_long_ago(now - timedelta(minutes=1), now) == "1 minute ago"
    assert chevereto.how_long_ago(now - timedelta(hours=5), now) == "5 hours ago"


def test_error_body_shape():
    assert chevereto.error_body(401, "Invalid API key.", 100) == {
        "status_code": 401, "error": {"message": "Invalid API key.", "code": 100},
        "status_txt": "Unauthorized"}
    assert chevereto.error_body(507, "Not enough storage", 400)["status_txt"] == "Insufficient Storage"


PAYLOAD = bytes(range(256)) * 3 + b"\xfb\xff"


@pytest.mark.parametrize("text", [
    base64.b64encode(PAYLOAD).decode(),
    base64.urlsafe_b64encode(PAYLOAD).decode(),
    base64.urlsafe_b64encode(PAYLOAD).decode().rstrip("="),
    "data:image/png;base64," + base64.b64encode(PAYLOAD).decode(),
    " \n".join(base64.b64encode(PAYLOAD).decode()[i:i + 60] for i in range(0, 1030, 60)),
])
def test_decode_base64_accepts(text):
    assert sources.decode_base64(text) == PAYLOAD


@pytest.mark.parametrize("text", ["", "!!!!", "ftp://host/x.png", "abcde", "YW=Jj", "data:,hello"])
def test_decode_base64_refuses(text):
    with pytest.raises(InvalidBase64):
        sources.decode_base64(text)


def test_ids_and_secrets():
    key = ids.new_api_key()
    assert key.startswith("imgz_") and len(key) == 37
    assert ids.secret_matches(key, ids.digest(key)) and not ids.secret_matches(key + "x", ids.digest(key))
    assert len(ids.new_delete_secret()) >= 32
    assert len({ids.public_id(8) for _ in range(1000)}) == 1000


@pytest.mark.parametrize("taken,offset,zone,expected", [
    ("2019:05:04 10:00:00", None, "Europe/Berlin", "2019-05-04T08:00:00+00:00"),
    ("2019:05:04 10:00:00", "+09:00", "Europe/Berlin", "2019-05-04T01:00:00+00:00"),
    ("2019:05:04 10:00:00", None, "UTC", "2019-05-04T10:00:00+00:00"),
    ("0000:00:00 00:00:00", None, "UTC", None),
    ("garbage", None, "UTC", None),
    (None, None, "UTC", None),
    ("0999:06:15 12:00:00", None, "UTC", None),
    ("0001:01:01 00:00:00", "+14:00", "UTC", None),
    ("9999:12:31 23:59:59", "-14:00", "UTC", None),
    ("9999:12:31 23:59:59", "+14:00", "UTC", "9999-12-31T09:59:59+00:00"),
    ("9999:12:31 12:00:00", "+00:00", "Etc/GMT-14", None),        # 10000 in the site's zone
    ("1970:01:01 00:00:00", "+00:00", "UTC", "1970-01-01T00:00:00+00:00"),
    ("1970:01:01 00:00:00", "+00:30", "UTC", None),
    ("1970:01:01 05:00:00", None, "Etc/GMT+12", "1970-01-01T17:00:00+00:00"),
    ("2019:05:04 10:00:00", "+99:00", "UTC", "2019-05-04T10:00:00+00:00"),  # no such offset
])
def test_exif_moment(taken, offset, zone, expected):
    moment = exif_moment(taken, offset, zone)
    assert (moment.astimezone(timezone.utc).isoformat() if moment else None) == expected


@pytest.mark.parametrize("moment,folder", [
    (datetime(999, 6, 15), "0999/06/15"), (datetime(1, 1, 1), "0001/01/01"),
    (datetime(2025, 3, 9), "2025/03/09"), (datetime(9999, 12, 31), "9999/12/31"),
])
def test_date_folder_is_always_zero_padded(moment, folder):
    assert layout.date_folder(moment) == folder


@pytest.mark.parametrize("number", [28, 122, 27])  # ENOSPC, EDQUOT, EFBIG
def test_full_disk_errors_become_507(number):
    from imgz.errors import NoStorage

    with pytest.raises(NoStorage):
        disk.raise_storage_error(OSError(number, "full"))


def test_other_os_errors_stay_themselves():
    with pytest.raises(PermissionError):
        disk.raise_storage_error(PermissionError(13, "denied"))


FORMAT = [chr(c) for c in range(0x110000) if unicodedata.category(chr(c)) == "Cf"]


@pytest.mark.parametrize("ch", [pytest.param(ch, id=f"U+{ord(ch):04X}") for ch in FORMAT])
def test_every_format_character_but_the_joiners_is_dropped(ch):
    kept = ch in "\u200c\u200d"
    text = f"ab{ch}cd"
    expected = text if kept else "abcd"
    assert params.clean_title(text) == expected
    assert params.clean_description(f"x\n\t{text}") == f"x\n\t{expected}"
    assert params.parse_tags(f"{text}, z") == [expected, "z"]
    assert params.client_basename(f"{text}.png") == f"{expected}.png"
    assert params.title_from_filename(f"{text}.png") == expected
