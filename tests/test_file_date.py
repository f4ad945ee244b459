"""use_file_date at the calendar's edges, through the app: every upload is stored, its file URL
answers, and a date outside 1970-9999 (in UTC or in the site's zone) leaves the upload date."""
from __future__ import annotations

import calendar
import random
import re
from datetime import date, datetime, timedelta, timezone

import pytest

import media
from contract import assert_upload_ok
from inprocess import InProcess

# Fixed-offset zones (Etc/GMT-14 is UTC+14), so the expected local date is plain arithmetic.
ZONES = {"UTC": 0, "Etc/GMT-14": 14 * 60, "Etc/GMT+12": -12 * 60}
OFFSETS = [None, "+14:00", "-14:00", "+00:00", "-12:00", "+05:45", "-09:30"]
EDGE_YEARS = [1, 2, 999, 1000, 1969, 1970, 1971, 9998, 9999]


@pytest.fixture(scope="module", params=list(ZONES))
def site(request, tmp_path_factory) -> InProcess:
    srv = InProcess(tmp_path_factory.mktemp("file-date"), {"IMGZ_TIMEZONE": request.param})
    srv.zone = request.param
    yield srv
    srv.stop()


def _minutes(offset: str) -> int:
    sign = -1 if offset.startswith("-") else 1
    hours, minutes = offset[1:].split(":")
    return sign * (int(hours) * 60 + int(minutes))


def _expected_local(taken: datetime, offset: str | None, zone_minutes: int) -> str | None:
    """The site-local 'YYYY-MM-DD HH:MM:SS' the upload should carry, or None when it falls back.

    Counted in minutes from the proleptic calendar's day 1, so no datetime can overflow here.
    """
    stamp = taken.date().toordinal() * 1440 + taken.hour * 60 + taken.minute
    utc = stamp - (_minutes(offset) if offset else zone_minutes)
    local = utc + zone_minutes
    for minutes in (utc, local):
        if not 1 <= minutes // 1440 <= date.max.toordinal():
            return None
        if not 1970 <= date.fromordinal(minutes // 1440).year <= 9999:
            return None
    day = date.fromordinal(local // 1440)
    return f"{day.isoformat()} {local % 1440 // 60:02d}:{local % 60:02d}:{taken.second:02d}"


def _upload(srv: InProcess, taken: str, offset: str | None) -> tuple[dict, datetime]:
    exif = media.exif_bytes(date_time_original=taken, offset_time_original=offset)
    before = datetime.now(timezone.utc)
    response = srv.upload(media.jpeg(24, 16, color="teal", exif=exif), filename="dated.jpg",
                          use_file_date="1")
    return assert_upload_ok(response), before


def _check(srv: InProcess, taken: str, offset: str | None) -> None:
    image, before = _upload(srv, taken, offset)
    folder = re.search(r"/images/(\d{4})/(\d{2})/(\d{2})/[^/]+$", image["url"])
    assert folder, image["url"]
    assert image["date"][:10] == "-".join(folder.groups())
    assert srv.get(image["url"]).status_code == 200
    assert srv.get(image["thumb"]["url"]).status_code == 200
    expected = _expected_local(datetime.strptime(taken, "%Y:%m:%d %H:%M:%S"), offset, ZONES[srv.zone])
    if expected is not None:
        assert image["date"] == expected
    else:
        stored = datetime.strptime(image["date_gmt"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc)
        assert before - timedelta(seconds=2) <= stored <= datetime.now(timezone.utc) + timedelta(seconds=2)


@pytest.mark.parametrize("taken,offset", [
    ("0999:06:15 12:00:00", None),
    ("0001:01:01 00:00:00", "+14:00"),
    ("9999:12:31 23:59:59", "-14:00"),
    ("0001:01:01 00:00:00", None),
    ("9999:12:31 23:59:59", None),
    ("9999:12:31 23:59:59", "+14:00"),
    ("1969:12:31 23:59:59", "+00:00"),
    ("1970:01:01 00:00:00", "+00:00"),
    ("1970:01:01 00:00:00", "+14:00"),
    ("1000:01:01 00:00:00", "-12:00"),
])
def test_edge_dates(site, taken, offset):
    _check(site, taken, offset)


@pytest.mark.parametrize("seed", range(12))
def test_generated_edge_dates(site, seed):
    rng = random.Random(f"{site.zone}:{seed}")
    year = rng.choice(EDGE_YEARS)
    month = rng.choice([1, 12, rng.randrange(1, 13)])
    day = rng.choice([1, calendar.monthrange(year, month)[1]])
    moment = f"{year:04d}:{month:02d}:{day:02d} {rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}"
    _check(site, moment, rng.choice(OFFSETS))
