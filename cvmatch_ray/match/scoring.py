"""Deterministic CV-vs-JD scoring, in a pair form and a vectorized form.

The score is a weighted mean of components in [0, 1]:

- ``required_skills``: share of the JD's required skills the CV has or, with
  ``requirement_statements``, share of its requirement statements met (any one skill of
  "Python, Java or Go" meets it; ``match.requirements``).
- ``preferred_skills``: the same for the preferred ones.
- ``semantic``: mean cosine over all nine pairs of CV and JD section vectors (title,
  skills, experience on each side): a CV whose experience reads like the JD's title or
  skills counts, not only section against same section (on the development postings the
  cross-section mean ranked job families far better than same-section cosines).
- ``experience``: years of experience against the JD's minimum; a share
  (``relevant_experience_share``) of it counts only the months in roles whose occupation
  or skills are the JD's (``match.experience``).
- ``education``: highest education level against the JD's.
- ``title``: cosine of the title vectors (CV headline and job titles vs the JD title),
  raised to ``title_match_credit`` when both titles map to the same taxonomy occupation.
- ``lexical``: Okapi BM25 of the JD's words over the CV's blinded text, divided by the
  best score a CV could reach, with idf from the stored pool (``JDFeatures.lexical_*``).

A required or preferred skill the CV lacks still earns ``related_skill_credit`` when the
CV has another skill of the same narrow taxonomy category ("MySQL" for "PostgreSQL").

A component that does not apply to a pair (the JD asks for no preferred skills, states no
minimum years...) is ``None`` and its weight is left out of the mean, so a JD is never
scored on what it did not ask for.

Both forms round every component to ``COMPONENT_DECIMALS`` before combining them in the
same order, so the vectorized form gives exactly the pair form's numbers. Nothing here
reads a CV's contact details, and every text feature it reads (section vectors, lexical
terms, evidence lines) was built from blinded text (``embed.blind_text``): the score is
blind to who the candidate is. ``JDFeatures`` (``match.jd``) is re-exported here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cvmatch_ray.config import ScoreWeights
from cvmatch_ray.match.experience import RoleLists, experience_signal, role_evidence
from cvmatch_ray.match.features import (
    ROLE_COLUMNS,
    VECTOR_COLUMNS,
    CodedLists,
    CVFeatures,
    flat_lists,
    normalized_titles,
    skill_category,
)
from cvmatch_ray.match.jd import BM25_B, BM25_K1, JDFeatures
from cvmatch_ray.match.requirements import (
    statement_component,
    statement_evidence,
    statements_met,
)
from cvmatch_ray.schemas import (
    MAX_EVIDENCE,
    EducationLevel,
    Evidence,
    MatchResult,
    ScoreBreakdown,
    clean_line,
)

COMPONENTS = ("required_skills", "preferred_skills", "semantic", "experience", "education", "title", "lexical")
COMPONENT_DECIMALS = 4
SCORE_DECIMALS = 2

# Section vectors, in the order they are stored (``features.VECTOR_COLUMNS``).
TITLE, SKILLS, EXPERIENCE = 0, 1, 2

# MiniLM cosines between related documents sit roughly in [0.15, 0.75]; map that span onto
# [0, 1] so that the semantic and title components use the whole scale like the others.
COSINE_FLOOR = 0.15
COSINE_CEIL = 0.75

# A CV whose education could not be read gets half credit: unknown is not "none".
UNKNOWN_EDUCATION_CREDIT = 0.5
# Credit lost per education level short of the JD's requirement.
EDUCATION_STEP_PENALTY = 0.25

# Normalized BM25 (score / best reachable score) of a good lexical match sits around
# 0.1-0.3, since no CV contains every word of a posting; this maps [0, ceil] onto [0, 1].
LEXICAL_CEIL = 0.3

EVIDENCE_SKILLS = 6
EVIDENCE_PREFERRED = 3
EVIDENCE_TERMS = 8


# --------------------------------------------------------------------- components
# Each helper below works elementwise on numpy arrays, so the pair form and the
# vectorized form share one implementation of every formula.


def _cosine_component(cos: np.ndarray) -> np.ndarray:
    return np.clip((cos - COSINE_FLOOR) / (COSINE_CEIL - COSINE_FLOOR), 0.0, 1.0)


def _experience_component(months: np.ndarray, min_years: float) -> np.ndarray:
    return np.minimum(1.0, (months / 12.0) / min_years)


def _experience(jd: JDFeatures, months: np.ndarray, roles: RoleLists | None, weights: ScoreWeights) -> np.ndarray:
    """The months the experience component counts (``experience.experience_signal``)."""
    return experience_signal(months, roles, weights.relevant_experience_share, wanted=jd.wanted,
                             occupation=jd.norm_title)


def _education_component(rank: np.ndarray, required_rank: int) -> np.ndarray:
    gap = np.maximum(0, required_rank - rank)
    credit = np.maximum(0.0, 1.0 - EDUCATION_STEP_PENALTY * gap)
    return np.where(rank == 0, UNKNOWN_EDUCATION_CREDIT, credit)


def _skill_component(hits: np.ndarray, related: np.ndarray, credit: float) -> np.ndarray:
    """Share of the skills met: 1 per exact hit, ``credit`` per related-only hit."""
    exact = hits.sum(axis=1).astype(np.float64)
    partial = (related & ~hits).sum(axis=1).astype(np.float64)
    return (exact + credit * partial) / hits.shape[1]


def _combine(components: dict[str, np.ndarray | None], weights: ScoreWeights, n: int) -> np.ndarray:
    """Weighted mean over the applicable components, in ``COMPONENTS`` order."""
    total = np.zeros(n, dtype=np.float64)
    weight_sum = 0.0
    w = weights.component_weights
    for name in COMPONENTS:
        values = components[name]
        if values is None or w[name] == 0:
            continue
        total = total + w[name] * values
        weight_sum += w[name]
    if weight_sum == 0:
        return np.zeros(n, dtype=np.float64)
    return np.round(100.0 * total / weight_sum, SCORE_DECIMALS)


@dataclass(frozen=True)
class _Signals:
    """The per-CV inputs of the components, as arrays over n CVs (one row in the pair form)."""

    required_hits: np.ndarray  # [n, R] bool
    required_related: np.ndarray  # [n, R] bool: a CV skill of the same narrow category
    preferred_hits: np.ndarray  # [n, P] bool
    preferred_related: np.ndarray  # [n, P] bool
    experience_months: np.ndarray  # [n] the months the experience component counts (``_experience``)
    education_rank: np.ndarray  # [n]
    semantic_cos: np.ndarray  # [n] float64: mean of the nine CV-section x JD-section cosines
    title_cos: np.ndarray  # [n] float64: CV title vector against the JD's
    title_hit: np.ndarray  # [n] bool: a CV title maps to the JD's occupation
    bm25: np.ndarray  # [n] float64, raw BM25 of the JD's query terms


def _components(jd: JDFeatures, sig: _Signals, weights: ScoreWeights) -> dict[str, np.ndarray | None]:
    r = lambda a: np.round(a.astype(np.float64), COMPONENT_DECIMALS)  # noqa: E731
    out: dict[str, np.ndarray | None] = dict.fromkeys(COMPONENTS)
    credit = weights.related_skill_credit
    by_statement = weights.requirement_statements
    if jd.required:
        out["required_skills"] = r(
            statement_component(sig.required_hits, sig.required_related, credit, jd.required_statements)
            if by_statement and jd.required_statements
            else _skill_component(sig.required_hits, sig.required_related, credit))
    if jd.preferred:
        out["preferred_skills"] = r(
            statement_component(sig.preferred_hits, sig.preferred_related, credit, jd.preferred_statements)
            if by_statement and jd.preferred_statements
            else _skill_component(sig.preferred_hits, sig.preferred_related, credit))
    out["semantic"] = r(_cosine_component(sig.semantic_cos))
    if jd.min_years:
        out["experience"] = r(_experience_component(sig.experience_months.astype(np.float64), jd.min_years))
    if jd.education_rank:
        out["education"] = r(_education_component(sig.education_rank.astype(np.int64), jd.education_rank))
    if jd.has_title:
        title = _cosine_component(sig.title_cos)
        out["title"] = r(np.maximum(title, np.where(sig.title_hit, weights.title_match_credit, 0.0)))
    if jd.lexical_terms and jd.lexical_norm > 0:
        out["lexical"] = r(np.clip(sig.bm25 / jd.lexical_norm / LEXICAL_CEIL, 0.0, 1.0))
    return out


def _cosine_signals(cosines: np.ndarray) -> dict[str, np.ndarray]:
    """The semantic and title signals of [n, 3, 3] section cosines."""
    return {"semantic_cos": cosines.mean(axis=(1, 2)), "title_cos": cosines[:, TITLE, TITLE]}


def _cosines(cv_sections: Sequence[np.ndarray], jd_vectors: np.ndarray) -> np.ndarray:
    """[n, 3, 3] cosines of the CVs' three [n, dim] section matrices against [3, dim] JD vectors."""
    jd64 = jd_vectors.astype(np.float64)
    out = np.empty((len(cv_sections[0]), len(cv_sections), len(jd64)), dtype=np.float64)
    for s, section in enumerate(cv_sections):
        # A float64 einsum, so the pair form and the batch form sum in the same order; it
        # widens the float32 rows as it reads them (no float64 copy of the whole pool).
        out[:, s, :] = np.einsum("nd,td->nt", section, jd64, dtype=np.float64, casting="safe")
    return out


