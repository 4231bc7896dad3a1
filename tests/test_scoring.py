"""Scoring properties: deterministic, monotone in matched skills, pair form == vectorized form."""

from __future__ import annotations

import numpy as np
import pytest

from cvmatch_ray.config import ScoreWeights
from cvmatch_ray.match.scoring import (
    CVFeatures,
    JDFeatures,
    features_table,
    score_pair,
    score_table,
)
from cvmatch_ray.schemas import CVProfile, EducationLevel, JDProfile, SkillMention

SKILLS = ["Python", "Docker", "AWS", "Kafka", "Go (programming language)", "PostgreSQL", "React", "SQL"]


def _unit(rng: np.random.Generator, dim: int = 16) -> np.ndarray:
    x = rng.normal(size=(3, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def jd() -> JDFeatures:
    rng = np.random.default_rng(7)
    return JDFeatures(
        jd_id="jd1",
        required=("Python", "Docker", "AWS"),
        preferred=("Kafka", "PostgreSQL"),
        min_years=5.0,
        education_rank=EducationLevel.bachelor.rank,
        vectors=_unit(rng),
    )


@pytest.fixture(scope="module")
def pool() -> list[CVFeatures]:
    rng = np.random.default_rng(11)
    return [
        CVFeatures(
            cv_id=f"cv{i:05d}",
            skills=frozenset(rng.choice(SKILLS, size=int(rng.integers(0, 6)), replace=False).tolist()),
            experience_months=int(rng.integers(0, 240)),
            education_rank=int(rng.integers(0, 7)),
            vectors=_unit(rng),
        )
        for i in range(3000)
    ]


def test_pair_form_equals_vectorized_form_to_the_last_digit(jd, pool):
    batch = score_table(jd, features_table(pool))
    for i, cv in enumerate(pool):
        assert batch.result(i) == score_pair(cv, jd)


def test_scoring_is_deterministic(jd, pool):
    a = score_table(jd, features_table(pool))
    b = score_table(jd, features_table(list(reversed(pool))))
    assert [r.model_dump() for r in a.top()] == [r.model_dump() for r in b.top()]


def test_adding_a_matched_required_skill_never_lowers_the_score(jd, pool):
    for cv in pool[:500]:
        before = score_pair(cv, jd).score
        for skill in jd.required + jd.preferred:
            richer = CVFeatures(cv.cv_id, cv.skills | {skill}, cv.experience_months, cv.education_rank, cv.vectors)
            assert score_pair(richer, jd).score >= before
        if not set(jd.required) <= cv.skills:
            missing = next(s for s in jd.required if s not in cv.skills)
            richer = CVFeatures(cv.cv_id, cv.skills | {missing}, cv.experience_months, cv.education_rank, cv.vectors)
            assert score_pair(richer, jd).score > before


def test_breakdown_and_skill_lists(jd):
    cv = CVFeatures("c", frozenset({"Python", "Kafka", "Go (programming language)"}), 30, 4, jd.vectors)
    r = score_pair(cv, jd)
    assert r.matched_skills == ["Python", "Kafka"]
    assert r.missing_required == ["Docker", "AWS"]
    assert r.missing_preferred == ["PostgreSQL"]
    assert r.breakdown.required_skills == pytest.approx(1 / 3, abs=1e-4)
    assert r.breakdown.experience == pytest.approx(0.5)
    assert r.breakdown.education == 1.0
    # Identical vectors: full title credit; the semantic component is the mean over all
    # nine section pairs, so it is the mean of the JD's own section-by-section cosines.
    assert r.breakdown.title == 1.0
    cross = float((jd.vectors.astype(np.float64) @ jd.vectors.astype(np.float64).T).mean())
    assert r.breakdown.semantic == pytest.approx(min(1.0, max(0.0, (cross - 0.15) / 0.6)), abs=1e-4)


def test_components_that_do_not_apply_are_left_out():
    rng = np.random.default_rng(1)
    # One vector for all three sections: every section pair is a perfect semantic match.
    v = np.repeat(_unit(rng)[:1], 3, axis=0)
    jd = JDFeatures("j", required=("Python",), preferred=(), min_years=None, education_rank=None, vectors=v)
    r = score_pair(CVFeatures("c", frozenset({"Python"}), 0, 0, v), jd)
    assert r.breakdown.preferred_skills is None
    assert r.breakdown.experience is None and r.breakdown.education is None
    # Everything that applies is perfect, so the score is perfect.
    assert r.score == 100.0


def test_weights_change_the_score(jd, pool):
    skills_only = ScoreWeights(required_skills=1, preferred_skills=0, semantic=0, experience=0, education=0, title=0)
    for cv in pool[:50]:
        r = score_pair(cv, jd, skills_only)
        assert r.score == pytest.approx(100 * len(cv.skills & set(jd.required)) / 3, abs=0.01)


def test_top_k_is_sorted_and_ties_break_by_id(jd, pool):
    batch = score_table(jd, features_table(pool))
    top = batch.top(50)
    keys = [(-r.score, r.cv_id) for r in top]
    assert keys == sorted(keys) and len(top) == 50


def test_features_from_profiles():
    v = _unit(np.random.default_rng(3))
    cv = CVProfile(
        skills=[SkillMention(name="Python"), SkillMention(name="AWS")],
        total_experience_months=72,
        education=[{"level": "master"}, {"level": "bachelor"}],
    )
    jdp = JDProfile(title="Engineer", required_skills=["Python", "AWS"], preferred_skills=["AWS", "Kafka"], min_years=5)
    jdf = JDFeatures.from_profile("j", jdp, v)
    assert jdf.preferred == ("Kafka",)  # required wins over preferred
    cvf = CVFeatures.from_profile("c", cv, v)
    assert cvf.education_rank == EducationLevel.master.rank
    r = score_pair(cvf, jdf)
    assert r.missing_required == [] and r.missing_preferred == ["Kafka"]


def test_empty_pool(jd):
    batch = score_table(jd, features_table([]))
    assert len(batch) == 0 and batch.top(10) == []
