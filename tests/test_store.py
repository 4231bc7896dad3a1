"""The LanceDB store, on a real database in a temporary folder."""

from __future__ import annotations

import multiprocessing as mp
import pickle
import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from cvmatch_ray.ids import document_id, validate_id, validate_job_id
from cvmatch_ray.match.features import FEATURE_COLUMNS, cv_feature_columns
from cvmatch_ray.schemas import (
    CVProfile,
    CVStats,
    EducationEntry,
    EducationLevel,
    ExperienceEntry,
    JDProfile,
    Provenance,
    ScoreBreakdown,
    SkillMention,
)
from cvmatch_ray.storage.records import CVRecord, JDRecord, feature_matrix
from cvmatch_ray.storage.tables import Store, StoreSchemaError

DIM = 8


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(str(tmp_path / "db"), dim=DIM)


def _vectors(seed: int, dim: int = DIM) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((3, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _profile(i: int) -> CVProfile:
    return CVProfile(
        headline=f"Engineer {i}",
        summary="Builds things.",
        skills=[SkillMention(name="Python"), SkillMention(name=f"Skill{i}")],
        experience=[ExperienceEntry(title="Developer", months=12 * i, responsibilities=["Wrote code."])],
        total_experience_months=12 * i,
        education=[EducationEntry(level=EducationLevel.bachelor)],
    )


def _cv(i: int, *, text: str | None = None, profile: CVProfile | None = None) -> CVRecord:
    profile = profile or _profile(i)
    return CVRecord(
        cv_id=document_id(f"cv-{i}"),
        filename=f"cv{i}.pdf",
        text=text or f"CV number {i}",
        profile=profile,
        stats=CVStats.of(profile),
        provenance=Provenance(backend="rules", extractor="pypdfium2"),
        flags=["hidden_text"] if i % 2 else [],
        features=cv_feature_columns(profile, text or f"CV number {i}"),
        vectors=_vectors(i),
    )


def _jd(i: int) -> JDRecord:
    return JDRecord(
        jd_id=document_id(f"jd-{i}"),
        filename=None,
        text=f"Job {i}",
        profile=JDProfile(title="Data Engineer", required_skills=["Python"], min_years=2),
        provenance=Provenance(),
        vectors=_vectors(100 + i),
    )


def _rows(jd_id: str, scores: list[tuple[str, float]]) -> pa.Table:
    """Stored match rows (``MATCH_ROW_COLUMNS``) of a JD with one required skill."""
    n = len(scores)
    return pa.table({
        "jd_id": [jd_id] * n,
        "cv_id": [c for c, _ in scores],
        "score": pa.array([float(s) for _, s in scores], pa.float64()),
        **{name: pa.array([1.0 if name == "required_skills" else None] * n, pa.float64())
           for name in ScoreBreakdown.model_fields},
        "required_hits": pa.array([[True]] * n, pa.list_(pa.bool_())),
        "preferred_hits": pa.array([[]] * n, pa.list_(pa.bool_())),
        "experience_months": pa.array([12] * n, pa.int32()),
        "counted_months": pa.array([12.0] * n, pa.float64()),
        "education_rank": pa.array([0] * n, pa.int32()),
        "statements": [False] * n,
    })


# ------------------------------------------------------------------------------ ids


def test_document_id() -> None:
    a = document_id(b"%PDF-1.7 some bytes")
    assert a == document_id(b"%PDF-1.7 some bytes")
    assert len(a) == 32 and set(a) <= set("0123456789abcdef")
    assert a != document_id(b"%PDF-1.7 other bytes")
    assert document_id("Café job") == document_id("Café job".encode())


@pytest.mark.parametrize(
    "bad", ["", "abc", "ABCDEF0123456789", "x' OR '1'='1", "0123456789abcdef'", "0123 4567 89ab", "é" * 10, None]
)
def test_invalid_ids_are_rejected(store: Store, bad) -> None:
    with pytest.raises(ValueError):
        validate_id(bad)
    with pytest.raises(ValueError):
        store.get_cv(bad)
    with pytest.raises(ValueError):
        store.read_cv_features([document_id(b"ok"), bad])
    with pytest.raises(ValueError):
        store.delete_cv(bad)


def test_uuid_ids_are_valid() -> None:
    assert validate_id("0b8f6c1e-3a5d-4c7e-9f10-2a3b4c5d6e7f") == "0b8f6c1e-3a5d-4c7e-9f10-2a3b4c5d6e7f"


@pytest.mark.parametrize("good", ["job_0123456789abcdef", "ingest_ab12", "0b8f6c1e-3a5d", "J1"])
def test_job_ids(good: str) -> None:
    assert validate_job_id(good) == good


@pytest.mark.parametrize("bad", ["", "_job", "job 1", "job'1", "job;--", "a" * 129, "jöb", None])
def test_bad_job_ids(store: Store, bad) -> None:
    with pytest.raises(ValueError):
        validate_job_id(bad)
    with pytest.raises(ValueError):
        store.read_match_rows(bad)
    with pytest.raises(ValueError):
        store.write_match_rows(bad, _rows(document_id(b"b"), [(document_id(b"a"), 1)]))


def test_bad_record_ids_are_rejected_on_write(store: Store) -> None:
    cv = _cv(1)
    cv.cv_id = "not-an-id'"
    with pytest.raises(ValueError):
        store.upsert_cvs([cv])
    with pytest.raises(ValueError):
        store.write_match_rows("job 1", _rows(document_id(b"b"), [(document_id(b"a"), 1)]))
    with pytest.raises(ValueError):
        store.write_match_rows(document_id(b"j"), _rows(document_id(b"b"), [("CV1", 1)]))
    assert store.count_cvs() == 0


# ------------------------------------------------------------------------------ CVs


def test_empty_store_reads(store: Store) -> None:
    assert store.count_cvs() == 0
    assert store.list_cv_ids() == []
    assert store.get_cv(document_id(b"x")) is None
    assert not store.has_cv(document_id(b"x"))
    assert store.read_match_rows(document_id(b"job")).num_rows == 0
    features = store.read_cv_features()
    assert features.num_rows == 0 and features.column_names == list(FEATURE_COLUMNS)
    assert store.read_cv_features([document_id(b"x")]).num_rows == 0
    assert not store.delete_cv(document_id(b"x"))
    # Reads create nothing.
    assert not any((Path(store.uri)).glob("*.lance"))


def test_cv_round_trip(store: Store) -> None:
    cv = _cv(3)
    store.upsert_cvs([cv])
    got = store.get_cv(cv.cv_id)
    assert got is not None
    assert got.profile == cv.profile
    assert got.stats == cv.stats
    assert got.provenance == cv.provenance
    assert got.flags == ["hidden_text"]
    assert got.filename == "cv3.pdf" and got.text == "CV number 3"
    assert got.content_hash == cv.content_hash
    np.testing.assert_array_equal(got.vectors, cv.vectors)
    assert got.created_at is not None
    assert got.to_public().profile == cv.profile
    assert store.has_cv(cv.cv_id)


def test_upsert_is_idempotent_and_updates(store: Store) -> None:
    first = _cv(1)
    store.upsert_cvs([first])
    store.upsert_cvs([first])
    assert store.count_cvs() == 1
    changed = _cv(1, text="Rewritten CV", profile=_profile(9))
    store.upsert_cvs([changed])
    assert store.count_cvs() == 1
    got = store.get_cv(first.cv_id)
    assert got.text == "Rewritten CV" and got.profile == _profile(9)
    # The same id twice in one batch stores one row, the last one.
    store.upsert_cvs([_cv(2), _cv(2, text="second copy")])
    assert store.count_cvs() == 2
    assert store.get_cv(_cv(2).cv_id).text == "second copy"


def test_upsert_rejects_wrong_dimension(store: Store) -> None:
    cv = _cv(1)
    cv.vectors = _vectors(1, dim=DIM + 1)
    with pytest.raises(ValueError, match="dim"):
        store.upsert_cvs([cv])
    with pytest.raises(ValueError):
        CVRecord(**{**_cv(1).__dict__, "vectors": np.full((3, DIM), np.nan)})
    with pytest.raises(ValueError):
        CVRecord(**{**_cv(1).__dict__, "vectors": np.zeros((2, DIM))})


def test_dim_is_read_from_the_tables_or_taken_from_the_first_write(tmp_path: Path) -> None:
    uri = str(tmp_path / "db")
    empty = Store(uri)
    assert empty.dim is None
    features = empty.read_cv_features()
    assert features.num_rows == 0 and features.column_names == list(FEATURE_COLUMNS)
    assert empty.pool_arrays().cv_ids.size == 0 and empty.search_cvs_vector("vec_title", np.ones(DIM), 3) == []
    empty.upsert_jds([_jd(1)])  # the first write fixes the dim of both tables
    assert empty.dim == DIM
    with pytest.raises(ValueError, match="dim"):
        empty.upsert_cvs([CVRecord(**{**_cv(1).__dict__, "vectors": _vectors(1, dim=DIM + 1)})])
    empty.upsert_cvs([_cv(1)])
    reader = Store(uri)
    assert reader.dim == DIM and reader.get_cv(_cv(1).cv_id).profile == _profile(1)
    assert reader.pool_arrays().vectors["vec_title"].codes.shape == (1, DIM)


def test_the_store_persists_the_features_it_is_given(store: Store) -> None:
    cv = _cv(3)
    store.upsert_cvs([cv])
    row = store.read_cv_features().to_pylist()[0]
    assert {k: row[k] for k in cv.features if k in row} == {k: v for k, v in cv.features.items() if k in row}
    assert store.get_cv(cv.cv_id).features == cv.features
    with pytest.raises(ValueError, match="features"):
        CVRecord(**{**cv.__dict__, "features": {"skills": ["Python"]}})


def test_reopening_with_another_dim_fails_clearly(tmp_path: Path) -> None:
    uri = str(tmp_path / "db")
    Store(uri, dim=DIM).upsert_cvs([_cv(1)])
    with pytest.raises(StoreSchemaError, match="vec_title"):
        Store(uri, dim=384).count_cvs()


def test_list_and_count(store: Store) -> None:
    records = [_cv(i) for i in range(5)]
    store.upsert_cvs(records)
    assert store.count_cvs() == 5
    assert store.list_cv_ids() == sorted(r.cv_id for r in records)
    unknown = document_id(b"unknown")
    assert store.filenames([records[4].cv_id, records[0].cv_id, unknown]) == {
        records[4].cv_id: "cv4.pdf",
        records[0].cv_id: "cv0.pdf",
    }
    assert store.filenames([]) == {}


def test_read_cv_features_all_and_subset(store: Store) -> None:
    records = [_cv(i) for i in range(1, 21)]
    store.upsert_cvs(records)
    by_id = {r.cv_id: r for r in records}

    everything = store.read_cv_features()
    assert everything.column_names == list(FEATURE_COLUMNS)
    assert sorted(everything.column("cv_id").to_pylist()) == sorted(by_id)

    wanted = [records[3].cv_id, records[7].cv_id, records[11].cv_id, document_id(b"unknown")]
    for method in ("auto", "sql", "arrow"):
        subset = store.read_cv_features(wanted, method=method)
        ids = subset.column("cv_id").to_pylist()
        assert sorted(ids) == sorted(wanted[:3]), method
        matrix = feature_matrix(subset, "vec_skills")
        assert matrix.shape == (3, DIM) and matrix.dtype == np.float32
        for row, cv_id in enumerate(ids):
            cv = by_id[cv_id]
            np.testing.assert_array_equal(matrix[row], cv.vectors[1])
            assert subset.column("skills")[row].as_py() == cv.profile.skill_names
            assert subset.column("experience_months")[row].as_py() == cv.profile.total_experience_months
            assert subset.column("education_rank")[row].as_py() == EducationLevel.bachelor.rank
            assert subset.column("titles")[row].as_py() == cv.profile.titles
    assert subset.schema.field("experience_months").type == pa.int32()
    assert subset.schema.field("education_rank").type == pa.int8()
    assert store.read_cv_features([]).num_rows == 0
    with pytest.raises(ValueError):
        store.read_cv_features(wanted, method="pandas")  # type: ignore[arg-type]


def test_feature_matrix_of_a_slice() -> None:
    values = np.arange(4 * DIM, dtype=np.float32)
    column = pa.FixedSizeListArray.from_arrays(pa.array(values), DIM)
    table = pa.table({"vec_title": column}).slice(1, 2)
    np.testing.assert_array_equal(feature_matrix(table, "vec_title"), values.reshape(4, DIM)[1:3])


# ------------------------------------------------------------------------------ JDs


def test_jd_round_trip_and_idempotent(store: Store) -> None:
    jd = _jd(1)
    store.upsert_jds([jd, _jd(2)])
    store.upsert_jds([jd])
    assert store.list_jd_ids() == sorted([jd.jd_id, _jd(2).jd_id])
    got = store.get_jd(jd.jd_id)
    assert got is not None and got.profile == jd.profile and got.provenance == jd.provenance
    np.testing.assert_array_equal(got.vectors, jd.vectors)
    assert got.to_public().jd_id == jd.jd_id
    assert store.has_jd(jd.jd_id)
    assert store.get_jd(document_id(b"nope")) is None


# -------------------------------------------------------------------------- matches


def test_matches_write_read_and_idempotent(store: Store) -> None:
    job, other_job = "job_0123456789abcdef", "0b8f6c1e-3a5d-4c7e-9f10-2a3b4c5d6e7f"
    jd_id = _jd(1).jd_id
    a, b, c = (document_id(x) for x in (b"a", b"b", b"c"))
    store.write_match_rows(job, _rows(jd_id, [(a, 50.0), (b, 80.0), (c, 50.0)]))
    store.write_match_rows(other_job, _rows(jd_id, [(a, 99.0)]))
    rows = store.read_match_rows(job)
    expected_ties = sorted([a, c])
    assert rows.column("cv_id").to_pylist() == [b, *expected_ties]
    assert rows.slice(0, 1).to_pylist() == _rows(jd_id, [(b, 80.0)]).to_pylist()
    assert store.read_match_rows(job, limit=2).column("cv_id").to_pylist() == [b, expected_ties[0]]

    # Writing a CV's result again replaces it: one row per (job, CV); twice in one write is an error.
    store.write_match_rows(job, _rows(jd_id, [(c, 95.0)]))
    assert store.count_matches(job) == 3
    assert store.read_match_rows(job).slice(0, 1).select(["cv_id", "score"]).to_pylist() == [{"cv_id": c, "score": 95.0}]
    assert store.read_match_rows(other_job).column("score").to_pylist() == [99.0]
    with pytest.raises(ValueError, match="twice"):
        store.write_match_rows(job, _rows(jd_id, [(a, 1.0), (a, 2.0)]))
    store.write_match_rows(job, _rows(jd_id, []))
    assert store.count_matches(job) == 3


# --------------------------------------------------------------------------- delete


def test_delete_cv_removes_it_everywhere(store: Store) -> None:
    keep, gone = _cv(1), _cv(2)
    store.upsert_cvs([keep, gone])
    job = document_id(b"job")
    jd_id = _jd(1).jd_id
    store.write_match_rows(job, _rows(jd_id, [(keep.cv_id, 10.0), (gone.cv_id, 20.0)]))

    assert store.delete_cv(gone.cv_id)
    assert store.get_cv(gone.cv_id) is None
    assert store.read_match_rows(job).column("cv_id").to_pylist() == [keep.cv_id]
    assert store.read_cv_features().column("cv_id").to_pylist() == [keep.cv_id]
    assert store.has_cv(keep.cv_id)
    assert not store.delete_cv(gone.cv_id)


def test_delete_jd(store: Store) -> None:
    jd = _jd(1)
    store.upsert_jds([jd])
    store.write_match_rows(document_id(b"job"), _rows(jd.jd_id, [(document_id(b"a"), 1.0)]))
    assert store.delete_jd(jd.jd_id)
    assert store.get_jd(jd.jd_id) is None
    assert store.read_match_rows(document_id(b"job")).num_rows == 0


# ---------------------------------------------------------------- processes, threads


def test_store_pickles_and_sees_other_writers(store: Store) -> None:
    reader = pickle.loads(pickle.dumps(store))
    assert reader.uri == store.uri and reader.dim == DIM
    assert reader.count_cvs() == 0
    store.upsert_cvs([_cv(1)])
    # The reader opened its own connection before the write, and still sees it.
    assert reader.count_cvs() == 1
    assert reader.get_cv(_cv(1).cv_id).profile == _profile(1)
    store.upsert_cvs([_cv(2)])
    assert reader.read_cv_features().num_rows == 2


def _upsert_worker(uri: str, start: int, barrier) -> None:
    """One writer process: several batches that overlap the other writer's CVs, compacting
    the table after every other commit, so that compactions race the other's inserts."""
    store = Store(uri, dim=DIM, compact_every=2)
    barrier.wait()
    for batch in range(4):
        first = start + batch * 3
        store.upsert_cvs([_cv(i) for i in range(first, first + 6)])
    store.write_match_rows(document_id(b"job"), _rows(_jd(1).jd_id, [(_cv(i).cv_id, 1.0) for i in range(10)]))


def test_two_processes_upsert_at_once(tmp_path: Path) -> None:
    uri = str(tmp_path / "db")
    ctx = mp.get_context("spawn")  # LanceDB runs its own threads: never fork it
    barrier = ctx.Barrier(2)
    # Worker 0 writes CVs 0..14, worker 1 writes 6..20: 6..14 are inserted by both.
    procs = [ctx.Process(target=_upsert_worker, args=(uri, start, barrier)) for start in (0, 6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=240)
    assert [p.exitcode for p in procs] == [0, 0]
    store = Store(uri, dim=DIM)
    ids = store.read_cv_features().column("cv_id").to_pylist()
    assert sorted(ids) == sorted(_cv(i).cv_id for i in range(21))  # all landed, none twice
    assert store.count_cvs() == 21
    assert store.count_matches(document_id(b"job")) == 10


def test_threads_share_one_store(store: Store) -> None:
    errors: list[BaseException] = []

    def write(offset: int) -> None:
        try:
            for k in range(3):
                store.upsert_cvs([_cv(offset + k * 2 + j) for j in range(4)])
        except BaseException as e:  # surfaced below; a thread cannot fail the test itself
            errors.append(e)

    threads = [threading.Thread(target=write, args=(offset,)) for offset in (0, 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(store.list_cv_ids()) == sorted({_cv(i).cv_id for o in (0, 3) for i in range(o, o + 8)})
    assert store.count_cvs() == len(store.list_cv_ids())


def test_lookup_indexes_answer_for_rows_written_before_and_after(tmp_path):
    from cvmatch_ray.schemas import CVProfile, CVStats, Provenance
    from cvmatch_ray.storage.records import CVRecord

    store = Store(str(tmp_path), dim=4)
    assert store.ensure_lookup_indexes() == []  # no tables yet

    def cv(i: int) -> CVRecord:
        profile = CVProfile()
        v = np.eye(3, 4, dtype=np.float32)
        return CVRecord(cv_id=f"{i:032x}", filename=None, text=f"cv {i}", profile=profile,
                        stats=CVStats.of(profile), provenance=Provenance(), vectors=v,
                        features=cv_feature_columns(profile, f"cv {i}"))

    store.upsert_cvs([cv(i) for i in range(20)])
    assert store.ensure_lookup_indexes() == ["cvs.cv_id"]
    assert store.ensure_lookup_indexes() == []  # already there
    store.upsert_cvs([cv(99)])  # after the index: in the unindexed tail
    assert store.has_cv(f"{3:032x}") and store.has_cv(f"{99:032x}") and not store.has_cv("f" * 32)
    store.delete_cv(f"{3:032x}")
    assert not store.has_cv(f"{3:032x}")


def _fragments(store: Store, name: str) -> int:
    return len(store._table(name, create=False).to_lance().get_fragments())


def test_small_commits_are_compacted_as_they_come(tmp_path: Path) -> None:
    from cvmatch_ray.config import StoreSettings

    # Settings.store says how often (0: never).
    store = Store.open(str(tmp_path / "db"), StoreSettings(compact_every=5), dim=DIM)
    never = Store.open(str(tmp_path / "other"), StoreSettings(compact_every=0), dim=DIM)
    for i in range(12):
        store.upsert_cvs([_cv(i)])
        never.upsert_cvs([_cv(i)])
    store.ensure_lookup_indexes()
    assert _fragments(never, "cvs") == 12
    # Compacted at the 5th and 10th commits: one fragment, and the two commits since.
    assert _fragments(store, "cvs") == 1 + 2
    for i in range(12, 15):  # the 15th commit compacts again and indexes the rows since the index
        store.upsert_cvs([_cv(i)])
    # (Lance keeps rows its index covers apart from those it does not.)
    assert _fragments(store, "cvs") <= 2
    table = store._table("cvs", create=False)
    assert table.to_lance().stats.index_stats("cv_id_idx")["num_unindexed_rows"] == 0
    # Nothing is lost or changed by compaction.
    assert sorted(store.list_cv_ids()) == sorted(_cv(i).cv_id for i in range(15))
    assert store.get_cv(_cv(3).cv_id).profile == _profile(3)
    assert store.delete_cv(_cv(3).cv_id) and not store.has_cv(_cv(3).cv_id)
    # Match results written chunk by chunk are compacted the same way.
    for i in range(10):
        store.write_match_rows("job_1", _rows(_jd(1).jd_id, [(_cv(i).cv_id, i / 10)]))
    assert _fragments(store, "matches") <= 1 + 4
    assert store.read_match_rows("job_1", limit=2).column("cv_id").to_pylist() == [_cv(9).cv_id, _cv(8).cv_id]
    # A store that crosses process boundaries keeps its setting.
    assert pickle.loads(pickle.dumps(store))._compact_every == 5


def test_each_tenant_has_a_folder_of_its_own_and_is_listed(tmp_path) -> None:
    from cvmatch_ray.config import Settings, tenant_data_dir
    from cvmatch_ray.storage.tenants import list_tenants

    base = str(tmp_path)
    assert tenant_data_dir(base, "default") == base  # data from before tenants stays readable
    assert tenant_data_dir("s3://bucket/cv/", "acme") == "s3://bucket/cv/tenants/acme"
    for bad in ("../acme", "Acme", "", "a/b", "a" * 64, "-a"):
        with pytest.raises(ValueError):
            tenant_data_dir(base, bad)
    assert Settings(api_keys=["k1", "k2"]).api_keys == {"k1": "default", "k2": "default"}
    with pytest.raises(ValueError):
        Settings(api_keys={"k1": "../x"})

    assert list_tenants(base) == ["default"]
    for tenant in ("beta", "acme"):
        Path(tenant_data_dir(base, tenant)).mkdir(parents=True)
    (tmp_path / "tenants" / "Not A Tenant").mkdir()
    assert list_tenants(base) == ["default", "acme", "beta"]


def test_match_rows_appended_and_their_chunks_deleted(store: Store) -> None:
    """A job's driver appends its chunks' rows; one started again deletes the rows of the
    chunks it redoes first, so no CV is stored twice."""
    job, jd_id = "job_append", _jd(1).jd_id
    a, b, c = (document_id(x) for x in (b"a", b"b", b"c"))
    first = _rows(jd_id, [(a, 10.0), (b, 20.0)]).append_column("chunk", pa.array([0, 1], pa.int32()))
    store.append_match_rows(job, first)
    assert store.delete_match_chunks(job, [1, 2]) == 1
    store.append_match_rows(job, _rows(jd_id, [(b, 30.0), (c, 5.0)]).append_column("chunk", pa.array([1, 2], pa.int32())))
    rows = store.read_match_rows(job)
    assert rows.select(["cv_id", "score"]).to_pylist() == [{"cv_id": b, "score": 30.0}, {"cv_id": a, "score": 10.0},
                                                            {"cv_id": c, "score": 5.0}]
    assert store.delete_match_chunks(job, []) == 0


def test_match_results_in_an_older_format_are_dropped(tmp_path) -> None:
    import lancedb

    db = lancedb.connect(str(tmp_path / "db"))
    db.create_table("matches", data=pa.table({"match_key": ["j:x"], "job_id": ["j"], "result_json": ["{}"]}))
    store = Store(str(tmp_path / "db"), dim=8)
    store.write_match_rows("j", _rows(_jd(1).jd_id, [(document_id(b"a"), 1.0)]))  # a write opens it first
    assert store.count_matches("j") == 1
    assert Store(str(tmp_path / "db"), dim=8).read_match_rows("j").num_rows == 1