def _bm25(
    jd: JDFeatures, parents: np.ndarray, term_idx: np.ndarray, tfs: np.ndarray, lengths: np.ndarray, n: int
) -> np.ndarray:
    """BM25 per CV from its query-term hits (flat, in each CV's stored term order).

    ``np.bincount`` adds the hits of a CV in the order given, so one CV alone (the pair
    form) and the same CV among many (the batch form) sum the same numbers in the same order.
    """
    if not jd.lexical_terms or n == 0:
        return np.zeros(n, dtype=np.float64)
    idf = np.asarray(jd.lexical_idf, dtype=np.float64)
    tf = tfs.astype(np.float64)
    avg = jd.lexical_avg_len if jd.lexical_avg_len > 0 else 1.0
    norm = BM25_K1 * (1.0 - BM25_B + BM25_B * lengths.astype(np.float64) / avg)
    contrib = idf[term_idx] * tf * (BM25_K1 + 1.0) / (tf + norm[parents])
    return np.bincount(parents, weights=contrib, minlength=n).astype(np.float64)


# ---------------------------------------------------------------------- results


_LEVELS = list(EducationLevel)


def _evidence(
    jd: JDFeatures,
    breakdown: ScoreBreakdown,
    *,
    skills: Sequence[str],
    skill_lines: Mapping[str, str],
    titles: Sequence[str],
    norm_titles: Sequence[str],
    lex_terms: Sequence[str],
    experience_months: int,
    education_rank: int,
    roles: _RowText | None = None,
    statements: bool = False,
) -> list[Evidence]:
    """Bounded, deterministic evidence: which CV text met which JD requirement."""
    out: list[Evidence] = []
    by_category: dict[str, str] = {}
    for skill in sorted(skills):
        cat = skill_category(skill)
        if cat is not None:
            by_category.setdefault(cat, skill)

    def add(component: str, requirement: str, cv_text: str) -> None:
        out.append(Evidence(component=component, requirement=clean_line(requirement, 300),
                            cv_text=clean_line(cv_text, 300) or "-"))

    def skill_items(component: str, wanted: Sequence[str], cats: Sequence[str | None], limit: int) -> None:
        shown = 0
        for i, need in enumerate(wanted):
            if shown >= limit:
                break
            if need in skills:
                add(component, need, skill_lines.get(need) or need)
                shown += 1
            elif cats and cats[i] is not None and cats[i] in by_category:
                other = by_category[cats[i]]  # type: ignore[index]
                line = skill_lines.get(other) or other
                add(component, need, f"related: {other} ({line})" if line != other else f"related: {other}")
                shown += 1

    for component, wanted, cats, grouped, limit in (
        ("required_skills", jd.required, jd.required_categories, jd.required_statements, EVIDENCE_SKILLS),
        ("preferred_skills", jd.preferred, jd.preferred_categories, jd.preferred_statements, EVIDENCE_PREFERRED),
    ):
        if statements and grouped:  # quote the JD's statement, not the bare skill name
            for need, line in statement_evidence(grouped, wanted, cats, skills=skills, skill_lines=skill_lines,
                                                 by_category=by_category, limit=limit):
                add(component, need, line)
        else:
            skill_items(component, wanted, cats, limit)
    if breakdown.title is not None and titles:
        best = titles[0]
        if jd.norm_title and jd.norm_title in norm_titles:
            best = next((t for t in titles if normalized_titles([t]) == [jd.norm_title]), best)
        add("title", jd.title or jd.norm_title or "job title", best)
    if breakdown.experience is not None and jd.min_years:
        if roles is None:
            add("experience", f"{jd.min_years:g}+ years", f"{experience_months / 12.0:.1f} years")
        else:
            add("experience", f"{jd.min_years:g}+ years in the role", role_evidence(
                jd.wanted, jd.norm_title, months=roles.role_months, titles=roles.role_titles,
                occupations=roles.role_occupations, skills=roles.role_skills, total_months=experience_months))
    if breakdown.education is not None and jd.education_rank:
        level = _LEVELS[education_rank].value if 0 <= education_rank < len(_LEVELS) else "unknown"
        add("education", _LEVELS[jd.education_rank].value, level if education_rank else "unknown")
    if breakdown.lexical is not None:
        have = set(lex_terms)
        weight = dict(zip(jd.lexical_terms, jd.lexical_idf, strict=True))
        matched = sorted((t for t in jd.lexical_terms if t in have), key=lambda t: (-weight[t], t))[:EVIDENCE_TERMS]
        if matched:
            add("lexical", "posting wording", ", ".join(matched))
    return out[:MAX_EVIDENCE]


