"""Natural-language time phrases -> the time range a search keeps (`"when": "last week"`).

dateparser (scrapinghub/dateparser: maintained since 2014, 200+ languages' relative forms, used by the
scrapers it was written for) reads the phrase against a reference time and says how precise it was (`period`:
day, week, month or year); the range is that whole period around the date it found ("in May 2023" -> all of
May 2023, "last week" -> Monday to Monday of the week before the reference, "two days before 2023-06-09" ->
2023-06-07). A few forms dateparser leaves out or reads as a point are handled first by the rules here:

- ``before X`` / ``until X`` and ``after X`` / ``since X``: open on one side (``since`` ends at the reference);
- ``last <month>`` / ``this <month>``: the latest such month before (or of) the reference's;
- ``last weekend`` / ``this weekend``: Saturday and Sunday;
- ``between X and Y``: from the start of X to the end of Y;
- ``<n> days/weeks/... before|after X``: the offset counted from X (dateparser counts it from the reference).

Times without a zone are UTC, as everywhere in the service. Anything unreadable raises InvalidInput naming the
field (`when`). The HTTP layer knows nothing of this module; the service calls `parse_when`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from .errors import InvalidInput

__all__ = ["TimeRange", "parse_when"]

MAX_CHARS = 200
_MONTHS = "january february march april may june july august september october november december".split()
_OPEN = re.compile(r"^(before|until|till|prior to|after|since|from)\s+(.+)$")
_REL_MONTH = re.compile(  # a literal, so tests/unit/test_regex_linear.py can check it
    r"^(last|this|past|previous)\s+(january|february|march|april|may|june|july|august|september|october|november"
    r"|december|jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)$"
)
_WEEKEND = re.compile(r"^(last|this|past|previous)\s+weekend$")
_UNITS = ("day", "days", "week", "weeks", "month", "months", "year", "years")
_LEAD = re.compile(r"^(in|on|during|at|around)\s+")


@dataclass(frozen=True)
class TimeRange:
    """[start, end) in UTC; either side None when the phrase leaves it open."""

    start: datetime | None
    end: datetime | None
    period: str  # day | week | month | year | open

    def as_dict(self) -> dict[str, Any]:
        def iso(dt: datetime | None) -> str | None:
            return None if dt is None else dt.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")

        return {"from": iso(self.start), "to": iso(self.end), "period": self.period}


def _month_start(dt: datetime, months_back: int = 0) -> datetime:
    y, m = dt.year, dt.month - months_back
    while m < 1:
        y, m = y - 1, m + 12
    return dt.replace(year=y, month=m, day=1, hour=0, minute=0, second=0, microsecond=0)


def _next_month(dt: datetime) -> datetime:
    return dt.replace(year=dt.year + 1, month=1) if dt.month == 12 else dt.replace(month=dt.month + 1)


def _span(point: datetime, period: str) -> TimeRange:
    """The whole `period` holding `point`."""
    day = point.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "week":
        start = day - timedelta(days=day.weekday())
        return TimeRange(start, start + timedelta(days=7), "week")
    if period == "month":
        start = day.replace(day=1)
        return TimeRange(start, _next_month(start), "month")
    if period == "year":
        start = day.replace(month=1, day=1)
        return TimeRange(start, start.replace(year=start.year + 1), "year")
    return TimeRange(day, day + timedelta(days=1), "day")


def _dateparser(phrase: str, ref: datetime) -> TimeRange | None:
    from dateparser.date import DateDataParser  # imported on first use: ~0.3 s, only searches with `when` pay

    settings = {
        "RELATIVE_BASE": ref.replace(tzinfo=None),
        "PREFER_DATES_FROM": "past",  # "May" in June means the May just gone
        "TIMEZONE": "UTC",
        "RETURN_AS_TIMEZONE_AWARE": False,
    }
    data = DateDataParser(languages=["en"], settings=settings).get_date_data(phrase)
    if data.date_obj is None:
        return None
    point = data.date_obj.replace(tzinfo=UTC)
    return _span(point, data.period or "day")


def _offset(phrase: str) -> tuple[str, str, str] | None:
    """("two days", "before", "2023-06-09") from "two days before 2023-06-09": an amount of a unit, a side, a
    time. String operations, not a regex: a lazy `.+?` before "before|after" backtracks quadratically."""
    for side in ("before", "after"):
        left, sep, right = phrase.partition(f" {side} ")
        if sep and right and left.rsplit(" ", 1)[-1] in _UNITS and " " in left:
            return left, side, right
    return None


def _one(phrase: str, ref: datetime) -> TimeRange | None:
    found = _offset(phrase)
    if found:  # "two days before 2023-06-09": dateparser reads the offset against now, not the date given
        amount, side, when = found
        anchor = _one(when, ref)
        if anchor is None or anchor.start is None:
            return None
        offset = f"{amount} ago" if side == "before" else f"in {amount}"
        return _dateparser(offset, anchor.start)
    m = _REL_MONTH.match(phrase)
    if m:
        month = next(i for i, name in enumerate(_MONTHS, 1) if name.startswith(m.group(2)))
        year = ref.year if (month < ref.month or (m.group(1) == "this" and month <= ref.month)) else ref.year - 1
        return _span(datetime(year, month, 1, tzinfo=UTC), "month")
    m = _WEEKEND.match(phrase)
    if m:
        day = ref.replace(hour=0, minute=0, second=0, microsecond=0)
        back = (day.weekday() - 5) % 7  # days since the latest Saturday (today if Saturday)
        saturday = day - timedelta(days=back)
        if m.group(1) != "this" and back < 2:  # in the weekend now: "last weekend" is the one before
            saturday -= timedelta(days=7)
        return TimeRange(saturday, saturday + timedelta(days=2), "weekend")
    return _dateparser(_LEAD.sub("", phrase), ref) or _dateparser(phrase, ref)


def parse_when(phrase: str, ref: datetime, field: str = "when") -> TimeRange:
    """The range `phrase` names, read against `ref` (an aware datetime; naive means UTC).

    Raises:
        InvalidInput: the phrase is empty, too long, or names no time `field` can be read as.
    """
    if ref.tzinfo is None:
        ref = ref.replace(tzinfo=UTC)
    ref = ref.astimezone(UTC)
    text = " ".join(phrase.lower().split())
    if not text:
        raise InvalidInput(field, "must not be empty (leave it out for no time condition)")
    if len(text) > MAX_CHARS:
        raise InvalidInput(field, f"is longer than {MAX_CHARS} characters")
    found: TimeRange | None
    first, sep, second = text.removeprefix("between ").partition(" and ")
    if text.startswith("between ") and sep:
        a, b = _one(first, ref), _one(second, ref)
        found = TimeRange(a.start, b.end, "open") if a and b and a.start and b.end and a.start < b.end else None
    elif (m := _OPEN.match(text)) and (inner := _one(m.group(2), ref)) is not None:
        if m.group(1) in ("before", "until", "till", "prior to"):
            found = TimeRange(None, inner.start if m.group(1) in ("before", "prior to") else inner.end, "open")
        else:  # after / since / from
            after = m.group(1) == "after"
            found = TimeRange(inner.end if after else inner.start, ref if m.group(1) == "since" else None, "open")
    else:
        found = _one(text, ref)
    if found is None:
        raise InvalidInput(
            field,
            f"{phrase!r} is no time this service can read (try 'last week', 'in May 2023', 'since 2024-01-01',"
            " '2 days before 2023-06-09')",
        )
    return found
