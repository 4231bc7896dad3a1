"""Scoring properties: deterministic, monotone in matched skills, pair form == vectorized form."""

from __future__ import annotations

import numpy as np
import pytest

from cvmatch_ray.config import ScoreWeights
from cvmatch_ray.match.features import CVFeatures, features_table
from cvmatch_ray.match.scoring import JDFeatures, score_pair, score_table
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


def _with_roles(cv: CVFeatures, rng: np.random.Generator) -> CVFeatures:
    """``cv`` with 0-4 roles: random months, occupations and skills (some the JD's)."""
    k = int(rng.integers(0, 5))
    occupations = ("software developer", "accountant", "")
    return CVFeatures(
        cv.cv_id, cv.skills, cv.experience_months, cv.education_rank, cv.vectors,
        role_months=tuple(int(m) for m in rng.integers(0, 120, size=k)),
        role_titles=tuple(f"role {j}" for j in range(k)),
        role_occupations=tuple(str(rng.choice(occupations)) for _ in range(k)),
        role_skills=tuple(tuple(rng.choice(SKILLS, size=int(rng.integers(0, 4)), replace=False).tolist())
                          for _ in range(k)),
    )


def test_relevant_experience_pair_form_equals_vectorized_form(jd, pool):
    rng = np.random.default_rng(5)
    titled = JDFeatures(**{**jd.__dict__, "norm_title": "software developer", "title": "Backend Developer"})
    cvs = [_with_roles(cv, rng) for cv in pool[:600]]
    weights = ScoreWeights(relevant_experience_share=0.7)
    batch = score_table(titled, features_table(cvs), weights)
    for i, cv in enumerate(cvs):
        assert batch.result(i) == score_pair(cv, titled, weights)


def test_relevant_experience_counts_only_matching_roles(jd):
    titled = JDFeatures(**{**jd.__dict__, "norm_title": "software developer", "title": "Backend Developer"})
    weights = ScoreWeights(relevant_experience_share=1.0)
    accountant = CVFeatures("a", frozenset(), 120, 4, jd.vectors, role_months=(120,), role_titles=("Accountant",),
                            role_occupations=("accountant",), role_skills=(("Accounting",),))
    developer = CVFeatures("d", frozenset(), 60, 4, jd.vectors, role_months=(36, 24),
                           role_titles=("Backend Developer", "Analyst"), role_occupations=("software developer", ""),
                           role_skills=((), ("Python",)))
    acc, dev = score_pair(accountant, titled, weights), score_pair(developer, titled, weights)
    assert acc.breakdown.experience == 0.0
    # 36 months in the same occupation + half of 24 months in a role with one of the JD's skills.
    assert dev.breakdown.experience == round(min(1.0, (36 + 12) / 12 / 5.0), 4)
    assert "Backend Developer" in next(e.cv_text for e in dev.evidence if e.component == "experience")
    # Total years count in full when the share is 0.
    assert score_pair(accountant, titled, ScoreWeights(relevant_experience_share=0)).breakdown.experience == 1.0


def test_requirement_statements_pair_form_equals_vectorized_form(jd, pool):
    from cvmatch_ray.match.requirements import Requirement

    grouped = JDFeatures(**{**jd.__dict__,
                            "required_statements": (Requirement("Python or Docker", (0, 1), True),
                                                    Requirement("AWS", (2,), False)),
                            "preferred_statements": (Requirement("Kafka and PostgreSQL", (0, 1), False),)})
    weights = ScoreWeights(requirement_statements=True)
    batch = score_table(grouped, features_table(pool[:800]), weights)
    for i, cv in enumerate(pool[:800]):
        assert batch.result(i) == score_pair(cv, grouped, weights)
    # "Python or Docker" is met by Docker alone: one of two statements, not one of three skills.
    cv = CVFeatures("d", frozenset({"Docker"}), 0, 0, jd.vectors)
    assert score_pair(cv, grouped, weights).breakdown.required_skills == 0.5
    assert score_pair(cv, grouped, ScoreWeights(requirement_statements=False)).breakdown.required_skills == 0.3333


def test_requirements_group_the_skills_a_statement_names():
    from cvmatch_ray.match.requirements import group_requirements

    text = "Backend Engineer\nRequirements:\n- Experience with Python or Go.\n- Docker and Kubernetes in production."
    groups = group_requirements(text, ["Python", "Go (programming language)", "Docker", "Kubernetes", "Rust"])
    by_text = {g.text: g for g in groups}
    assert by_text["Experience with Python or Go."].skills == (0, 1) and by_text["Experience with Python or Go."].any_of
    assert by_text["Docker and Kubernetes in production."].skills == (2, 3)
    assert not by_text["Docker and Kubernetes in production."].any_of
    # A skill no statement names is a statement of its own.
    assert by_text["Rust"].skills == (4,)