def _explain(breakdown: ScoreBreakdown, jd: JDFeatures, required_hit: np.ndarray, years: float,
             counted_years: float | None, statements: bool) -> str:
    parts: list[str] = []
    matched = int(required_hit.sum())
    if jd.required and statements and jd.required_statements:
        met = statements_met(required_hit, jd.required_statements)
        parts.append(f"{met}/{len(jd.required_statements)} required statements with a skill met "
                     f"({matched}/{len(jd.required)} required skills)")
    elif jd.required:
        parts.append(f"{matched}/{len(jd.required)} required skills")
    if breakdown.experience is not None and jd.min_years:
        if counted_years is None:
            parts.append(f"{years:.1f} years of experience vs {jd.min_years:g} asked")
        else:
            parts.append(f"{counted_years:.1f} years counted (relevant roles weighed in) of {years:.1f} "
                         f"vs {jd.min_years:g} asked")
    if breakdown.education is not None:
        parts.append("education " + ("meets" if breakdown.education >= 1.0 else "below") + " the requirement")
    if breakdown.semantic is not None:
        level = "strong" if breakdown.semantic >= 0.66 else "moderate" if breakdown.semantic >= 0.33 else "weak"
        parts.append(f"{level} semantic fit")
    if breakdown.title is not None:
        level = "same occupation" if breakdown.title >= 1.0 else "related title" if breakdown.title >= 0.5 else "other title"
        parts.append(level)
    return "; ".join(parts)


