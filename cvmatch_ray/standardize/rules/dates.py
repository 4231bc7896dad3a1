"""Date ranges as CVs write them, and the union of their months.

Understood forms: ``Jan 2019 – Present``, ``January 2019 - Current``, ``2017-2019``,
``2017 – 2019``, ``03/2015 to 06/2018``, ``06.2015 - 08.2018``, ``Sep 2018 to Dec 2020``,
``Sept. 2018 – Now``, ``2019-03 – 2020-01``, ``since 2019``. "Present", "Current", "Now",
"Today", "till date", "to date" and "ongoing" mean the range is current and ends at
``today``'s month.

Months are counted on half-open month intervals. An end written with a month counts that
month ("Jan 2019 - Mar 2019" is 3 months); an end written as a bare year counts up to and
including January of that year ("2017 - 2019" is 25 months): a year-only range rarely
means both whole calendar years, and this keeps back-to-back "2015 - 2017, 2017 - 2020"
close to the five years they usually mean.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

_MONTHS = {
    "jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6, "jul": 7, "aug": 8, "sep": 9, "oct": 10,
    "nov": 11, "dec": 12,
}
_MONTH_NAME = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|"
    r"sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
)
_YEAR = r"(?:19[5-9]\d|20\d\d)"
_SHORT_YEAR = r"\d{2}"
# One date: "Jan 2019", "Jan. '19", "January, 2019", "03/2015", "3.2015", "2019-03", "2019".
_DATE = (
    rf"(?:{_MONTH_NAME}[\s,'’-]*(?:{_YEAR}|['’]{_SHORT_YEAR})"
    rf"|(?:0?[1-9]|1[0-2])\s*[/.-]\s*{_YEAR}"
    rf"|{_YEAR}\s*[/.-]\s*(?:0[1-9]|1[0-2])(?![\d])"
    rf"|{_YEAR})"
)
_PRESENT = r"(?:present|current(?:ly)?|now|today|till\s+date|til\s+date|to\s+date|date|ongoing|continuing)"
_SEP = r"\s*(?:-|–|—|~|to|until|till|through|thru)\s*"
RANGE_RE = re.compile(
    rf"(?<![\w/.])(?P<start>{_DATE}){_SEP}(?P<end>{_DATE}|{_PRESENT})(?![\w/])"
    rf"|\bsince\s+(?P<since>{_DATE})(?![\w/])",
    re.IGNORECASE,
)
_DATE_ONLY = re.compile(_DATE, re.IGNORECASE)
_MONTH_RE = re.compile(_MONTH_NAME, re.IGNORECASE)
YEAR_RE = re.compile(rf"(?<!\d){_YEAR}(?!\d)")


@dataclass(frozen=True, slots=True)
class DateRange:
    """A parsed range: ``[start, end)`` in month indices (year * 12 + month - 1)."""

    start: int
    end: int
    current: bool
    span: tuple[int, int]
    """Character offsets of the range in the text it was found in."""

    @property
    def months(self) -> int:
        return max(0, self.end - self.start)

    @property
    def start_ym(self) -> str:
        return _ym(self.start)

    @property
    def end_ym(self) -> str:
        return _ym(self.end - 1)


def _ym(index: int) -> str:
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def month_index(d: date) -> int:
    """The month index of a date."""
    return d.year * 12 + d.month - 1


def _parse_date(text: str) -> tuple[int, bool] | None:
    """(month index, month was written) of one date, or None."""
    text = text.strip()
    m = _MONTH_RE.match(text)
    if m:
        month = _MONTHS[m.group().lower()[:3]]
        rest = text[m.end():]
        y = re.search(r"\d{2,4}", rest)
        if not y:
            return None
        year = int(y.group())
        if year < 100:
            year += 2000 if year <= 40 else 1900
        return year * 12 + month - 1, True
    nums = re.findall(r"\d+", text)
    if len(nums) == 2:
        a, b = (int(n) for n in nums)
        year, month = (a, b) if a > 12 else (b, a)
        if not 1 <= month <= 12:
            return None
        return year * 12 + month - 1, True
    if len(nums) == 1 and len(nums[0]) == 4:
        return int(nums[0]) * 12, False
    return None


def find_ranges(text: str, *, today: date | None = None) -> list[DateRange]:
    """All date ranges in ``text``, in order; impossible ones (end before start, future) dropped.

    Args:
        text: any text.
        today: the date "Present" means; defaults to the current date.
    """
    now = month_index(today or date.today())
    out: list[DateRange] = []
    for m in RANGE_RE.finditer(text):
        if m.group("since"):
            start = _parse_date(m.group("since"))
            if start is None:
                continue
            end_idx, current = now + 1, True
            start_idx = start[0]
        else:
            start = _parse_date(m.group("start"))
            if start is None:
                continue
            start_idx = start[0]
            end_text = m.group("end")
            if _DATE_ONLY.fullmatch(end_text.strip()):
                end = _parse_date(end_text)
                if end is None:
                    continue
                end_idx, explicit = end
                current = False
                if explicit:
                    end_idx += 1
                elif end_idx // 12 == start_idx // 12:
                    end_idx += 12  # "2018 - 2018": the whole year
                else:
                    end_idx += 1
            else:
                end_idx, current = now + 1, True
        if start_idx >= end_idx or start_idx > now or end_idx > now + 13:
            continue
        out.append(DateRange(start_idx, min(end_idx, now + 1), current, m.span()))
    return out


def union_months(ranges: list[DateRange]) -> int:
    """Months covered by at least one range (overlaps counted once)."""
    total = 0
    cur_start = cur_end = None
    for r in sorted(ranges, key=lambda r: r.start):
        if cur_end is None or r.start > cur_end:
            if cur_end is not None:
                total += cur_end - cur_start
            cur_start, cur_end = r.start, r.end
        else:
            cur_end = max(cur_end, r.end)
    if cur_end is not None:
        total += cur_end - cur_start
    return total
