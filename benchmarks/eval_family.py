"""Pure helpers for the within-family task and the metamorphic checks (``eval_matching.py``).

Kept apart from ``eval_lib`` (the category tasks) so each stays a readable size; plain Python
and numpy, no model and no Ray, unit-tested in ``tests/test_eval_lib.py``:

- the dev / held-out split of queries (a hash of the query id, so it never follows content);
- task C: within one category, rank that category's resumes for a posting, with graded
  relevance from two proxies the scorer does not compute the same way (the resume's own
  title line against the posting's title, and the years its date ranges span against the
  posting's stated minimum);
- text edits for the metamorphic checks (remove a skill's mentions, add a dated role).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

try:  # run as a script: benchmarks/ is on sys.path
    import eval_lib as el
except ImportError:  # imported as part of the repository
    from benchmarks import eval_lib as el

DEV, HELD_OUT = "dev", "held-out"


def split_of(query_id: str) -> str:
    """``"dev"`` or ``"held-out"`` for a query: the parity of the first byte of sha1(id).

    Weights are tuned on the dev half only; the held-out half says whether that tuning
    carries to postings it never saw.
    """
    return DEV if hashlib.sha1(query_id.encode("utf-8")).digest()[0] % 2 == 0 else HELD_OUT


# --------------------------------------------------------------------------------------
# Task C labels
# --------------------------------------------------------------------------------------

#: Words that say rank or contract, not the job: the title proxy ignores them (the years
#: proxy covers seniority).
_TITLE_NOISE = frozenset(
    """senior sr junior jr lead head principal staff chief associate assistant intern trainee
    i ii iii iv of and the for in at to with a an full time part""".split()
)
_WORD = re.compile(r"[a-z][a-z0-9+#]*")
#: A crude stem: the first five letters ("accountant", "accounting" -> "accou").
STEM_CHARS = 5


def title_words(title: str) -> frozenset[str]:
    """Stemmed content words of a title's core (the text before the first , ( - | or /)."""
    core = re.split(r"\s[-–—|]\s|[,(/|]", title or "", maxsplit=1)[0].lower()
    return frozenset(w[:STEM_CHARS] for w in _WORD.findall(core) if w not in _TITLE_NOISE)


def title_grade(cv_title: str, jd_title: str) -> float:
    """Share of the posting's core title words found in the resume's title line, in [0, 1]."""
    want = title_words(jd_title)
    return len(want & title_words(cv_title)) / len(want) if want else 0.0


def cv_title_line(text: str) -> str:
    """The resume's first non-empty line: on the livecareer template, the candidate's own title."""
    return next((ln.strip() for ln in text.splitlines() if ln.strip()), "")


_RANGE = re.compile(
    r"\b((?:19|20)\d\d)\s*(?:to|-|–|until)\s*(?:[a-z]+\.?\s+)?(?:\d{1,2}/)?((?:19|20)\d\d|current|present|now|today)\b",
    re.IGNORECASE,
)
_JD_YEARS = re.compile(r"\b(\d{1,2})\s*\+?\s*(?:years|yrs)\b", re.IGNORECASE)


def date_ranges(text: str) -> list[tuple[int, int | None]]:
    """``(start year, end year)`` of every date range in ``text``; end None for "current"."""
    flat = " ".join(text.split())
    out = []
    for start, end in _RANGE.findall(flat):
        out.append((int(start), int(end) if end.isdigit() else None))
    return out


def stated_years(text: str, current_year: int) -> int:
    """Whole years covered by the union of the text's date ranges (a crude seniority proxy)."""
    years: set[int] = set()
    for start, end in date_ranges(text):
        stop = current_year if end is None else end
        if start <= stop <= current_year:
            years.update(range(start, stop))
    return len(years)


def jd_min_years(text: str) -> int | None:
    """The first "N years" / "N+ years" a posting states (1 to 20), or None."""
    for m in _JD_YEARS.finditer(text):
        n = int(m.group(1))
        if 1 <= n <= 20:
            return n
    return None


def years_grade(cv_years: int, min_years: int | None) -> float | None:
    """1 when the resume spans the posting's minimum, else 0; None when the posting states no minimum."""
    if not min_years:
        return None
    return 1.0 if cv_years >= min_years else 0.0


@dataclass(frozen=True)
class FamilyQuery:
    """A task C query: one posting and the resumes of its category, with graded gains.

    ``gains`` = ``title_gains`` + ``years_gains`` (the latter 0 where the posting states no
    minimum years); all three are in ``cv_ids`` order.
    """

    query: el.Query
    cv_ids: tuple[str, ...]
    gains: np.ndarray
    title_gains: np.ndarray
    years_gains: np.ndarray

    @property
    def split(self) -> str:
        return split_of(self.query.id)