@dataclass(frozen=True)
class _RowText:
    """The per-CV lists a result's evidence quotes."""

    skills: Sequence[str]
    skill_lines: Mapping[str, str]
    titles: Sequence[str]
    norm_titles: Sequence[str]
    lex_terms: Sequence[str]
    role_months: Sequence[int] = ()
    role_titles: Sequence[str] = ()
    role_occupations: Sequence[str] = ()
    role_skills: Sequence[Sequence[str]] = ()


def _result(
    jd: JDFeatures,
    cv_id: str,
    score: float,
    components: dict[str, float | None],
    required_hit: np.ndarray,
    preferred_hit: np.ndarray,
    experience_months: int,
    education_rank: int,
    row: _RowText,
    counted_months: float | None = None,
    statements: bool = False,
) -> MatchResult:
    breakdown = ScoreBreakdown(**components)
    # Relevant experience shows only where it changed the months counted.
    relevant = counted_months is not None and counted_months != experience_months
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
        explanation=_explain(breakdown, jd, required_hit, experience_months / 12.0,
                             counted_months / 12.0 if relevant and counted_months is not None else None, statements),
        evidence=_evidence(
            jd, breakdown, skills=row.skills, skill_lines=row.skill_lines, titles=row.titles,
            norm_titles=row.norm_titles, lex_terms=row.lex_terms,
            experience_months=experience_months, education_rank=education_rank,
            roles=row if relevant else None, statements=statements,
        ),
    )


