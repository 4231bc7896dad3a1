"""Date ranges in the forms CVs use, and the union of their months."""

from __future__ import annotations

from datetime import date

import pytest

from cvmatch_ray.standardize.rules.dates import find_ranges, union_months

TODAY = date(2024, 6, 15)


@pytest.mark.parametrize(
    ("text", "start", "end", "months", "current"),
    [
        ("Jan 2019 – Present", "2019-01", "2024-06", 66, True),
        ("January 2019 - Current", "2019-01", "2024-06", 66, True),
        ("Sept. 2018 – Now", "2018-09", "2024-06", 70, True),
        ("March 2020 to Today", "2020-03", "2024-06", 52, True),
        ("2017-2019", "2017-01", "2019-01", 25, False),
        ("2017 – 2019", "2017-01", "2019-01", 25, False),
        ("2018 - 2018", "2018-01", "2018-12", 12, False),
        ("03/2015 to 06/2018", "2015-03", "2018-06", 40, False),
        ("06.2015 - 08.2018", "2015-06", "2018-08", 39, False),
        ("Sep 2018 to Dec 2020", "2018-09", "2020-12", 28, False),
        ("2019-03 – 2020-01", "2019-03", "2020-01", 11, False),
        ("Jan '19 - Mar '20", "2019-01", "2020-03", 15, False),
        ("since 2021", "2021-01", "2024-06", 42, True),
    ],
)
def test_range_forms(text: str, start: str, end: str, months: int, current: bool) -> None:
    (r,) = find_ranges(text, today=TODAY)
    assert (r.start_ym, r.end_ym, r.months, r.current) == (start, end, months, current)
    assert text[r.span[0]:r.span[1]].strip()


def test_range_inside_a_line_keeps_its_span() -> None:
    line = "June 2011 to Current Senior Accountant"
    (r,) = find_ranges(line, today=TODAY)
    assert line[r.span[1]:].strip() == "Senior Accountant"


@pytest.mark.parametrize("text", ["C-level 2018", "Revenue grew 2019", "2020 - 2017", "Jan 2030 - Present"])
def test_not_ranges(text: str) -> None:
    assert find_ranges(text, today=TODAY) == []


def test_present_depends_on_today() -> None:
    (a,) = find_ranges("Jan 2020 - Present", today=date(2020, 12, 1))
    (b,) = find_ranges("Jan 2020 - Present", today=date(2021, 12, 1))
    assert (a.months, b.months) == (12, 24)


def test_union_counts_overlaps_once() -> None:
    ranges = find_ranges(
        "Jan 2015 - Dec 2016\nJun 2016 - Dec 2017\nJan 2020 - Dec 2020", today=TODAY
    )
    assert [r.months for r in ranges] == [24, 19, 12]
    assert union_months(ranges) == 36 + 12  # 2015-01..2017-12, then 2020


def test_union_of_nested_and_adjacent() -> None:
    ranges = find_ranges("Jan 2010 - Dec 2019\nMar 2012 - Apr 2013\nJan 2020 - Jun 2020", today=TODAY)
    assert union_months(ranges) == 120 + 6
    assert union_months([]) == 0
