"""Whole-pool matching: hybrid retrieval (full-text + vector search, fused) then exact rescoring.

Real LanceDB on ``tmp_path``; synthetic CVs with real skill words so the full-text index
has something to find, and random unit vectors with a planted group near the JD.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from cvmatch_ray.config import RetrievalSettings, ScoreWeights
from cvmatch_ray.match.features import cv_feature_columns
from cvmatch_ray.errors import UnknownDocument
from cvmatch_ray.match.rank import jd_features, rank_stored
from cvmatch_ray.match.retrieve import _prescore_ranking, match_pool, rrf_fuse
from cvmatch_ray.schemas import CVProfile, CVStats, EducationLevel, JDProfile, Provenance, SkillMention
from cvmatch_ray.storage.records import CVRecord, JDRecord
from cvmatch_ray.storage.tables import Store

DIM = 32
WORDS = ["Python", "PostgreSQL", "Docker", "Kubernetes", "Accounting", "Payroll", "Salesforce", "Tableau",
         "React", "Terraform", "Excel", "Recruiting"]
WEIGHTS = ScoreWeights(required_skills=0.25, preferred_skills=0.1, semantic=0.25, experience=0.1,
                       education=0.05, title=0.1, lexical=0.15)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _fill(store: Store, n: int, planted: int, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    jd_vec = _unit(rng.normal(size=(3, DIM)))
    jd = JDProfile(title="Backend Engineer", required_skills=["Python", "PostgreSQL", "Docker"],
                   preferred_skills=["Kubernetes"], min_years=3, education_level=EducationLevel.bachelor)
    jd_id = "f" * 32
    store.upsert_jds([JDRecord(jd_id=jd_id, filename=None, profile=jd, provenance=Provenance(), vectors=jd_vec,
                               text="Backend Engineer. Python PostgreSQL Docker required, Kubernetes a plus.")])
    records = []
    for i in range(n):
        near = i < planted
        vec = _unit(jd_vec + rng.normal(scale=0.3, size=(3, DIM))) if near else _unit(rng.normal(size=(3, DIM)))
        skills = (["Python", "PostgreSQL", "Docker"] if near else []) + rng.choice(WORDS, 3, replace=False).tolist()
        skills = list(dict.fromkeys(skills))
        months = int(rng.integers(0, 120))
        role = {"title": "Backend Engineer" if near else "Accountant", "months": months // 2,
                "skills": skills[:2] if i % 3 else []}
        profile = CVProfile(skills=[SkillMention(name=s) for s in skills], total_experience_months=months,
                            education=[{"level": "bachelor"}], experience=[role])
        text = "Engineer\nSkills: " + ", ".join(skills) + "\nBuilt services with " + " and ".join(skills[:2]) + "."
        records.append(CVRecord(cv_id=f"{i:032x}", filename=None, text=text, profile=profile,
                                stats=CVStats.of(profile), provenance=Provenance(), vectors=vec,
                                features=cv_feature_columns(profile, text)))
    store.upsert_cvs(records)
    return jd_id


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[Store, str]:
    store = Store(str(tmp_path_factory.mktemp("pool")), dim=DIM)
    jd_id = _fill(store, 400, planted=12)
    built = store.ensure_search_indexes(ann_min_rows=10**6)
    assert built["lexical_text"] == "fts" and built["vec_title"] == "exact"
    return store, jd_id


def _view(results):
    return [(r.cv_id, r.score, r.breakdown.model_dump()) for r in results]


def test_hybrid_retrieval_returns_the_exact_top_k(small):
    store, jd_id = small
    exact = rank_stored(store, jd_id, top_k=10, weights=WEIGHTS)
    # Candidates are a fraction of the pool, yet the fused sources contain the true top 10.
    settings = RetrievalSettings(candidates=60, per_source=40)
    found = match_pool(store, jd_id, top_k=10, weights=WEIGHTS, settings=settings)
    assert found.candidates <= 60 < store.count_cvs()
    assert _view(found.results) == _view(exact)
    assert found.results == exact  # same evidence and explanations too
    assert {"fts", "prescore", "read", "rescore", "total"} <= set(found.timings_ms)


def test_full_text_search_reads_only_the_blinded_text(small):
    store, _ = small
    hits = store.search_cvs_text("Payroll", 500)
    assert hits and all("Payroll" in store.get_cv(cv_id).profile.skill_names for cv_id, _ in hits)
    assert store.search_cvs_text("", 10) == []


def test_past_ann_min_rows_the_approximate_shortlist_keeps_the_top_k(tmp_path):
    store = Store(str(tmp_path), dim=DIM)
    jd_id = _fill(store, 600, planted=12, seed=3)
    store.ensure_search_indexes()
    weights = WEIGHTS.model_copy(update={"lexical": 0.0})
    exact = rank_stored(store, jd_id, top_k=10, weights=weights)
    settings = RetrievalSettings(ann_min_rows=500, ann_candidates=100, ann_margin=5)
    found = match_pool(store, jd_id, top_k=10, weights=weights, settings=settings)
    assert found.results == exact and not found.exact
    assert found.stages == {"pool": 600, "sketched": 100, "kept": 15} and found.candidates == 15
    # With BM25 weighed, the approximate prescore ranking is one of the fused lists.
    fused = match_pool(store, jd_id, top_k=10, weights=WEIGHTS, settings=settings.model_copy(
        update={"candidates": 100, "per_source": 60}))
    assert _view(fused.results) == _view(rank_stored(store, jd_id, top_k=10, weights=WEIGHTS))
    assert {"fts", "prescore", "fuse"} <= set(fused.timings_ms)
    # Ingest builds no ANN index any more (nothing reads one): only lookup and full text.
    assert not store.has_vector_index("vec_sum")


def test_prescore_ranks_the_pool_as_the_scorer_does_when_bm25_weighs_nothing(small):
    store, jd_id = small
    weights = WEIGHTS.model_copy(update={"lexical": 0.0})
    everyone = rank_stored(store, jd_id, top_k=store.count_cvs(), weights=weights)
    ranked = _prescore_ranking(store, jd_features(store, jd_id), store.count_cvs(), weights)
    assert ranked == [r.cv_id for r in everyone]
    # So the pool needs no other search: its exact shortlist is rescored, and little more
    # than the top_k is read (ties at the 20th score, or a few where a read costs more).
    found = match_pool(store, jd_id, top_k=20, weights=weights)
    assert 20 <= found.candidates <= 30 and "fts" not in found.timings_ms and found.exact
    assert found.stages["pool"] == store.count_cvs() and found.stages["exact"] == found.candidates
    assert found.results == everyone[:20]


def test_prescore_counts_relevant_experience_as_the_scorer_does(small):
    store, jd_id = small
    weights = WEIGHTS.model_copy(update={"lexical": 0.0, "relevant_experience_share": 0.8, "experience": 0.5})
    everyone = rank_stored(store, jd_id, top_k=store.count_cvs(), weights=weights)
    ranked = _prescore_ranking(store, jd_features(store, jd_id), store.count_cvs(), weights)
    assert ranked == [r.cv_id for r in everyone]
    default = rank_stored(store, jd_id, top_k=store.count_cvs(), weights=WEIGHTS.model_copy(update={"lexical": 0.0}))
    assert [r.breakdown.experience for r in everyone] != [r.breakdown.experience for r in default]


def test_rrf_fusion_is_deterministic():
    fused = rrf_fuse({"a": ["x", "y", "z"], "b": ["y", "x", "w"]}, k=60)
    assert fused[:2] == ["x", "y"] and set(fused) == {"x", "y", "z", "w"}
    assert rrf_fuse({"b": ["y", "x", "w"], "a": ["x", "y", "z"]}, k=60) == fused


def test_unknown_jd(small):
    store, _ = small
    with pytest.raises(UnknownDocument):
        match_pool(store, "e" * 32)


@pytest.mark.parametrize("column", ["vec_title", "vec_sum"])
def test_exact_vector_search_in_memory_agrees_with_lance(tmp_path, column):
    store = Store(str(tmp_path), dim=DIM)
    jd_id = _fill(store, 150, planted=5, seed=3)
    query = store.get_jd(jd_id).vectors
    query = query[0] if column == "vec_title" else query.sum(axis=0)
    ours = store.search_cvs_vector(column, query, 20, exact=True)
    # Lance's own exact scan: same ids in the same order, same similarities.
    table = store._table("cvs", create=False)
    distance = "dot" if column == "vec_sum" else "cosine"
    lance = (table.search(query, vector_column_name=column).distance_type(distance).bypass_vector_index()
             .select(["cv_id", "_distance"]).limit(20).to_arrow())
    assert [cv_id for cv_id, _ in ours] == lance.column("cv_id").to_pylist()
    np.testing.assert_allclose([s for _, s in ours], 1.0 - lance.column("_distance").to_numpy(), atol=1e-5)


def test_exact_vector_search_sees_rows_written_after_the_matrix_was_loaded(tmp_path):
    store = Store(str(tmp_path), dim=DIM)
    jd_id = _fill(store, 50, planted=0, seed=4)
    jd_vectors = store.get_jd(jd_id).vectors
    before = store.search_cvs_vector("vec_title", jd_vectors[0], 5, exact=True)
    twin = dataclasses.replace(store.get_cv(before[-1][0]), cv_id="e" * 32, vectors=jd_vectors.copy())
    store.upsert_cvs([twin])
    after = store.search_cvs_vector("vec_title", jd_vectors[0], 5, exact=True)
    assert after[0][0] == "e" * 32 and after[0][1] == pytest.approx(1.0, abs=1e-5)
    store.delete_cv("e" * 32)
    assert store.search_cvs_vector("vec_title", jd_vectors[0], 5, exact=True) == before


def test_pool_reads_by_position_stay_right_after_deletes(tmp_path):
    store = Store(str(tmp_path), dim=DIM)
    jd_id = _fill(store, 120, planted=10, seed=5)
    for i in (0, 3, 7, 50, 51):  # deleted rows leave holes in the fragments
        store.delete_cv(f"{i:032x}")
    weights = WEIGHTS.model_copy(update={"lexical": 0.0})
    everyone = rank_stored(store, jd_id, top_k=20, weights=weights)
    found = match_pool(store, jd_id, top_k=20, weights=weights)
    assert found.results == everyone


def test_top_k_past_the_candidate_setting_still_gets_k_results(small):
    store, jd_id = small
    settings = RetrievalSettings(candidates=10, per_source=10)
    for weights in (WEIGHTS, WEIGHTS.model_copy(update={"lexical": 0.0})):  # fused, and prescore only
        assert len(match_pool(store, jd_id, top_k=40, weights=weights, settings=settings).results) == 40


@pytest.mark.slow
def test_whole_pool_and_a_match_job_agree_under_a_non_default_retrieval_setting(small, ray_cluster):
    """Both read ``RetrievalSettings`` (here: BM25's idf from 5 of the 400 CVs), so a recruiter
    sees one score for a CV whichever way it was ranked."""
    import uuid

    from cvmatch_ray.config import Settings
    from cvmatch_ray.pipelines.matching import create_match_job, run_plan

    store, jd_id = small
    settings = Settings(
        data_dir=store.uri, weights=WEIGHTS, ray_namespace=f"r{uuid.uuid4().hex[:8]}",
        retrieval=RetrievalSettings(lexical_idf_sample=5), match_chunk_size=100,
    )
    pool = {r.cv_id: r.score for r in match_pool(store, jd_id, top_k=20, weights=WEIGHTS, settings=settings.retrieval).results}
    plan = create_match_job(settings, jd_id=jd_id, cv_ids=list(pool))
    run_plan(settings, plan)
    rows = Store(store.uri, dim=DIM).read_match_rows(plan.job_id)
    job = dict(zip(rows.column("cv_id").to_pylist(), rows.column("score").to_pylist(), strict=True))
    assert job == pool
    # The setting matters: with every CV counted, the same CVs score otherwise.
    default = {r.cv_id: r.score for r in rank_stored(store, jd_id, list(pool), weights=WEIGHTS)}
    assert default != pool