# ------------------------------------------------------------------------ pair form


def _related(cv_categories: set[str | None], cats: Sequence[str | None], width: int) -> np.ndarray:
    if not cats:
        return np.zeros((1, width), dtype=bool)
    return np.array([[c is not None and c in cv_categories for c in cats]], dtype=bool).reshape(1, width)


def score_pair(cv: CVFeatures, jd: JDFeatures, weights: ScoreWeights | None = None) -> MatchResult:
    """Score one CV against one JD."""
    weights = weights or ScoreWeights()
    required_hit = np.array([[s in cv.skills for s in jd.required]], dtype=bool).reshape(1, len(jd.required))
    preferred_hit = np.array([[s in cv.skills for s in jd.preferred]], dtype=bool).reshape(1, len(jd.preferred))
    cv_categories = {skill_category(s) for s in cv.skills} if (jd.required_categories or jd.preferred_categories) else set()
    # The CV's query-term hits in its stored term order, as the batch form reads them.
    position = {t: j for j, t in enumerate(jd.lexical_terms)}
    hit_rows = [(position[t], tf) for t, tf in zip(cv.lex_terms, cv.lex_tfs, strict=True) if t in position]
    term_idx = np.array([j for j, _ in hit_rows], dtype=np.int64)
    tfs = np.array([tf for _, tf in hit_rows], dtype=np.int64)
    sig = _Signals(
        required_hits=required_hit,
        required_related=_related(cv_categories, jd.required_categories, len(jd.required)),
        preferred_hits=preferred_hit,
        preferred_related=_related(cv_categories, jd.preferred_categories, len(jd.preferred)),
        experience_months=_experience(jd, np.array([cv.experience_months]), RoleLists.of_one(
            cv.role_months, cv.role_titles, cv.role_occupations, cv.role_skills), weights),
        education_rank=np.array([cv.education_rank]),
        **_cosine_signals(_cosines([v[None, :] for v in np.asarray(cv.vectors, dtype=np.float32)], jd.vectors)),
        title_hit=np.array([jd.norm_title is not None and jd.norm_title in cv.norm_titles]),
        bm25=_bm25(jd, np.zeros(len(term_idx), dtype=np.int64), term_idx, tfs, np.array([cv.lex_len]), 1),
    )
    comps = _components(jd, sig, weights)
    score = _combine(comps, weights, 1)[0]
    values = {k: (None if v is None else float(v[0])) for k, v in comps.items()}
    row = _RowText(sorted(cv.skills), cv.skill_lines, cv.titles, cv.norm_titles, cv.lex_terms,
                   cv.role_months, cv.role_titles, cv.role_occupations, cv.role_skills)
    return _result(jd, cv.cv_id, score, values, required_hit[0], preferred_hit[0], cv.experience_months,
                   cv.education_rank, row, float(sig.experience_months[0]), weights.requirement_statements)


# ------------------------------------------------------------------ vectorized form


