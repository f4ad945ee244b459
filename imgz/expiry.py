"""When an upload expires: the ``expiration`` parameter (SPEC §6) turned into a UTC instant."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import isodate

from .errors import InvalidParameter

_SECONDS = re.compile(r"[+-]?[0-9]+")


def parse_expiration(value: str, now: datetime, minimum: int, maximum: int) -> datetime:
    """The expiry instant for an ISO-8601 duration or whole seconds, clamped to [now+min, now+max].

    Months and years are calendar steps that clamp to the month's end (isodate does this: from
    31 January, P1M is the last day of February). Zero, negative or unparseable: Invalid expiration.
    """
    text = value.strip()
    now = now.astimezone(timezone.utc)
    low, high = now + timedelta(seconds=minimum), now + timedelta(seconds=maximum)
    if len(text) > 64:
        raise InvalidParameter("Invalid expiration")
    try:
        if _SECONDS.fullmatch(text):
            seconds = int(text)
            if seconds <= 0:
                raise InvalidParameter("Invalid expiration")
            moment = now + timedelta(seconds=min(seconds, maximum + 1))
        else:
            if text.upper().endswith("T"):  # "P1DT": a time designator with no time after it
                raise InvalidParameter("Invalid expiration")
            duration = isodate.parse_duration(text.upper())
            if isinstance(duration, isodate.Duration) and (
                    duration.years % 1 or duration.months % 1):
                # A calendar step has no fractions: half a month is no number of days.
                raise InvalidParameter("Invalid expiration")
            try:
                moment = now + duration
            except (OverflowError, ValueError):
                # Past the calendar's end (P9999Y): a valid, very long duration; the clamp applies.
                if not _positive(duration):
                    raise InvalidParameter("Invalid expiration") from None
                moment = high
    except (isodate.ISO8601Error, ValueError, OverflowError, TypeError):
        raise InvalidParameter("Invalid expiration") from None
    if moment <= now:
        raise InvalidParameter("Invalid expiration")
    return min(max(moment, low), high).replace(microsecond=0)


def _positive(duration: timedelta | isodate.Duration) -> bool:
    if isinstance(duration, timedelta):
        return duration > timedelta(0)
    months = duration.years * 12 + duration.months
    return months > 0 or (months == 0 and duration.tdelta > timedelta(0))
