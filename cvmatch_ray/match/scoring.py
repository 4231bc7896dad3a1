"""Deterministic CV-vs-JD scoring, in a pair form and a vectorized form.

The score is a weighted mean of components in [0, 1]:

- ``required_skills``: share of the JD's required skills the CV has.
- ``preferred_skills``: share of the preferred ones.
- ``semantic``: cosine of the CV's and JD's skills and experience section vectors.
- ``experience``: years of experience against the JD's minimum.
- ``education``: highest education level against the JD's.
- ``title``: cosine of the title vectors (CV headline and job titles vs the JD title).

A component that does not apply to a pair (the JD asks for no preferred skills, states no
minimum years...) is ``None`` and its weight is left out of the mean, so a JD is never
scored on what it did not ask for.

Both forms round every component to ``COMPONENT_DECIMALS`` before combining them in the
same order, so the vectorized form gives exactly the pair form's numbers. Nothing here
reads a CV's contact details: the score is blind to who the candidate is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cvmatch_ray.config import ScoreWeights
from cvmatch_ray.schemas import CVProfile, EducationLevel, JDProfile, MatchResult, ScoreBreakdown

COMPONENTS = ("required_skills", "preferred_skills", "semantic", "experience", "education", "title")
COMPONENT_DECIMALS = 4
SCORE_DECIMALS = 2

# Section vectors, in the order they are stored (see embed.SECTIONS).
TITLE, SKILLS, EXPERIENCE = 0, 1, 2
VECTOR_COLUMNS = ("vec_title", "vec_skills", "vec_experience")

# MiniLM cosines between related documents sit roughly in [0.15, 0.75]; map that span onto
# [0, 1] so that the semantic and title components use the whole scale like the others.
COSINE_FLOOR = 0.15
COSINE_CEIL = 0.75

# A CV whose education could not be read gets half credit: unknown is not "none".
UNKNOWN_EDUCATION_CREDIT = 0.5
# Credit lost per education level short of the JD's requirement.
EDUCATION_STEP_PENALTY = 0.25


@dataclass(frozen=True)
class JDFeatures:
    """What the scorer reads of a JD."""

    jd_id: str
    required: tuple[str, ...]
    preferred: tuple[str, ...]
    min_years: float | None
    education_rank: int | None
    vectors: np.ndarray  # [3, dim] float32, L2-normalized
    has_title: bool = True

    @classmethod
    def from_profile(cls, jd_id: str, profile: JDProfile, vectors: np.ndarray) -> JDFeatures:
        required = tuple(dict.fromkeys(profile.required_skills))
        # A skill both required and preferred counts once, as required.
        preferred = tuple(s for s in dict.fromkeys(profile.preferred_skills) if s not in required)
        level = profile.education_level
        return cls(
            jd_id=jd_id,
            required=required,
            preferred=preferred,
            min_years=profile.min_years or None,
            education_rank=level.rank if level and level is not EducationLevel.none else None,
            vectors=np.asarray(vectors, dtype=np.float32),
            has_title=bool(profile.title),
        )


@dataclass(frozen=True)
class CVFeatures:
    """What the scorer reads of a CV: skills, experience, education and vectors, no PII."""

    cv_id: str
    skills: frozenset[str]
    experience_months: int
    education_rank: int
    vectors: np.ndarray  # [3, dim] float32, L2-normalized

    @classmethod
    def from_profile(cls, cv_id: str, profile: CVProfile, vectors: np.ndarray) -> CVFeatures:
        return cls(
            cv_id=cv_id,
            skills=frozenset(profile.skill_names),
            experience_months=profile.total_experience_months,
            education_rank=profile.highest_education.rank,
            vectors=np.asarray(vectors, dtype=np.float32),
        )


# --------------------------------------------------------------------- components
# Each helper below works elementwise on numpy arrays, so the pair form and the
# vectorized form share one implementation of every formula.


def _cosine_component(cos: np.ndarray) -> np.ndarray:
    return np.clip((cos - COSINE_FLOOR) / (COSINE_CEIL - COSINE_FLOOR), 0.0, 1.0)


def _experience_component(months: np.ndarray, min_years: float) -> np.ndarray:
    return np.minimum(1.0, (months / 12.0) / min_years)


def _education_component(rank: np.ndarray, required_rank: int) -> np.ndarray:
    gap = np.maximum(0, required_rank - rank)
    credit = np.maximum(0.0, 1.0 - EDUCATION_STEP_PENALTY * gap)
    return np.where(rank == 0, UNKNOWN_EDUCATION_CREDIT, credit)


def _combine(components: dict[str, np.ndarray | None], weights: ScoreWeights, n: int) -> np.ndarray:
    """Weighted mean over the applicable components, in ``COMPONENTS`` order."""
    total = np.zeros(n, dtype=np.float64)
    weight_sum = 0.0
    w = weights.model_dump()
    for name in COMPONENTS:
        values = components[name]
        if values is None or w[name] == 0:
            continue
        total = total + w[name] * values
        weight_sum += w[name]
    if weight_sum == 0:
        return np.zeros(n, dtype=np.float64)
    return np.round(100.0 * total / weight_sum, SCORE_DECIMALS)


def _components(
    jd: JDFeatures,
    *,
    required_hits: np.ndarray,  # [n, R] bool
    preferred_hits: np.ndarray,  # [n, P] bool
    experience_months: np.ndarray,  # [n]
    education_rank: np.ndarray,  # [n]
    cosines: np.ndarray,  # [n, 3] float64, same-section cosines
) -> dict[str, np.ndarray | None]:
    r = lambda a: np.round(a.astype(np.float64), COMPONENT_DECIMALS)  # noqa: E731
    out: dict[str, np.ndarray | None] = dict.fromkeys(COMPONENTS)
    if jd.required:
        out["required_skills"] = r(required_hits.sum(axis=1) / len(jd.required))
    if jd.preferred:
        out["preferred_skills"] = r(preferred_hits.sum(axis=1) / len(jd.preferred))
    out["semantic"] = r(_cosine_component((cosines[:, SKILLS] + cosines[:, EXPERIENCE]) / 2.0))
    if jd.min_years:
        out["experience"] = r(_experience_component(experience_months.astype(np.float64), jd.min_years))
    if jd.education_rank:
        out["education"] = r(_education_component(education_rank.astype(np.int64), jd.education_rank))
    if jd.has_title:
        out["title"] = r(_cosine_component(cosines[:, TITLE]))
    return out


def _cosines(cv_vectors: np.ndarray, jd_vectors: np.ndarray) -> np.ndarray:
    """Same-section cosines of [n, 3, dim] CV vectors against [3, dim] JD vectors."""
    # float64 einsum: the pair form and the batch form sum in the same order.
    return np.einsum("nsd,sd->ns", cv_vectors.astype(np.float64), jd_vectors.astype(np.float64))


# ---------------------------------------------------------------------- results


def _explain(breakdown: ScoreBreakdown, jd: JDFeatures, matched_required: int, years: float) -> str:
    parts: list[str] = []
    if jd.required:
        parts.append(f"{matched_required}/{len(jd.required)} required skills")
    if breakdown.experience is not None and jd.min_years:
        parts.append(f"{years:.1f} years of experience vs {jd.min_years:g} asked")
    if breakdown.education is not None:
        parts.append("education " + ("meets" if breakdown.education >= 1.0 else "below") + " the requirement")
    if breakdown.semantic is not None:
        level = "strong" if breakdown.semantic >= 0.66 else "moderate" if breakdown.semantic >= 0.33 else "weak"
        parts.append(f"{level} semantic fit")
    return "; ".join(parts)


def _result(
    jd: JDFeatures,
    cv_id: str,
    score: float,
    components: dict[str, float | None],
    required_hit: np.ndarray,
    preferred_hit: np.ndarray,
    experience_months: int,
) -> MatchResult:
    breakdown = ScoreBreakdown(**components)
    matched = [s for s, hit in zip(jd.required, required_hit) if hit]
    matched += [s for s, hit in zip(jd.preferred, preferred_hit) if hit]
    return MatchResult(
        cv_id=cv_id,
        jd_id=jd.jd_id,
        score=float(score),
        breakdown=breakdown,
        matched_skills=matched,
        missing_required=[s for s, hit in zip(jd.required, required_hit) if not hit],
        missing_preferred=[s for s, hit in zip(jd.preferred, preferred_hit) if not hit],
        explanation=_explain(breakdown, jd, int(required_hit.sum()), experience_months / 12.0),
    )


# ------------------------------------------------------------------------ pair form


def score_pair(cv: CVFeatures, jd: JDFeatures, weights: ScoreWeights | None = None) -> MatchResult:
    """Score one CV against one JD."""
    weights = weights or ScoreWeights()
    required_hit = np.array([[s in cv.skills for s in jd.required]], dtype=bool).reshape(1, len(jd.required))
    preferred_hit = np.array([[s in cv.skills for s in jd.preferred]], dtype=bool).reshape(1, len(jd.preferred))
    comps = _components(
        jd,
        required_hits=required_hit,
        preferred_hits=preferred_hit,
        experience_months=np.array([cv.experience_months]),
        education_rank=np.array([cv.education_rank]),
        cosines=_cosines(cv.vectors[None, :, :], jd.vectors),
    )
    score = _combine(comps, weights, 1)[0]
    values = {k: (None if v is None else float(v[0])) for k, v in comps.items()}
    return _result(jd, cv.cv_id, score, values, required_hit[0], preferred_hit[0], cv.experience_months)


# ------------------------------------------------------------------ vectorized form


@dataclass(frozen=True)
class ScoredBatch:
    """Scores of one JD against many CVs, as arrays; results are built on demand."""

    jd: JDFeatures
    cv_ids: np.ndarray  # [n] object
    scores: np.ndarray  # [n] float64
    components: dict[str, np.ndarray | None]
    required_hits: np.ndarray
    preferred_hits: np.ndarray
    experience_months: np.ndarray

    def __len__(self) -> int:
        return len(self.cv_ids)

    def order(self) -> np.ndarray:
        """Indices by score descending, ties broken by cv_id, so rankings are stable."""
        return np.lexsort((self.cv_ids.astype(str), -self.scores))

    def result(self, i: int) -> MatchResult:
        values = {k: (None if v is None else float(v[i])) for k, v in self.components.items()}
        return _result(
            self.jd,
            str(self.cv_ids[i]),
            self.scores[i],
            values,
            self.required_hits[i],
            self.preferred_hits[i],
            int(self.experience_months[i]),
        )

    def top(self, k: int | None = None) -> list[MatchResult]:
        idx = self.order()
        if k is not None:
            idx = idx[:k]
        return [self.result(int(i)) for i in idx]


def _skill_hits(skills: pa.ChunkedArray | pa.Array, wanted: Sequence[str], n: int) -> np.ndarray:
    """[n, len(wanted)] bool: does row i's skill list contain wanted[j]?"""
    hits = np.zeros((n, len(wanted)), dtype=bool)
    if not wanted or n == 0:
        return hits
    if isinstance(skills, pa.ChunkedArray):
        skills = skills.combine_chunks()
    flat = pc.list_flatten(skills)
    parents = pc.list_parent_indices(skills).to_numpy(zero_copy_only=False)
    index = pc.index_in(flat, value_set=pa.array(list(wanted), type=flat.type))
    valid = index.is_valid().to_numpy(zero_copy_only=False)
    hits[parents[valid], index.filter(index.is_valid()).to_numpy(zero_copy_only=False)] = True
    return hits


