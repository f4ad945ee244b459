"""The expiration parser and its clamp, with a fixed now (min 300 s, max 366 days)."""
from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import isodate
import pytest

from imgz.errors import InvalidParameter
from imgz.expiry import parse_expiration

NOW = datetime(2025, 3, 10, 8, 30, tzinfo=timezone.utc)
MIN, MAX = 300, 366 * 86400


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


@pytest.mark.parametrize("value,now,expected", [
    ("PT5M", NOW, NOW + timedelta(minutes=5)),
    ("PT1H", NOW, NOW + timedelta(hours=1)),
    ("P3D", NOW, NOW + timedelta(days=3)),
    ("P1W", NOW, NOW + timedelta(days=7)),
    ("600", NOW, NOW + timedelta(minutes=10)),
    ("P1M", at(2025, 1, 31, 12), at(2025, 2, 28, 12)),
    ("P1M", at(2024, 1, 31), at(2024, 2, 29)),
    ("P1Y", at(2024, 2, 29), at(2025, 2, 28)),
    ("PT1M", NOW, NOW + timedelta(minutes=5)),
    ("P2Y", NOW, NOW + timedelta(days=366)),
    ("pt10m", NOW, NOW + timedelta(minutes=10)),
    (" P1D ", NOW, NOW + timedelta(days=1)),
    ("99999999999999999999999", NOW, NOW + timedelta(days=366)),
    ("P9999Y", NOW, NOW + timedelta(days=366)),
    ("P99999D", NOW, NOW + timedelta(days=366)),
    ("P1.5D", NOW, NOW + timedelta(hours=36)),
    ("PT0.5H", NOW, NOW + timedelta(minutes=30)),
])
def test_parse_and_clamp(value, now, expected):
    assert parse_expiration(value, now, MIN, MAX) == expected


@pytest.mark.parametrize("value", ["abc", "P", "PT", "PT0S", "0", "-PT5M", "-600", "", "P1Q",
                                   "1.5", "-99999999999999999999999",
                                   "P0.5M", "P1.5M", "P1,5M", "P0.5Y", "P1Y0.5M", "P1DT", "PT"])
def test_invalid(value):
    with pytest.raises(InvalidParameter, match="Invalid expiration"):
        parse_expiration(value, NOW, MIN, MAX)


HUGE = [
    "P1000000000D", "PT99999999999999999999S", "P1M1000000000D", "99999999999999999999",
    "P9999999999Y", "P" + "9" * 100 + "Y", "P1000000000W", "PT1000000000000H", "PT" + "9" * 30 + "M",
    "P100000000000M", "P1Y1000000000000000M", "P1DT99999999999999999999.5S", "PT15" + "0" * 40 + ",5S",
    "9" * 5_000, "PT" + "9" * 5_000 + "S", "+P1000000000D", "p1000000000d", " P1000000000D ",
    "P" + "0" * 50 + "1000000000D", "P1000000000.000001D", "999999999999999",
]


@pytest.mark.parametrize("value", HUGE)
def test_long_valid_durations_are_the_maximum(value):
    assert parse_expiration(value, NOW, MIN, MAX) == NOW + timedelta(seconds=MAX)


def _huge_duration(rng: random.Random) -> str:
    """A designator-form duration with at least one component far beyond the maximum."""
    parts = {unit: str(rng.randrange(0, 50)) for unit in "YMWDHmS" if rng.random() < 0.4}
    unit = rng.choice("YMWDHmS")
    parts[unit] = str(rng.randrange(10 ** 9, 10 ** rng.randrange(10, 40)))
    if unit in "WDHmS" and rng.random() < 0.5:
        parts[unit] += "." + str(rng.randrange(10 ** 6))
    date = "".join(parts[u] + u for u in "YMWD" if u in parts)
    time = "".join(parts[u] + u.upper() for u in "HmS" if u in parts)
    return "P" + date + ("T" + time if time else "")


@pytest.mark.parametrize("seed", range(40))
def test_generated_long_durations_are_the_maximum(seed):
    value = _huge_duration(random.Random(seed))
    assert parse_expiration(value, NOW, MIN, MAX) == NOW + timedelta(seconds=MAX), value


@pytest.mark.parametrize("seed", range(40))
def test_generated_durations_within_range_agree_with_isodate(seed):
    """Inside the range the parser gives what isodate's calendar arithmetic gives."""
    rng = random.Random(seed)
    parts = {u: rng.randrange(0, 6) for u in "YMWDHmS" if rng.random() < 0.5}
    parts.setdefault("D", 1)
    parts["Y"] = min(parts.get("Y", 0), 0)  # keep within 366 days
    parts["M"] = min(parts.get("M", 0), 3)
    date = "".join(f"{parts[u]}{u}" for u in "YMWD" if parts.get(u))
    time = "".join(f"{parts[u]}{u.upper()}" for u in "HmS" if parts.get(u))
    value = "P" + date + ("T" + time if time else "")
    start = NOW + timedelta(days=rng.randrange(0, 400), hours=rng.randrange(24))
    expected = min(start + isodate.parse_duration(value), start + timedelta(seconds=MAX))
    assert parse_expiration(value, start, MIN, MAX) == max(expected, start + timedelta(seconds=MIN))


@pytest.mark.parametrize("value", [
    "P0D", "PT0.0S", "P0Y0M0W0DT0H0M0S", "P" + "0" * 50 + "D", "000", "PT0.0000000000001S",
    "-P1000000000D", "-" + "9" * 30, "P-1000000000D", "PT-99999999999999999999S",
    "P1.5Y1000000000D", "P1000000000DT", "P1000000000", "1000000000D", "P1000000000D1",
    "P1000000000Q", "PT1000000000D", "P1E9D", "P1000000000DP1D",
])
def test_zero_negative_and_unparseable_stay_invalid(value):
    with pytest.raises(InvalidParameter, match="Invalid expiration"):
        parse_expiration(value, NOW, MIN, MAX)
