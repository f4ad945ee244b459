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
    try:
        if _SECONDS.fullmatch(text):
            moment = now + timedelta(seconds=int(text))
        else:
            moment = now + isodate.parse_duration(text.upper())
    except (isodate.ISO8601Error, ValueError, OverflowError, TypeError):
        raise InvalidParameter("Invalid expiration") from None
    if moment <= now:
        raise InvalidParameter("Invalid expiration")
    low, high = now + timedelta(seconds=minimum), now + timedelta(seconds=maximum)
    return min(max(moment, low), high).replace(microsecond=0)
