"""The Dynatrace timestamp formats: what `expirationDate`, `from` and `to` accept, and what responses carry.

Accepted (Tokens API docs): UTC milliseconds (`1611554221123`); `2021-01-25T05:57:01.123+01:00` where
the zone is optional (UTC), a space may stand for `T`, and seconds and the fraction are optional;
relative `now`, `now+14d`, `now-1h/d` with units m h d w M y and an optional `/unit` alignment that
rounds down. Responses always carry UTC ISO 8601 with milliseconds and `Z`.

Pure functions; the clock is passed in.
"""

from __future__ import annotations

import calendar
import re
from datetime import UTC, datetime, timedelta

__all__ = ["DateFormatError", "format_date", "is_relative", "parse_date"]

_RELATIVE = re.compile(
    r"^now(?:(?P<sign>[+-])(?P<amount>\d{1,9})(?P<unit>[mhdwMy]))?(?:/(?P<align>[mhdwMy]))?$"
)
_ABSOLUTE = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})[T ](?P<h>\d{2}):(?P<m>\d{2})"
    r"(?::(?P<s>\d{2})(?:\.(?P<frac>\d{1,9}))?)?"
    r"(?P<zone>Z|[+-]\d{2}:?\d{2})?$"
)
_MILLIS = re.compile(r"^\d{1,15}$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class DateFormatError(ValueError):
    """The text is in none of the accepted formats."""


def is_relative(text: str) -> bool:
    return text.strip().startswith("now")


def parse_date(text: str, *, now: datetime) -> datetime:
    """Parse any accepted format into an aware UTC datetime truncated to milliseconds."""
    value = text.strip()
    if _MILLIS.match(value):
        try:
            return _EPOCH + timedelta(milliseconds=int(value))  # exact: no float division
        except (OverflowError, OSError, ValueError) as error:
            raise DateFormatError(f"timestamp {value!r} is out of range") from error
    if relative := _RELATIVE.match(value):
        return _truncate(_parse_relative(relative, now=now))
    if absolute := _ABSOLUTE.match(value):
        return _truncate(_parse_absolute(absolute))
    raise DateFormatError(
        f"{value!r} is not a UTC millisecond timestamp, an ISO 8601 date such as "
        "2021-01-25T05:57:01.123+01:00, nor a relative time such as now+14d"
    )


def format_date(moment: datetime) -> str:
    """UTC ISO 8601 with milliseconds and `Z`, as every Dynatrace response writes dates."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def _truncate(moment: datetime) -> datetime:
    return moment.replace(microsecond=moment.microsecond - moment.microsecond % 1000)


def _parse_absolute(match: re.Match[str]) -> datetime:
    zone = match["zone"]
    offset = timedelta(0)
    if zone and zone != "Z":
        digits = zone[1:].replace(":", "")
        offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        if zone[0] == "-":
            offset = -offset
    fraction = (match["frac"] or "0").ljust(6, "0")[:6]
    try:
        naive = datetime.fromisoformat(match["date"]).replace(
            hour=int(match["h"]),
            minute=int(match["m"]),
            second=int(match["s"] or 0),
            microsecond=int(fraction),
        )
        return (naive - offset).replace(tzinfo=UTC)
    except (ValueError, OverflowError) as error:
        raise DateFormatError(f"{match.string!r} is not a valid date: {error}") from error


def _parse_relative(match: re.Match[str], *, now: datetime) -> datetime:
    moment = now.astimezone(UTC)
    try:
        if match["unit"]:
            amount = int(match["amount"]) * (1 if match["sign"] == "+" else -1)
            moment = _shift(moment, amount, match["unit"])
        if match["align"]:
            moment = _align(moment, match["align"])
    except (OverflowError, ValueError) as error:
        raise DateFormatError(f"{match.string!r} is out of range") from error
    return moment


def _shift(moment: datetime, amount: int, unit: str) -> datetime:
    if unit in "mhdw":
        return moment + timedelta(**{{"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[unit]: amount})
    months = moment.month - 1 + amount * (12 if unit == "y" else 1)
    year, month = moment.year + months // 12, months % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def _align(moment: datetime, unit: str) -> datetime:
    if unit == "m":
        return moment.replace(second=0, microsecond=0)
    if unit == "h":
        return moment.replace(minute=0, second=0, microsecond=0)
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if unit == "d":
        return day
    if unit == "w":
        return day - timedelta(days=day.weekday())
    if unit == "M":
        return day.replace(day=1)
    return day.replace(month=1, day=1)