def build_family_task(pool: el.CVPool, queries: Sequence[el.Query]) -> tuple[list[FamilyQuery], int]:
    """Task C over ``queries``: ``(the queries kept, how many were left out)``.

    A posting is left out when all its resumes earn the same gain (nothing to order).
    "Current" in a resume's date range is the latest year any resume's ranges name (the
    scrape's present, not today's).
    """
    ranges = [date_ranges(t) for t in pool.texts]
    current = max((y for rs in ranges for r in rs for y in r if y is not None), default=2020)
    cv_years = [stated_years(t, current) for t in pool.texts]
    titles = [cv_title_line(t) for t in pool.texts]
    kept: list[FamilyQuery] = []
    dropped = 0
    for q in queries:
        rows = [i for i, c in enumerate(pool.categories) if c == q.category]
        min_years = jd_min_years(q.text)
        tg = np.array([title_grade(titles[i], q.title) for i in rows])
        yg = np.array([years_grade(cv_years[i], min_years) or 0.0 for i in rows])
        gains = tg + yg
        if len(set(gains.tolist())) < 2:
            dropped += 1
            continue
        kept.append(FamilyQuery(q, tuple(pool.ids[i] for i in rows), gains, tg, yg))
    return kept, dropped


def pairwise_accuracy(gains: np.ndarray, scores: np.ndarray) -> float:
    """Share of resume pairs with different gains that ``scores`` orders the same way (an
    equal score counts half); NaN when every gain is equal. Random scores give 0.5.

    With ten candidates and most of them earning some gain, nDCG@k sits near 1 even for
    random scores; this measure keeps the whole 0-1 range.
    """
    g = np.asarray(gains, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    dg = np.sign(g[:, None] - g[None, :])
    ds = np.sign(s[:, None] - s[None, :])
    pairs = dg > 0
    if not pairs.any():
        return float("nan")
    return float(np.mean(np.where(ds[pairs] > 0, 1.0, np.where(ds[pairs] == 0, 0.5, 0.0))))


@dataclass(frozen=True)
class FamilyMetrics:
    """Pairwise accuracy (main) and nDCG@k of one task C query, under the combined gains and
    under each proxy alone (NaN where a proxy does not separate any two resumes)."""

    query_id: str
    group: str
    split: str
    pairwise: float
    pairwise_title: float
    pairwise_years: float
    ndcg: float


def family_metrics(fq: FamilyQuery, scores: np.ndarray, tie_keys: np.ndarray, *, k: int) -> FamilyMetrics:
    """Rank the query's resumes by ``scores`` (their order) and compute its metrics."""
    order = el.rank_order(scores, tie_keys)
    return FamilyMetrics(
        fq.query.id, fq.query.group, fq.split,
        pairwise=pairwise_accuracy(fq.gains, scores),
        pairwise_title=pairwise_accuracy(fq.title_gains, scores),
        pairwise_years=pairwise_accuracy(fq.years_gains, scores),
        ndcg=el.ndcg_at_k(fq.gains[order], k),
    )


# --------------------------------------------------------------------------------------
# Text edits for the metamorphic checks
# --------------------------------------------------------------------------------------


def remove_mentions(text: str, forms: Sequence[str]) -> str:
    """``text`` with every case-insensitive, whole-word occurrence of each form removed."""
    out = text
    for form in sorted({f for f in forms if f and f.strip()}, key=len, reverse=True):
        out = re.sub(rf"(?<![A-Za-z0-9]){re.escape(form)}(?![A-Za-z0-9])", "", out, flags=re.IGNORECASE)
    return out


_EXPERIENCE_HEADING = re.compile(r"^\s*(?:professional\s+|work\s+)?experience\s*$", re.IGNORECASE | re.MULTILINE)


def add_role(text: str, *, title: str, skills: Sequence[str], start: str = "January 2015",
             end: str = "December 2019") -> str:
    """``text`` with one more dated role (title, dates, a line using ``skills``) at the top of its
    experience section, laid out like the livecareer template; appended under a new
    "Experience" heading when the text has none."""
    role = (
        f"Company Name\n{start} to {end}\n{title}\nCity , State\n"
        + (f"Used {', '.join(skills)} daily as {title}.\n" if skills else f"Worked as {title}.\n")
    )
    m = _EXPERIENCE_HEADING.search(text)
    if m is None:
        return f"{text.rstrip()}\nExperience\n{role}"
    return f"{text[: m.end()]}\n{role}{text[m.end():].lstrip(chr(10))}"
