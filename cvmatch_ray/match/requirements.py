"""A JD's skills grouped into requirement statements, as a recruiter reads a posting.

"Experience with Python, Java or Go" is one requirement that any of the three meets, not
three requirements; "SQL and Tableau" is one requirement that wants both. The scorer's
skill components can count statements met instead of skills met
(``ScoreWeights.requirement_statements``), and a result quotes each statement with the CV
line that meets it.

Pure: the JD text and its standardized skill lists in, statements out; the component
and the evidence lines work on numpy hit arrays and plain lists.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from cvmatch_ray.schemas import clean_line

# A statement ends at a line end or a sentence end (". " followed by a capital or a bullet).
_STATEMENT_END = re.compile(r"\n+|(?<=[.;!?])\s+(?=[A-Z•\-*])")
# Words that make a statement's skills alternatives: any one of them meets it.
_ANY_OF = re.compile(r"\b(?:or|one of|such as|e\.g|for example|including|like|any)\b|/", re.IGNORECASE)
STATEMENT_CHARS = 300


@dataclass(frozen=True)
class Requirement:
    """One requirement statement of a JD.

    Attributes:
        text: the statement as written (one line, cut to ``STATEMENT_CHARS``); for a skill
            the standardizer found but no statement names, the skill itself.
        skills: indices into the JD's required (or preferred) skill tuple it names.
        any_of: whether any one of its skills meets it (else each counts for a share).
    """

    text: str
    skills: tuple[int, ...]
    any_of: bool


def _spans(text: str) -> list[tuple[int, int]]:
    out, start = [], 0
    for m in _STATEMENT_END.finditer(text):
        if m.start() > start:
            out.append((start, m.start()))
        start = m.end()
    if start < len(text):
        out.append((start, len(text)))
    return out


def group_requirements(text: str, wanted: Sequence[str]) -> tuple[Requirement, ...]:
    """The statements of ``text`` that name skills of ``wanted`` (canonical names, in order).

    Each skill belongs to the first statement that names it; a skill no statement names
    (the standardizer found it some other way) is a statement of its own. Statements keep
    the order of their first skill in ``wanted``.
    """
    from cvmatch_ray.taxonomy import load_taxonomy

    index = {s: i for i, s in enumerate(wanted)}
    if not index:
        return ()
    spans = _spans(text or "")
    owner: dict[int, int] = {}  # skill index -> span index
    for hit in load_taxonomy().find_skills(text or ""):
        i = index.get(hit.canonical)
        if i is None or i in owner:
            continue
        owner[i] = next((k for k, (a, b) in enumerate(spans) if a <= hit.start < b), -1)
    groups: dict[object, list[int]] = {}
    for i in range(len(wanted)):
        key = owner.get(i, -1)
        groups.setdefault(key if key >= 0 else ("alone", i), []).append(i)
    out = []
    for key, members in sorted(groups.items(), key=lambda kv: kv[1][0]):
        if isinstance(key, tuple):
            out.append(Requirement(text=wanted[members[0]], skills=tuple(members), any_of=True))
            continue
        a, b = spans[key]
        statement = clean_line(text[a:b], STATEMENT_CHARS).lstrip("•-*· ")
        out.append(Requirement(text=statement, skills=tuple(members), any_of=bool(_ANY_OF.search(statement))))
    return tuple(out)


def statement_component(
    hits: np.ndarray, related: np.ndarray, credit: float, statements: Sequence[Requirement]
) -> np.ndarray:
    """[n] share of the requirement statements met: an any-of statement by its best skill,
    another by the mean of its skills (1 per hit, ``credit`` per related-only hit). Sums run
    in a fixed column order, so one row alone and the same row among many give the same number.

    Args:
        hits, related: [n, skills] bool, a CV has the skill / a skill of its narrow category.
        credit: the related-only credit (``ScoreWeights.related_skill_credit``).
        statements: the JD's statements over those skill columns.
    """
    per_skill = np.where(hits, 1.0, np.where(related, credit, 0.0))
    total = np.zeros(hits.shape[0], dtype=np.float64)
    for st in statements:
        cols = [per_skill[:, j] for j in st.skills]
        met = functools.reduce(np.maximum, cols) if st.any_of else functools.reduce(np.add, cols) / len(cols)
        total = total + met
    return total / len(statements)


def statements_met(hit: np.ndarray, statements: Sequence[Requirement]) -> int:
    """How many statements have at least one skill the CV has (``hit``: [skills] bool)."""
    return sum(any(hit[j] for j in st.skills) for st in statements)


def statement_evidence(
    statements: Sequence[Requirement],
    wanted: Sequence[str],
    categories: Sequence[str | None],
    *,
    skills: Sequence[str],
    skill_lines: Mapping[str, str],
    by_category: Mapping[str, str],
    limit: int,
) -> list[tuple[str, str]]:
    """``(statement, CV line)`` for the first ``limit`` statements the CV meets or nearly meets:
    the line of a skill it has, else "related: <skill> (<line>)" for one of the same narrow category.

    Args:
        statements: the JD's statements over ``wanted``.
        wanted: the JD's skills (required or preferred), in order.
        categories: the narrow taxonomy category per skill of ``wanted`` (may be empty).
        skills, skill_lines: the CV's skills and the line that mentions each.
        by_category: the CV's first skill of each narrow category.
        limit: most statements quoted.
    """
    have = set(skills)
    out: list[tuple[str, str]] = []
    for st in statements:
        if len(out) >= limit:
            break
        met = next((wanted[j] for j in st.skills if wanted[j] in have), None)
        if met is not None:
            out.append((st.text, skill_lines.get(met) or met))
            continue
        near = next((by_category[c] for j in st.skills if (c := categories[j] if categories else None) in by_category),
                    None)
        if near is not None:
            line = skill_lines.get(near) or near
            out.append((st.text, f"related: {near} ({line})" if line != near else f"related: {near}"))
    return out