def test_requirement_statement_evidence_quotes_the_statement(jd):
    from cvmatch_ray.match.requirements import Requirement

    grouped = JDFeatures(**{**jd.__dict__, "required_statements": (Requirement("Python or Docker", (0, 1), True),
                                                                   Requirement("AWS", (2,), False))})
    cv = CVFeatures("d", frozenset({"Docker"}), 0, 0, jd.vectors, skill_lines={"Docker": "Shipped Docker images"})
    r = score_pair(cv, grouped, ScoreWeights(requirement_statements=True))
    assert [(e.requirement, e.cv_text) for e in r.evidence if e.component == "required_skills"] == [
        ("Python or Docker", "Shipped Docker images")]
    assert r.explanation.startswith("1/2 required statements with a skill met (1/3 required skills)")


def test_a_role_with_no_title_and_no_skill_takes_its_cvs_relevance(jd):
    titled = JDFeatures(**{**jd.__dict__, "norm_title": "software developer", "title": "Backend Developer"})
    weights = ScoreWeights(relevant_experience_share=1.0)
    # 24 months as a developer, 24 as an accountant, 24 the parser found only the dates of.
    cv = CVFeatures("c", frozenset(), 72, 4, jd.vectors, role_months=(24, 24, 24),
                    role_titles=("Backend Developer", "Accountant", ""),
                    role_occupations=("software developer", "accountant", ""), role_skills=((), (), ()))
    # Half of the judged months are relevant, so half of the dateless role's: 24 + 12 months.
    assert score_pair(cv, titled, weights).breakdown.experience == round((24 + 12) / 12 / 5.0, 4)
    # Nothing judged at all: every month counts, as for a CV with no roles.
    blind = CVFeatures("b", frozenset(), 72, 4, jd.vectors, role_months=(72,), role_titles=("",),
                       role_occupations=("",), role_skills=((),))
    assert score_pair(blind, titled, weights).breakdown.experience == 1.0
    assert "3.0 years in matching roles" in next(
        e.cv_text for e in score_pair(cv, titled, weights).evidence if e.component == "experience")


@pytest.mark.parametrize("weights", [ScoreWeights(), ScoreWeights(relevant_experience_share=0),
                                     ScoreWeights(requirement_statements=True)])
def test_stored_rows_give_back_the_same_results(jd, pool, weights):
    """A match job stores arrays, not results; the results built from them when read are the
    in-process ones to the last digit, evidence and explanation included."""
    from cvmatch_ray.match.requirements import Requirement
    from cvmatch_ray.match.results import match_rows, stored_batch

    rng = np.random.default_rng(3)
    titled = JDFeatures(**{**jd.__dict__, "norm_title": "software developer", "title": "Backend Developer",
                           "required_statements": (Requirement("Python or Docker", (0, 1), True),
                                                   Requirement("AWS", (2,), False))})
    cvs = [_with_roles(cv, rng) for cv in pool[:300]]
    table = features_table(cvs)
    batch = score_table(titled, table, weights)
    rows = match_rows(batch)
    assert rows.num_rows == 300 and rows.column("title").null_count == 0
    order = batch.order()
    stored = rows.take(order[:50])
    # The CV rows come in any order; a CV erased since is left out.
    shuffled = table.take(rng.permutation(table.num_rows))
    shuffled = shuffled.filter(np.array([c != cvs[order[3]].cv_id for c in shuffled.column("cv_id").to_pylist()]))
    expected = [r for r in batch.top(50) if r.cv_id != cvs[order[3]].cv_id]
    assert stored_batch(titled, stored, shuffled).results() == expected
    # A component that does not apply (no lexical terms here) is stored null and reads back as None.
    assert rows.column("lexical").null_count == 300
    plain = score_table(jd, table, weights)
    assert stored_batch(jd, match_rows(plain), table).results() == plain.results()


def test_stored_rows_of_an_empty_batch(jd):
    from cvmatch_ray.match.results import match_rows, stored_batch

    rows = match_rows(score_table(jd, features_table([])))
    assert rows.num_rows == 0
    assert stored_batch(jd, rows, features_table([])).results() == []
