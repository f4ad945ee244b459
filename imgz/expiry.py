"""When an upload expires: the ``expiration`` parameter (SPEC §6) turned into a UTC instant."""
from __future__ import annotations

import calendar
import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import isodate

from .errors import InvalidParameter

_SECONDS = re.compile(r"\+?([0-9]+)")
_AMOUNT = r"[0-9]+(?:[.,][0-9]+)?"
# The designator form: years and months are calendar steps and have no fractions (half a month
# is no number of days); 'T' must be followed by a time part ('P1DT' is not a duration).
_DURATION = re.compile(
    rf"\+?P(?!$)(?:(?P<years>[0-9]+)Y)?(?:(?P<months>[0-9]+)M)?(?:(?P<weeks>{_AMOUNT})W)?"
    rf"(?:(?P<days>{_AMOUNT})D)?(?:T(?=[0-9])(?:(?P<hours>{_AMOUNT})H)?"
    rf"(?:(?P<minutes>{_AMOUNT})M)?(?:(?P<seconds>{_AMOUNT})S)?)?")
_UNIT_SECONDS = {"weeks": 604_800, "days": 86_400, "hours": 3_600, "minutes": 60, "seconds": 1}
# An amount with more whole digits than this is beyond any maximum (the setting allows at most
# 100 years, about 3.2e9 s): it is clamped without being turned into a number that could overflow.
_HUGE_DIGITS = 15


class _Beyond(Exception):
    """The duration is positive and longer than any maximum."""


def _amount(text: str | None) -> Decimal:
    """A component's amount; raises _Beyond when it is too long to matter how long."""
    if not text:
        return Decimal(0)
    whole, _, fraction = text.replace(",", ".").partition(".")
    whole = whole.lstrip("0")
    if len(whole) > _HUGE_DIGITS:
        raise _Beyond()
    # sub-microsecond digits change nothing, and a megabyte of them would cost time
    return Decimal(f"{whole or '0'}.{fraction[:12] or '0'}")


def _add_months(moment: datetime, months: int) -> datetime:
    """``months`` calendar months later, the day clamped to the month's end (31 Jan + 1 = 28 Feb)."""
    year, month = divmod(moment.month - 1 + months, 12)
    year += moment.year
    day = min(moment.day, calendar.monthrange(year, month + 1)[1])
    return moment.replace(year=year, month=month + 1, day=day)


def _seconds_delta(seconds: Decimal) -> timedelta:
    whole = int(seconds)
    return timedelta(seconds=whole, microseconds=int((seconds - whole) * 1_000_000))


def _designated(match: re.Match[str], now: datetime, maximum: int) -> datetime:
    """The instant a designator-form duration gives; raises _Beyond past ``now + maximum``."""
    months = int(_amount(match["years"])) * 12 + int(_amount(match["months"]))
    seconds = sum(_amount(match[unit]) * factor for unit, factor in _UNIT_SECONDS.items())
    if months == 0 and seconds == 0:
        raise InvalidParameter("Invalid expiration")
    # a month is at least 28 days: past the maximum by that measure, past it for sure, and the
    # exact calendar step (which could leave the calendar) is never needed
    if months * 28 * 86_400 + seconds > maximum:
        raise _Beyond()
    return _add_months(now, months) + _seconds_delta(seconds)


def _alternative(text: str, now: datetime) -> datetime:
    """Any other form isodate reads (e.g. the alternative 'P0001-02-03T04:05:06')."""
    if text.endswith("T"):  # "P1DT": a time designator with no time after it
        raise InvalidParameter("Invalid expiration")
    duration = isodate.parse_duration(text)
    if isinstance(duration, isodate.Duration) and (duration.years % 1 or duration.months % 1):
        raise InvalidParameter("Invalid expiration")
    try:
        return now + duration
    except (OverflowError, ValueError):
        if _positive(duration):
            raise _Beyond() from None
        raise


def parse_expiration(value: str, now: datetime, minimum: int, maximum: int) -> datetime:
    """The expiry instant for an ISO-8601 duration or whole seconds, clamped to [now+min, now+max].

    Months and years are calendar steps that clamp to the month's end (from 31 January, P1M is the
    last day of February). Any positive duration too long for the calendar or for a number
    (P1000000000D, 99999999999999999999) is simply the maximum. Zero, negative or unparseable:
    Invalid expiration.
    """
    text = value.strip().upper()
    now = now.astimezone(timezone.utc)
    low, high = now + timedelta(seconds=minimum), now + timedelta(seconds=maximum)
    try:
        seconds = _SECONDS.fullmatch(text)
        designated = _DURATION.fullmatch(text)
        if seconds:
            amount = _amount(seconds[1])
            if amount == 0:
                raise InvalidParameter("Invalid expiration")
            moment = now + timedelta(seconds=min(int(amount), maximum + 1))
        elif designated:
            moment = _designated(designated, now, maximum)
        else:
            moment = _alternative(text, now)
    except _Beyond:
        moment = high
    except (isodate.ISO8601Error, ValueError, OverflowError, TypeError, ArithmeticError):
        raise InvalidParameter("Invalid expiration") from None
    if moment <= now:
        raise InvalidParameter("Invalid expiration")
    return min(max(moment, low), high).replace(microsecond=0)


def _positive(duration: timedelta | isodate.Duration) -> bool:
    if isinstance(duration, timedelta):
        return duration > timedelta(0)
    months = duration.years * 12 + duration.months
    return months > 0 or (months == 0 and duration.tdelta > timedelta(0))