# The columns a result's evidence quotes.
_TEXT_COLUMNS = ("skills", "skill_lines", "titles", "norm_titles", "lex_terms", *ROLE_COLUMNS)


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
    education_rank: np.ndarray | None = None
    table: pa.Table | None = None  # the scored rows, for the evidence of a result
    counted_months: np.ndarray | None = None  # [n] the months the experience component counted
    statements: bool = False  # skill components counted requirement statements (evidence quotes them)

    def __len__(self) -> int:
        return len(self.cv_ids)

    def order(self) -> np.ndarray:
        """Indices by score descending, ties broken by cv_id, so rankings are stable."""
        return np.lexsort((self.cv_ids.astype(str), -self.scores))

    def _row_texts(self, rows: Sequence[int]) -> list[_RowText]:
        """The evidence lists of these rows, read from the table in one ``take``."""
        if self.table is None:
            return [_RowText((), {}, (), (), ()) for _ in rows]
        names = [n for n in _TEXT_COLUMNS if n in self.table.column_names]
        taken = self.table.select(names).take(pa.array(rows, pa.int64())).to_pylist()
        out = []
        for row in taken:
            def get(name: str, row: dict = row) -> list:
                return row.get(name) or []

            skills = get("skills")
            out.append(_RowText(sorted(skills), dict(zip(skills, get("skill_lines"), strict=False)), get("titles"),
                                get("norm_titles"), get("lex_terms"), get("role_months"), get("role_titles"),
                                get("role_occupations"), [r or [] for r in get("role_skills")]))
        return out

    def _row_text(self, i: int) -> _RowText:
        return self._row_texts([i])[0]

    def result(self, i: int, text: _RowText | None = None) -> MatchResult:
        values = {k: (None if v is None else float(v[i])) for k, v in self.components.items()}
        education = int(self.education_rank[i]) if self.education_rank is not None else 0
        return _result(
            self.jd,
            str(self.cv_ids[i]),
            self.scores[i],
            values,
            self.required_hits[i],
            self.preferred_hits[i],
            int(self.experience_months[i]),
            education,
            text if text is not None else self._row_text(i),
            float(self.counted_months[i]) if self.counted_months is not None else None,
            self.statements,
        )

    def results(self, rows: Sequence[int] | None = None) -> list[MatchResult]:
        """The results of these rows (all, in row order, by default), evidence read at once."""
        idx = list(range(len(self))) if rows is None else [int(i) for i in rows]
        return [self.result(i, text) for i, text in zip(idx, self._row_texts(idx), strict=True)]

    def top(self, k: int | None = None) -> list[MatchResult]:
        """The ``k`` best results (all by default), best first."""
        return self.results(self.order() if k is None else self.order()[:k])


def _lexical_hits(table: pa.Table, jd: JDFeatures, n: int) -> np.ndarray:
    if not jd.lexical_terms or n == 0 or "lex_terms" not in table.column_names:
        return np.zeros(n, dtype=np.float64)
    terms, parents = flat_lists(table.column("lex_terms"))
    tfs, _ = flat_lists(table.column("lex_tfs"))
    index = pc.index_in(terms, value_set=pa.array(list(jd.lexical_terms), type=terms.type))
    valid = index.is_valid().to_numpy(zero_copy_only=False)
    term_idx = index.filter(index.is_valid()).to_numpy(zero_copy_only=False).astype(np.int64)
    tf = tfs.to_numpy(zero_copy_only=False)[valid].astype(np.int64)
    lengths = table.column("lex_len").to_numpy(zero_copy_only=False)
    return _bm25(jd, parents[valid], term_idx, tf, lengths, n)


def _vectors(table: pa.Table) -> list[np.ndarray]:
    """The three fixed-size-list vector columns as [n, dim] float32 matrices (no copy where
    the column is one float32 chunk)."""
    out = []
    for name in VECTOR_COLUMNS:
        col = table.column(name).combine_chunks()
        values = col.flatten().to_numpy(zero_copy_only=False)
        out.append(values.astype(np.float32, copy=False).reshape(len(col), col.type.list_size))
    return out


