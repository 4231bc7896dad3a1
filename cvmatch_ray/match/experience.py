"""Relevant experience: the months a CV spent in roles that match a JD.

An accountant's ten years do not meet a backend posting's five. A role is relevant to a
JD when its taxonomy occupation is the JD title's, or in part when it lists the JD's
skills; the scorer's experience component counts a share
(``ScoreWeights.relevant_experience_share``) of its months this way and the rest as total
months. The roles come from the stored per-role columns (``features.ROLE_COLUMNS``).

Pure: numpy and pyarrow over the role columns; the JD enters as its wanted skills and
title occupation, so this module knows nothing of the scorer's types.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cvmatch_ray.match.features import ROLE_COLUMNS, CodedLists, flat_lists

#: A role is fully relevant when its occupation is the JD's or it has this many of the JD's
#: skills; one skill makes it half relevant.
ROLE_SKILLS_FOR_MATCH = 2


class RoleLists:
    """Every CV's experience roles, flat, for relevant experience over many CVs at once.

    A role's relevance to a JD is 1 when its taxonomy occupation is the JD title's, else
    the share of ``ROLE_SKILLS_FOR_MATCH`` of the JD's (required or preferred) skills it
    lists. A role with neither a title nor a skill says nothing about itself (the parser
    found its dates alone): it takes its CV's relevance over the roles that do, weighted by
    months, so a CV is not judged on what the parser missed. A CV's relevant months are
    its roles' months weighted by relevance, summed in role order (one CV alone and the
    same CV among many add the same numbers in the same order) and capped at its total
    months (roles may overlap).
    """

    def __init__(self, months: pa.ChunkedArray | pa.Array, titles: pa.ChunkedArray | pa.Array,
                 occupations: pa.ChunkedArray | pa.Array, skills: pa.ChunkedArray | pa.Array) -> None:
        flat_months, self.cv = flat_lists(months)
        self.months = flat_months.to_numpy(zero_copy_only=False).astype(np.float64)
        flat_titles, _ = flat_lists(titles)
        has_title = pc.greater(pc.utf8_length(flat_titles), 0).to_numpy(zero_copy_only=False).astype(bool)
        flat_occ, _ = flat_lists(occupations)
        # One occupation per role, as a list column of length-one lists.
        one_each = pa.ListArray.from_arrays(pa.array(np.arange(len(self.months) + 1, dtype=np.int32)), flat_occ)
        self.occupations = CodedLists(one_each)
        role_skills, _ = flat_lists(skills)  # a list of skills per role
        self.skills = CodedLists(role_skills)
        has_skills = pc.greater(pc.list_value_length(role_skills), 0).to_numpy(zero_copy_only=False).astype(bool) \
            if len(role_skills) else np.zeros(0, dtype=bool)
        self.judged = has_title | has_skills  # [roles] the role says what it was

    @classmethod
    def from_table(cls, table: pa.Table) -> RoleLists | None:
        """The roles of a table's rows, or None when it has no role columns."""
        if not set(ROLE_COLUMNS) <= set(table.column_names):
            return None
        return cls(*(table.column(c) for c in ROLE_COLUMNS))

    @classmethod
    def of_one(cls, months: Sequence[int], titles: Sequence[str], occupations: Sequence[str],
               skills: Sequence[Sequence[str]]) -> RoleLists:
        """One CV's roles (the pair form runs the batch form's arithmetic on one row)."""
        return cls(
            pa.array([list(months)], pa.list_(pa.int32())),
            pa.array([list(titles)], pa.list_(pa.string())),
            pa.array([list(occupations)], pa.list_(pa.string())),
            pa.array([[list(s) for s in skills]], pa.list_(pa.list_(pa.string()))),
        )

    def relevance(self, wanted: Sequence[str], occupation: str | None) -> np.ndarray:
        """[roles] relevance in [0, 1] of each role to a JD with these skills and occupation."""
        hits = self.skills.hits(wanted).sum(axis=1).astype(np.float64) if wanted else np.zeros(len(self.months))
        rel = np.minimum(1.0, hits / ROLE_SKILLS_FOR_MATCH)
        if occupation is not None:
            rel = np.maximum(rel, self.occupations.hits([occupation])[:, 0].astype(np.float64))
        return rel

    def relevant_months(self, wanted: Sequence[str], occupation: str | None, total_months: np.ndarray) -> np.ndarray:
        """[n] months in relevant roles, capped at each CV's total months; a CV with no role
        at all (nothing to judge relevance by) keeps its total months."""
        n = len(total_months)
        total = total_months.astype(np.float64)
        rel = self.relevance(wanted, occupation)
        judged = self.judged.astype(np.float64) * self.months
        judged_months = np.bincount(self.cv, weights=judged, minlength=n).astype(np.float64)
        judged_relevant = np.bincount(self.cv, weights=judged * rel, minlength=n).astype(np.float64)
        # Unjudged roles take their CV's months-weighted relevance (1 when nothing is judged).
        share = np.divide(judged_relevant, judged_months, out=np.ones(n), where=judged_months > 0)
        rel = np.where(self.judged, rel, share[self.cv])
        summed = np.bincount(self.cv, weights=rel * self.months, minlength=n).astype(np.float64)
        has_roles = np.bincount(self.cv, minlength=n) > 0
        return np.where(has_roles, np.minimum(summed, total), total)


