"""Shortlists of the pool (match.shortlist) and the int8 vectors they read (match.quantized).

Pure logic, no Ray: the int8 bounds on random matrices, and the shortlists on a small real
LanceDB store (``tmp_path``) whose CVs vary every signal the score reads (related skills,
education, roles of the JD's occupation or not, the JD's title or not), so a bound that
one component breaks shows here against ``rank_stored``, the exhaustive ranking.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from cvmatch_ray.config import ScoreWeights
from cvmatch_ray.match import quantized, shortlist
from cvmatch_ray.match.features import CACHED_MASKS, FEATURE_COLUMNS, cv_feature_columns
from cvmatch_ray.match.quantized import Int8Rows, Sketch, _torch_quantized
from cvmatch_ray.match.rank import jd_features, rank_stored, score_stored
from cvmatch_ray.schemas import CVProfile, CVStats, EducationLevel, JDProfile, Provenance, SkillMention
from cvmatch_ray.storage.records import CVRecord, JDRecord, feature_matrix
from cvmatch_ray.storage.tables import Store

DIM = 24
KERNELS = ["numpy", pytest.param("int8", marks=pytest.mark.skipif(
    _torch_quantized() is None, reason="PyTorch's int8 kernel is not available"))]
# Related pairs in the taxonomy's narrow categories: MySQL ~ PostgreSQL, Java ~ Python,
# Terraform ~ Docker; the rest fill skill lists.
SKILLS = ["Python", "Java", "PostgreSQL", "MySQL", "Docker", "Terraform", "Kubernetes", "Payroll", "Tableau",
          "React", "Linux", "Git"]
TITLES = ["Backend Engineer", "Software Engineer", "Accountant", "Data Analyst", ""]
LEVELS = [lv.value for lv in EducationLevel]


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


# ------------------------------------------------------------------ int8 vectors


def _matrix(rng: np.random.Generator, n: int = 3000, dim: int = 64) -> np.ndarray:
    m = rng.normal(size=(n, dim)).astype(np.float32) * rng.uniform(0.1, 3.0, size=(n, 1)).astype(np.float32)
    m[::97] = 0.0  # zero rows
    m[1::89, 0] *= 40.0  # an outlier coordinate: a coarse scale for the rest of its row
    return m


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("block", [None, 700])  # one packed block, or several (the last holds the identity)
def test_int8_dot_products_stay_within_their_bounds(kernel, block, monkeypatch):
    if block is not None:
        monkeypatch.setattr(quantized, "PACK_ROWS", block)
    rng = np.random.default_rng(0)
    m = _matrix(rng)
    rows = Int8Rows.quantize(m)
    residual_signs = np.sign(m - rows.scales[:, None] * rows.codes.astype(np.float32)).sum(axis=0)
    queries = [rng.normal(size=64), 50.0 * rng.normal(size=64), residual_signs, np.zeros(64), m[5]]
    for q in queries:
        exact = m.astype(np.float64) @ np.asarray(q, np.float64)
        approx, bound = rows.dots(q, kernel=kernel)
        assert approx.dtype == np.float32 and bound.shape == (len(m),)
        assert np.all(np.abs(exact - approx) <= bound)
        some = np.array([3, 5, 97, 2000])
        part, part_bound = rows.dots_rows(some, q)
        assert np.all(np.abs(exact[some] - part) <= part_bound)
    # The bound is tight enough to rank by: a few percent of ||row|| ||q||, not the product itself.
    q = rng.normal(size=64)
    _, bound = rows.dots(q, kernel=kernel)
    scale = np.linalg.norm(m, axis=1) * np.linalg.norm(q)
    assert np.median(bound[scale > 0] / scale[scale > 0]) < 0.03


def _run_fresh(code: str) -> str:
    """``code`` in a fresh Python (its stdout): thread settings are process-wide, and an
    in-process vLLM engine (the LLM tests') leaves PyTorch's reporting them out of step."""
    env = os.environ | {"OPENBLAS_NUM_THREADS": "2", "OMP_NUM_THREADS": "2"}
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env,
                         timeout=120, check=True)
    return out.stdout


@pytest.mark.skipif(_torch_quantized() is None, reason="PyTorch's int8 kernel is not available")
def test_products_run_single_threaded_and_give_the_thread_settings_back():
    out = _run_fresh(
        """
        import numpy as np, torch
        from threadpoolctl import ThreadpoolController
        from cvmatch_ray.match import quantized
        from cvmatch_ray.match.quantized import Int8Rows

        def blas():
            return max(i["num_threads"] for i in ThreadpoolController().select(user_api="blas").info())

        rows = Int8Rows.quantize(np.random.default_rng(4).normal(size=(50, 16)))
        torch.set_num_threads(2)
        seen = [torch.get_num_threads(), blas()]
        with quantized.single_threaded():
            seen += [torch.get_num_threads(), blas()]
            with quantized.single_threaded():  # nested (or another query's thread): still 1
                rows.dots(np.ones(16), kernel="int8")
            seen += [torch.get_num_threads(), blas()]
        seen += [torch.get_num_threads(), blas()]
        print(*seen)
        """
    )
    assert out.split() == ["2", "2", "1", "1", "1", "1", "2", "2"]


def test_a_blas_loaded_after_the_first_query_runs_single_threaded_too():
    """scipy's OpenBLAS arrives with sentence-transformers' imports, after whole-pool
    matching may have run: a query limits the BLAS libraries loaded when it starts."""
    out = _run_fresh(
        """
        from threadpoolctl import ThreadpoolController
        from cvmatch_ray.match import quantized
        with quantized.single_threaded():
            pass
        import scipy.linalg  # loads scipy's own OpenBLAS
        with quantized.single_threaded():
            inside = [i["num_threads"] for i in ThreadpoolController().select(user_api="blas").info()]
        print(len(inside), max(inside))
        """
    )
    libraries, most = map(int, out.split())
    assert libraries >= 2 and most == 1


def test_int8_rows_filled_a_block_at_a_time_equal_one_quantization():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(5, 8)), rng.normal(size=(3, 8))
    both = Int8Rows.allocate(8, 8)
    both.set_rows(0, a)
    both.set_rows(5, b)
    whole = Int8Rows.quantize(np.vstack([a, b]))
    for name in ("codes", "scales", "errors", "norms"):
        np.testing.assert_array_equal(getattr(both, name), getattr(whole, name))
    assert len(Int8Rows.allocate(0, 8)) == 0 and both.nbytes >= 8 * 8
    with pytest.raises(ValueError):
        Int8Rows.quantize(np.zeros(4))
    with pytest.raises(ValueError):
        both.dots(np.ones(8), kernel="gpu")


def test_a_sketch_keeps_the_ranking_of_vectors_near_its_directions():
    rng = np.random.default_rng(2)
    directions = _unit(rng.normal(size=(6, 96)))
    m = rng.normal(size=(2000, 6)) @ directions + 0.01 * rng.normal(size=(2000, 96))
    basis = Sketch.fit(m[:500], dims=8)
    sketch = Sketch(basis, Sketch.project(basis, m))
    q = directions[0] + directions[3]
    exact, approx = m @ q, sketch.dots(q)
    assert np.corrcoef(exact, approx)[0, 1] > 0.999
    top = set(np.argsort(-exact)[:20])
    assert len(top & set(np.argsort(-approx)[:40])) == 20
    # Fewer sample rows than dimensions: the missing directions stay zero.
    assert np.count_nonzero(np.abs(Sketch.fit(m[:3], dims=8)).sum(axis=1)) == 3


# --------------------------------------------------------------------- the pool


def test_the_pool_in_memory_is_the_stored_pool(pool_store):
    store, _ = pool_store
    pool = store.pool_arrays()
    positions = np.arange(len(pool))
    table = pool.dataset.take(positions.tolist(), columns=list(FEATURE_COLUMNS))
    # The feature rows pool.features assembles (part from memory, part read) are the stored ones.
    some = np.array([5, 0, 599, 42, 42])
    assembled = pool.features(some)
    assert assembled.column_names == list(FEATURE_COLUMNS)
    assert assembled.to_pylist() == pool.dataset.take(some.tolist(), columns=list(FEATURE_COLUMNS)).to_pylist()
    assert pool.ids(positions) == table.column("cv_id").to_pylist()
    assert pool.experience_months.tolist() == table.column("experience_months").to_pylist()
    assert pool.education_rank.tolist() == table.column("education_rank").to_pylist()
    signals = pool.signals(positions[::7])
    for name in ("skills", "norm_titles", "role_months", "role_skills", "experience_months"):
        assert signals.column(name).to_pylist() == table.column(name).take(positions[::7]).to_pylist()
    assert pool.has_roles.tolist() == [bool(r) for r in table.column("role_months").to_pylist()]
    # The int8 rows bound the stored float32 vectors' products; read back by position exactly.
    exact = pool.float_vectors(positions)
    sections = {c: feature_matrix(table, c) for c in ("vec_title", "vec_skills", "vec_experience")}
    np.testing.assert_array_equal(exact["vec_title"], sections["vec_title"])
    np.testing.assert_allclose(exact["vec_sum"], sum(sections.values()), atol=1e-6)
    query = np.random.default_rng(3).normal(size=DIM).astype(np.float32)
    for column, matrix in exact.items():
        approx, bound = pool.vectors[column].dots(query)
        assert np.all(np.abs(matrix.astype(np.float64) @ query - approx) <= bound)
    assert store.pool_arrays() is pool  # cached while the table does not change
    assert 0 < pool.nbytes / len(pool) < 40 * DIM


def test_category_masks_are_the_category_hits_and_few_are_kept(pool_store):
    store, _ = pool_store
    skills = store.pool_arrays().skills
    for category in ("Database", "Programming language", "no such category", None):
        np.testing.assert_array_equal(skills.category_mask(category), skills.category_hits([category])[:, 0])
    np.testing.assert_array_equal(skills.value_mask("MySQL"), skills.hits(["MySQL"])[:, 0])
    for i in range(CACHED_MASKS + 3):
        skills.category_mask(f"unknown {i}")
    assert len(skills._masks) == CACHED_MASKS  # noqa: SLF001
    with pytest.raises(ValueError):
        skills.value_mask("MySQL")[0] = True  # shared between queries: read-only


def _fill(store: Store, n: int, seed: int = 0) -> list[str]:
    """``n`` CVs and two JDs (a backend one with a title, years and education, and one with
    none of those); CVs near the first JD's vectors have its skills or related ones."""
    rng = np.random.default_rng(seed)
    jd_vec = _unit(rng.normal(size=(3, DIM)))
    jds = [
        JDProfile(title="Backend Engineer", required_skills=["Python", "PostgreSQL", "Docker"],
                  preferred_skills=["Kubernetes", "Git"], min_years=4, education_level=EducationLevel.bachelor),
        JDProfile(required_skills=["Payroll", "Tableau"]),
    ]
    ids = ["f" * 32, "e" * 32]
    store.upsert_jds([
        JDRecord(jd_id=i, filename=None, profile=p, provenance=Provenance(), vectors=v,
                 text=f"{p.title or 'Role'}. Requires {', '.join(p.required_skills)} (or similar); "
                      f"nice to have {', '.join(p.preferred_skills) or 'nothing'}.")
        for i, p, v in zip(ids, jds, [jd_vec, _unit(rng.normal(size=(3, DIM)))], strict=True)])
    records = []
    for i in range(n):
        near = rng.random() < 0.2
        noise = rng.uniform(0.2, 1.5)
        vec = _unit(jd_vec + rng.normal(scale=noise, size=(3, DIM))) if near else _unit(rng.normal(size=(3, DIM)))
        skills = rng.choice(SKILLS, size=int(rng.integers(1, 7)), replace=False).tolist()
        months = int(rng.integers(0, 200))
        roles = []
        for _ in range(int(rng.integers(0, 4))):  # some CVs list no roles at all
            roles.append({"title": str(rng.choice(TITLES)) or None, "months": int(rng.integers(0, months + 1)),
                          "skills": rng.choice(skills, size=int(rng.integers(0, len(skills) + 1)), replace=False).tolist()})
        headline = str(rng.choice(TITLES)) or None
        profile = CVProfile(headline=headline, skills=[SkillMention(name=s) for s in skills],
                            total_experience_months=months, experience=roles,
                            education=[{"level": str(rng.choice(LEVELS))}])
        text = f"{headline or ''}\nSkills: {', '.join(skills)}\n" + " ".join(f"Used {s} daily." for s in skills)
        records.append(CVRecord(cv_id=f"{i:032x}", filename=None, text=text, profile=profile,
                                stats=CVStats.of(profile), provenance=Provenance(), vectors=vec,
                                features=cv_feature_columns(profile, text)))
    store.upsert_cvs(records)
    return ids


@pytest.fixture(scope="module")
def pool_store(tmp_path_factory) -> tuple[Store, list[str]]:
    store = Store(str(tmp_path_factory.mktemp("pool")), dim=DIM)
    return store, _fill(store, 600)


WEIGHTS = {
    "defaults": ScoreWeights(),
    "every component": ScoreWeights(required_skills=0.2, preferred_skills=0.1, semantic=0.25, experience=0.15,
                                    education=0.1, title=0.2, related_skill_credit=0.4, title_match_credit=0.7),
    "statements": ScoreWeights(requirement_statements=True, preferred_skills=0.1, education=0.05),
    "total months": ScoreWeights(relevant_experience_share=0.0, related_skill_credit=0.0),
    "vectors only": ScoreWeights(required_skills=0.0, experience=0.0, semantic=0.5, title=0.5),
}


def _true_scores(store: Store, jd, pool, weights: ScoreWeights) -> np.ndarray:
    ids = pool.ids(np.arange(len(pool)))
    batch = score_stored(store, jd, ids, weights)
    by_id = dict(zip(batch.cv_ids.tolist(), batch.scores.tolist(), strict=True))
    return np.array([by_id[i] for i in ids])


@pytest.mark.parametrize("name", list(WEIGHTS))
@pytest.mark.parametrize("jd_index", [0, 1])
def test_every_cvs_score_lies_within_its_stage_one_bounds(pool_store, name, jd_index):
    store, jd_ids = pool_store
    weights = WEIGHTS[name]
    jd = jd_features(store, jd_ids[jd_index])
    pool = store.pool_arrays()
    low, high = shortlist.pool_bounds(jd, pool, shortlist.pool_dots(jd, pool), weights)
    true = _true_scores(store, jd, pool, weights)
    assert np.all(low <= true) and np.all(true <= high)
    # Not vacuous: the bounds pin most CVs down to a few points.
    assert np.median(high - low) < 8.0


@pytest.mark.parametrize("name", list(WEIGHTS))
@pytest.mark.parametrize("k", [1, 7, 40])
def test_the_exact_shortlist_holds_the_exhaustive_top_k(pool_store, name, k):
    store, jd_ids = pool_store
    weights = WEIGHTS[name]
    pool = store.pool_arrays()
    for jd_id in jd_ids:
        jd = jd_features(store, jd_id)
        found = shortlist.exact_shortlist(jd, pool, k, weights)
        top = rank_stored(store, jd_id, top_k=k, weights=weights)
        kept = pool.ids(found.positions)
        assert {r.cv_id for r in top} <= set(kept), (name, jd_id)
        # Each stage keeps no more than the last; the last keeps the top k and CVs scoring
        # within float rounding of the k-th (ties: the scores have two decimals), or at most
        # REFINE_MIN_GAIN more where reading exact vectors was not worth it.
        stages = [found.stages[s] for s in ("pool", "bounded", "roles", "exact")]
        assert stages == sorted(stages, reverse=True) and len(kept) == stages[-1]
        true = dict(zip(pool.ids(np.arange(len(pool))), _true_scores(store, jd, pool, weights), strict=True))
        near_ties = min(true[c] for c in kept) >= top[-1].score - 0.011
        assert near_ties or len(kept) <= k + shortlist.REFINE_MIN_GAIN, (name, jd_id, found.stages)


def test_a_shortlist_past_the_pool_keeps_every_cv(pool_store):
    store, jd_ids = pool_store
    pool = store.pool_arrays()
    found = shortlist.exact_shortlist(jd_features(store, jd_ids[0]), pool, len(pool) + 5)
    assert sorted(found.positions.tolist()) == list(range(len(pool)))
    assert list(found.prescores) == sorted(found.prescores, reverse=True)


def test_the_bounds_are_what_keeps_the_top_k(pool_store):
    """Where the bounds were too narrow (no room for the int8 error), the shortlist would
    lose CVs of the exhaustive top k: the margins are load-bearing, not decoration."""
    store, jd_ids = pool_store
    pool = store.pool_arrays()
    jd = jd_features(store, jd_ids[0])
    weights = WEIGHTS["vectors only"]
    dots = shortlist.pool_dots(jd, pool)
    true = _true_scores(store, jd, pool, weights)
    low, high = shortlist.pool_bounds(jd, pool, dataclasses.replace(dots, title_err=0.0, total_err=0.0), weights)
    # The int8 error alone puts some true scores outside bounds that ignore it.
    assert np.any(true < low - 0.01) or np.any(true > high + 0.01)


def test_the_approximate_shortlist_finds_the_best_from_enough_candidates(pool_store):
    store, jd_ids = pool_store
    pool = store.pool_arrays()
    for jd_id in jd_ids:
        jd = jd_features(store, jd_id)
        found = shortlist.approximate_shortlist(jd, pool, 10, candidates=200, margin=5)
        assert found.stages == {"pool": len(pool), "sketched": 200, "kept": 15}
        # Its order is the prescore's, from full int8 vectors: best first.
        assert list(found.prescores) == sorted(found.prescores, reverse=True)
        # The ten best scores are the exhaustive ranking's (where many CVs tie, as for the
        # second JD, which ten of them is up to the sketch).
        top = rank_stored(store, jd_id, top_k=10)
        scores = sorted(score_stored(store, jd, pool.ids(found.positions)).scores, reverse=True)[:10]
        assert scores == [r.score for r in top]
    # The first JD's best CVs stand apart: the same CVs.
    found = shortlist.approximate_shortlist(jd_features(store, jd_ids[0]), pool, 10, candidates=200, margin=5)
    assert {r.cv_id for r in rank_stored(store, jd_ids[0], top_k=10)} <= set(pool.ids(found.positions))


def test_the_approximate_shortlist_misses_cvs_from_too_few_candidates(pool_store):
    """The sketch is approximate: re-ranking only as many as asked for loses some of the
    best (the recall the candidates buy is measured, not assumed)."""
    store, jd_ids = pool_store
    pool = store.pool_arrays()
    jd = jd_features(store, jd_ids[0])
    top = {r.cv_id for r in rank_stored(store, jd_ids[0], top_k=40)}
    found = shortlist.approximate_shortlist(jd, pool, 40, candidates=40, margin=0)
    assert not top <= set(pool.ids(found.positions))