def score_table(jd: JDFeatures, table: pa.Table, weights: ScoreWeights | None = None) -> ScoredBatch:
    """Score one JD against every CV row of ``table`` at once.

    ``table`` holds the store's scoring columns (``features.FEATURE_COLUMNS``): ``cv_id``,
    ``skills`` (list of canonical names), ``experience_months``, ``education_rank``, the
    three vector columns and, optionally, ``norm_titles``, the lexical columns and the
    evidence columns (a table without them scores as a CV with none).
    """
    weights = weights or ScoreWeights()
    n = table.num_rows
    months = table.column("experience_months").to_numpy(zero_copy_only=False).astype(np.int64)
    education = table.column("education_rank").to_numpy(zero_copy_only=False).astype(np.int64)
    titles = CodedLists(table.column("norm_titles")) if "norm_titles" in table.column_names else None
    roles = RoleLists.from_table(table) if weights.relevant_experience_share else None
    sig = _Signals(
        **_list_signals(jd, CodedLists(table.column("skills")), titles, n),
        experience_months=_experience(jd, months, roles, weights),
        education_rank=education,
        **_cosine_signals(_cosines(_vectors(table), jd.vectors) if n else np.zeros((0, 3, 3))),
        bm25=_lexical_hits(table, jd, n),
    )
    comps = _components(jd, sig, weights)
    return ScoredBatch(
        jd=jd,
        cv_ids=np.asarray(table.column("cv_id").to_pylist(), dtype=object),
        scores=_combine(comps, weights, n),
        components=comps,
        required_hits=sig.required_hits,
        preferred_hits=sig.preferred_hits,
        experience_months=months,
        education_rank=education,
        table=table,
        counted_months=sig.experience_months,
        statements=weights.requirement_statements,
    )


def _list_signals(jd: JDFeatures, skills: CodedLists, titles: CodedLists | None, n: int) -> dict[str, np.ndarray]:
    """The skill and occupation signals of n CVs (``titles`` None: no CV has one)."""
    def related(cats: Sequence[str | None], width: int) -> np.ndarray:
        return skills.category_hits(cats) if cats else np.zeros((n, width), dtype=bool)

    return {
        "required_hits": skills.hits(jd.required),
        "required_related": related(jd.required_categories, len(jd.required)),
        "preferred_hits": skills.hits(jd.preferred),
        "preferred_related": related(jd.preferred_categories, len(jd.preferred)),
        "title_hit": titles.hits([jd.norm_title])[:, 0]
        if titles is not None and jd.norm_title is not None else np.zeros(n, dtype=bool),
    }


def prescore(
    jd: JDFeatures,
    *,
    title_dot: np.ndarray,
    sum_dot: np.ndarray,
    experience_months: np.ndarray,
    education_rank: np.ndarray,
    skills: CodedLists,
    norm_titles: CodedLists,
    weights: ScoreWeights | None = None,
    roles: RoleLists | None = None,
) -> np.ndarray:
    """The score of every CV in a pool at once, but for the lexical (BM25) component.

    Reads only what fits in memory for a whole pool (two dot products, a few numbers and
    the coded skills and occupations per CV) and applies ``score_table``'s formulas and
    rounding. Where the lexical component weighs nothing (the default) this is the score
    but for float rounding (the semantic component comes from one float32 dot product of
    summed vectors instead of nine float64 cosines: a component can differ in its last
    digit); otherwise it is the score with BM25 counted as 0 for every CV.
    ``match.retrieve`` picks the CVs to score in full by it.

    Args:
        title_dot: [n] dot products of the CVs' title vectors with the JD's.
        sum_dot: [n] dot products of the CVs' summed section vectors with the JD's summed
            vectors: the nine section cosines added up (``storage.tables.SUM_VECTOR_COLUMN``).
        experience_months, education_rank: [n] as stored.
        skills, norm_titles: the pool's canonical skills and taxonomy occupations.
        roles: the pool's experience roles (``PoolArrays.roles``); None: total months only.
    """
    weights = weights or ScoreWeights()
    n = len(title_dot)
    sig = _Signals(
        **_list_signals(jd, skills, norm_titles, n),
        experience_months=_experience(jd, experience_months, roles, weights),
        education_rank=education_rank,
        semantic_cos=sum_dot.astype(np.float64) / len(VECTOR_COLUMNS) ** 2,
        title_cos=title_dot.astype(np.float64),
        bm25=np.zeros(n),
    )
    comps = _components(jd, sig, weights)
    comps["lexical"] = None
    return _combine(comps, weights, n)