def experience_signal(months: np.ndarray, roles: RoleLists | None, share: float, *,
                      wanted: Sequence[str], occupation: str | None) -> np.ndarray:
    """The months the experience component counts: ``share`` of them relevant months, the
    rest total months. A JD with no title occupation and no skills, or rows without role
    columns, cannot say which roles are relevant: total months."""
    months = months.astype(np.float64)
    if share == 0 or roles is None or (occupation is None and not wanted):
        return months
    return (1.0 - share) * months + share * roles.relevant_months(wanted, occupation, months)


def role_evidence(wanted: Sequence[str], occupation: str | None, *, months: Sequence[int], titles: Sequence[str],
                  occupations: Sequence[str], skills: Sequence[Sequence[str]], total_months: int) -> str:
    """The relevant roles of a CV as a line: "3.5 years in matching roles: Senior Accountant
    (2.0 y, same occupation), ...; 10.0 in all" (the months as ``RoleLists`` counts them)."""
    relevant = relevant_months_of_one(wanted, occupation, months=months, titles=titles, skills=skills,
                                      occupations=occupations, total_months=total_months)
    want = set(wanted)
    parts: list[str] = []
    for m, title, occ, role_skills in zip(months, titles, occupations, skills, strict=False):
        same = bool(occupation) and occ == occupation
        shared = sorted(want.intersection(role_skills))
        if same or shared:
            why = "same occupation" if same else ", ".join(shared[:2])
            parts.append(f"{title or 'untitled role'} ({m / 12.0:.1f} y, {why})")
    shown = "; ".join(parts[:3]) or "none"
    return f"{relevant / 12.0:.1f} years in matching roles: {shown}; {total_months / 12.0:.1f} in all"


def relevant_months_of_one(wanted: Sequence[str], occupation: str | None, *, months: Sequence[int],
                           titles: Sequence[str], occupations: Sequence[str], skills: Sequence[Sequence[str]],
                           total_months: int) -> float:
    """``RoleLists.of_one(...).relevant_months(...)`` of one CV, in plain Python: the same
    float64 steps in the same order (``np.bincount`` sums a CV's roles in order), so the same
    number, without building Arrow arrays per CV (most of the time a result's evidence took:
    ~0.15 ms of ~0.25 ms).
    """
    if not months:
        return float(total_months)
    relevance: list[float] = []
    judged: list[bool] = []
    for title, occ, role_skills in zip(titles, occupations, skills, strict=True):
        held = set(role_skills)
        hits = float(sum(1 for skill in wanted if skill in held))
        rel = min(1.0, hits / ROLE_SKILLS_FOR_MATCH)
        if occupation is not None:
            rel = max(rel, 1.0 if occ == occupation else 0.0)
        relevance.append(rel)
        judged.append(bool(title) or bool(role_skills))
    judged_months = judged_relevant = 0.0
    for m, rel, j in zip(months, relevance, judged, strict=True):
        weight = float(j) * float(m)
        judged_months += weight
        judged_relevant += weight * rel
    share = judged_relevant / judged_months if judged_months > 0 else 1.0
    summed = 0.0
    for m, rel, j in zip(months, relevance, judged, strict=True):
        summed += (rel if j else share) * float(m)
    return min(summed, float(total_months))
