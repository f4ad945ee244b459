"""The expiration parser and its clamp, with a fixed now (min 300 s, max 366 days)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

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
                                   "1.5", "-99999999999999999999999", "P" + "9" * 100 + "Y",
                                   "P0.5M", "P1.5M", "P1,5M", "P0.5Y", "P1Y0.5M", "P1DT", "PT"])
def test_invalid(value):
    with pytest.raises(InvalidParameter, match="Invalid expiration"):
        parse_expiration(value, NOW, MIN, MAX)