def _vectors(table: pa.Table) -> np.ndarray:
    """Stack the three fixed-size-list vector columns into [n, 3, dim] float32."""
    cols = []
    for name in VECTOR_COLUMNS:
        col = table.column(name).combine_chunks()
        dim = col.type.list_size
        cols.append(col.values.to_numpy(zero_copy_only=False).reshape(len(col), dim))
    return np.stack(cols, axis=1).astype(np.float32, copy=False)


def score_table(jd: JDFeatures, table: pa.Table, weights: ScoreWeights | None = None) -> ScoredBatch:
    """Score one JD against every CV row of ``table`` at once.

    ``table`` holds the store's scoring columns: ``cv_id``, ``skills`` (list of canonical
    names), ``experience_months``, ``education_rank`` and the three vector columns.
    """
    weights = weights or ScoreWeights()
    n = table.num_rows
    skills = table.column("skills")
    required_hits = _skill_hits(skills, jd.required, n)
    preferred_hits = _skill_hits(skills, jd.preferred, n)
    months = table.column("experience_months").to_numpy(zero_copy_only=False).astype(np.int64)
    education = table.column("education_rank").to_numpy(zero_copy_only=False).astype(np.int64)
    cosines = _cosines(_vectors(table), jd.vectors) if n else np.zeros((0, 3))
    comps = _components(
        jd,
        required_hits=required_hits,
        preferred_hits=preferred_hits,
        experience_months=months,
        education_rank=education,
        cosines=cosines,
    )
    return ScoredBatch(
        jd=jd,
        cv_ids=np.asarray(table.column("cv_id").to_pylist(), dtype=object),
        scores=_combine(comps, weights, n),
        components=comps,
        required_hits=required_hits,
        preferred_hits=preferred_hits,
        experience_months=months,
    )


def features_table(cvs: Sequence[CVFeatures]) -> pa.Table:
    """Build a scoring table from in-memory CV features (the layout the store returns)."""
    dim = cvs[0].vectors.shape[-1] if cvs else 0
    vec_type = pa.list_(pa.float32(), dim)
    columns: dict[str, pa.Array] = {
        "cv_id": pa.array([c.cv_id for c in cvs], pa.string()),
        "skills": pa.array([sorted(c.skills) for c in cvs], pa.list_(pa.string())),
        "experience_months": pa.array([c.experience_months for c in cvs], pa.int32()),
        "education_rank": pa.array([c.education_rank for c in cvs], pa.int8()),
    }
    for s, name in enumerate(VECTOR_COLUMNS):
        flat = np.concatenate([c.vectors[s] for c in cvs]).astype(np.float32) if cvs else np.zeros(0, np.float32)
        columns[name] = pa.FixedSizeListArray.from_arrays(pa.array(flat), dim) if cvs else pa.array([], vec_type)
    return pa.table(columns)
