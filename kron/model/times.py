"""Times as records write them: RFC 3339 in UTC, parsed back into aware datetimes."""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime, timedelta, timezone

__all__ = ["format_time", "parse_time"]

_RFC3339 = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:\.(\d+))?(?:([Zz])|([+-])(\d\d):(\d\d))"
)


# Times repeat: the cursors and first-seen times of jobs loaded together are one instant.
@functools.lru_cache(maxsize=4096)
def parse_time(text: str) -> datetime:
    """Parse an RFC 3339 timestamp into an aware UTC datetime.

    Fractions beyond microseconds are truncated; a leap second (`:60`) is rejected.

    Raises:
        ValueError: `text` is not RFC 3339 with an offset or `Z`.
    """
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not an RFC 3339 time like 2026-11-22T03:00:00Z")
    year, month, day, hour, minute, second = (int(g) for g in match.group(1, 2, 3, 4, 5, 6))
    fraction, zulu, sign, off_h, off_m = match.group(7, 8, 9, 10, 11)
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    offset = timedelta(0)
    if not zulu:
        offset = timedelta(hours=int(off_h), minutes=int(off_m)) * (1 if sign == "+" else -1)
        if int(off_h) > 23 or int(off_m) > 59:
            raise ValueError(f"{text!r} has an impossible UTC offset")
    local = datetime(year, month, day, hour, minute, second, micro, tzinfo=timezone(offset))
    try:
        return local.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{text!r} is out of range in UTC") from None


@functools.lru_cache(maxsize=4096)
def format_time(dt: datetime) -> str:
    """Write an aware datetime as RFC 3339 UTC: `2026-11-22T03:00:00Z`, `...00.250000Z`.

    Microseconds appear, as six digits, only when they are not zero, so whole-second slots read
    as cron writes them.
    """
    if dt.utcoffset() is None:
        raise ValueError(f"{dt!r} is naive; records hold aware times only")
    return dt.astimezone(UTC).replace(tzinfo=None).isoformat() + "Z"
