"""memory_spine/when.py: time phrases -> ranges, against a fixed reference time (Friday 9 June 2023, noon)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from memory_spine.errors import InvalidInput
from memory_spine.when import parse_when

REF = datetime(2023, 6, 9, 12, 0, tzinfo=UTC)

CASES = [
    # the three
    ("last week", "2023-05-29T00:00:00Z", "2023-06-05T00:00:00Z"),
    ("in May 2023", "2023-05-01T00:00:00Z", "2023-06-01T00:00:00Z"),
    ("two days before 2023-06-09", "2023-06-07T00:00:00Z", "2023-06-08T00:00:00Z"),
    # dateparser's own forms, widened to their period
    ("May 2023", "2023-05-01T00:00:00Z", "2023-06-01T00:00:00Z"),
    ("yesterday", "2023-06-08T00:00:00Z", "2023-06-09T00:00:00Z"),
    ("today", "2023-06-09T00:00:00Z", "2023-06-10T00:00:00Z"),
    ("3 days ago", "2023-06-06T00:00:00Z", "2023-06-07T00:00:00Z"),
    ("this week", "2023-06-05T00:00:00Z", "2023-06-12T00:00:00Z"),
    ("two weeks ago", "2023-05-22T00:00:00Z", "2023-05-29T00:00:00Z"),
    ("last month", "2023-05-01T00:00:00Z", "2023-06-01T00:00:00Z"),
    ("last year", "2022-01-01T00:00:00Z", "2023-01-01T00:00:00Z"),
    ("2023", "2023-01-01T00:00:00Z", "2024-01-01T00:00:00Z"),
    ("in 2022", "2022-01-01T00:00:00Z", "2023-01-01T00:00:00Z"),
    ("on 8 May, 2023", "2023-05-08T00:00:00Z", "2023-05-09T00:00:00Z"),
    ("2023-05-08T13:56:00Z", "2023-05-08T00:00:00Z", "2023-05-09T00:00:00Z"),
    ("  In   MAY 2023 ", "2023-05-01T00:00:00Z", "2023-06-01T00:00:00Z"),
    # the rules layered on top
    ("last May", "2023-05-01T00:00:00Z", "2023-06-01T00:00:00Z"),
    ("last June", "2022-06-01T00:00:00Z", "2022-07-01T00:00:00Z"),
    ("this June", "2023-06-01T00:00:00Z", "2023-07-01T00:00:00Z"),
    ("last weekend", "2023-06-03T00:00:00Z", "2023-06-05T00:00:00Z"),
    ("before 2023-06-01", None, "2023-06-01T00:00:00Z"),
    ("until May 2023", None, "2023-06-01T00:00:00Z"),
    ("after May 2023", "2023-06-01T00:00:00Z", None),
    ("since May 2023", "2023-05-01T00:00:00Z", "2023-06-09T12:00:00Z"),
    ("between March 2023 and May 2023", "2023-03-01T00:00:00Z", "2023-06-01T00:00:00Z"),
    # offsets count from the date given, not from the reference
    ("three days before 2023-05-10", "2023-05-07T00:00:00Z", "2023-05-08T00:00:00Z"),
    ("2 weeks after 1 March 2022", "2022-03-14T00:00:00Z", "2022-03-21T00:00:00Z"),
    ("a month before May 2023", "2023-04-01T00:00:00Z", "2023-05-01T00:00:00Z"),
]


@pytest.mark.parametrize(("phrase", "start", "end"), CASES)
def test_phrase_to_range(phrase: str, start: str | None, end: str | None) -> None:
    got = parse_when(phrase, REF).as_dict()
    assert (got["from"], got["to"]) == (start, end)


def test_naive_reference_is_utc() -> None:
    assert parse_when("yesterday", REF.replace(tzinfo=None)) == parse_when("yesterday", REF)


@pytest.mark.parametrize("phrase", ["blorp", "", "   ", "x" * 300, "between May 2023 and March 2023"])
def test_unreadable_names_the_field(phrase: str) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_when(phrase, REF)
    assert err.value.field == "when"
