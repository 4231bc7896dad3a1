"""What the scorer reads of a JD (``JDFeatures``), and its BM25 query against a pool.

Built once per JD (``match.rank.jd_features``) from its standardized profile, section
vectors and text: skills with their narrow categories and requirement statements
(``match.requirements``), minimum years, education, title occupation and lexical terms.
Pure: no store, no Ray.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cvmatch_ray.match.features import (
    LexicalStats,
    lexical_tokens,
    normalized_titles,
    skill_category,
)
from cvmatch_ray.match.requirements import Requirement, group_requirements
from cvmatch_ray.schemas import EducationLevel, JDProfile

# Okapi BM25 parameters, and the most JD words a query keeps (the rarest in the pool:
# common words add little to BM25 and cost time on every CV).
BM25_K1 = 1.2
BM25_B = 0.75
MAX_QUERY_TERMS = 100


def lexical_query(
    text: str, stats: LexicalStats, *, max_terms: int = MAX_QUERY_TERMS
) -> tuple[tuple[str, ...], tuple[float, ...], float]:
    """BM25 query of a JD text against a pool: ``(terms, idf weights, pool mean length)``.

    Terms absent from the pool are dropped (no CV can match them), then the ``max_terms``
    rarest are kept, in term order so that sums run in a fixed order.
    """
    if stats.num_docs == 0:
        return (), (), 0.0
    n = stats.num_docs
    idf: dict[str, float] = {}
    for term in dict.fromkeys(lexical_tokens(text)):
        df = stats.df.get(term, 0)
        if df:
            idf[term] = math.log(1.0 + (n - df + 0.5) / (df + 0.5))
    kept = sorted(sorted(idf, key=lambda t: (-idf[t], t))[:max_terms])
    return tuple(kept), tuple(idf[t] for t in kept), float(stats.avg_len)


@dataclass(frozen=True)
class JDFeatures:
    """What the scorer reads of a JD.

    The fields after ``has_title`` are optional so that a JD built by hand (tests, old
    callers) scores as before: no related-skill credit, no occupation match, no lexical
    component.
    """

    jd_id: str
    required: tuple[str, ...]
    preferred: tuple[str, ...]
    min_years: float | None
    education_rank: int | None
    vectors: np.ndarray  # [3, dim] float32, L2-normalized
    has_title: bool = True
    required_categories: tuple[str | None, ...] = ()  # narrow category per required skill
    preferred_categories: tuple[str | None, ...] = ()
    title: str | None = None
    norm_title: str | None = None  # taxonomy occupation of the title
    lexical_terms: tuple[str, ...] = ()
    lexical_idf: tuple[float, ...] = ()
    lexical_avg_len: float = 0.0
    # The skills grouped by the statements of the JD's text that name them (``match.requirements``).
    required_statements: tuple[Requirement, ...] = ()
    preferred_statements: tuple[Requirement, ...] = ()

    @classmethod
    def from_profile(
        cls,
        jd_id: str,
        profile: JDProfile,
        vectors: np.ndarray,
        *,
        text: str | None = None,
        lexical_stats: LexicalStats | None = None,
    ) -> JDFeatures:
        """Features of a standardized JD.

        Args:
            jd_id: the JD's id.
            profile: the standardized JD.
            vectors: its ``[3, dim]`` section vectors.
            text: the JD's text: its requirement statements, and the query of the lexical
                component (needs ``lexical_stats``).
            lexical_stats: the pool's BM25 statistics (``Store.lexical_stats``).
        """
        required = tuple(dict.fromkeys(profile.required_skills))
        # A skill both required and preferred counts once, as required.
        preferred = tuple(s for s in dict.fromkeys(profile.preferred_skills) if s not in required)
        level = profile.education_level
        terms: tuple[str, ...] = ()
        idf: tuple[float, ...] = ()
        avg_len = 0.0
        if text and lexical_stats is not None:
            terms, idf, avg_len = lexical_query(text, lexical_stats)
        norm = normalized_titles([profile.title]) if profile.title else []
        return cls(
            jd_id=jd_id,
            required=required,
            preferred=preferred,
            min_years=profile.min_years or None,
            education_rank=level.rank if level and level is not EducationLevel.none else None,
            vectors=np.asarray(vectors, dtype=np.float32),
            has_title=bool(profile.title),
            required_categories=tuple(skill_category(s) for s in required),
            preferred_categories=tuple(skill_category(s) for s in preferred),
            title=profile.title,
            norm_title=norm[0] if norm else None,
            lexical_terms=terms,
            lexical_idf=idf,
            lexical_avg_len=avg_len,
            required_statements=group_requirements(text, required) if text else (),
            preferred_statements=group_requirements(text, preferred) if text else (),
        )

    @property
    def wanted(self) -> tuple[str, ...]:
        """Required then preferred skills: what makes a CV's role relevant (``match.experience``)."""
        return (*self.required, *self.preferred)

    @property
    def lexical_norm(self) -> float:
        """The BM25 score of a CV holding every query term infinitely often."""
        return float(sum(w * (BM25_K1 + 1.0) for w in self.lexical_idf))
