"""Ray pipelines on a real local Ray: Ray Data ingest, chunked matching, progress, fractional GPU."""

from __future__ import annotations

import re
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import ray

from cvmatch_ray.config import Settings
from cvmatch_ray.match.features import cv_feature_columns
from cvmatch_ray.match.rank import job_results, rank_stored
from cvmatch_ray.pipelines.match_driver import submit_match_job
from cvmatch_ray.pipelines.matching import create_match_job, run_plan
from cvmatch_ray.pipelines.ray_ingest import run_ingest
from cvmatch_ray.pipelines.resources import stage_options
from cvmatch_ray.progress import JobStatus, get_progress_actor
from cvmatch_ray.schemas import CVProfile, CVStats, EducationLevel, JDProfile, Provenance, SkillMention
from cvmatch_ray.storage.records import CVRecord, JDRecord
from cvmatch_ray.storage.tables import Store

DIM = 384
SKILLS = ["Python", "Docker", "Amazon Web Services", "Apache Kafka", "PostgreSQL", "React", "SQL", "Kubernetes"]


def _settings(tmp_path: Path, **kw) -> Settings:
    # A namespace per test: each gets its own progress actor bound to its own data_dir.
    return Settings(data_dir=str(tmp_path / "db"), ray_namespace=f"t{uuid.uuid4().hex[:8]}", **kw)


def _unit(rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=(3, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _fill(store: Store, n: int, seed: int = 0) -> tuple[str, list[str]]:
    """n synthetic stored CVs and one JD; returns (jd_id, cv_ids)."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        skills = rng.choice(SKILLS, size=int(rng.integers(0, 6)), replace=False).tolist()
        profile = CVProfile(
            skills=[SkillMention(name=s) for s in skills],
            total_experience_months=int(rng.integers(0, 200)),
            education=[{"level": list(EducationLevel)[int(rng.integers(0, 7))].value}],
        )
        records.append(
            CVRecord(
                cv_id=f"{i:032x}", filename=f"cv{i}.txt", text="synthetic", profile=profile,
                stats=CVStats.of(profile), provenance=Provenance(), flags=[], vectors=_unit(rng),
                features=cv_feature_columns(profile, "synthetic"),
            )
        )
    store.upsert_cvs(records)
    jd = JDProfile(title="Backend engineer", required_skills=SKILLS[:3], preferred_skills=SKILLS[3:5], min_years=4,
                   education_level=EducationLevel.bachelor)
    store.upsert_jds([JDRecord(jd_id="a" * 32, filename="jd.txt", text="jd", profile=jd, provenance=Provenance(), vectors=_unit(rng))])
    return "a" * 32, [r.cv_id for r in records]


def _dump(results) -> list[dict]:
    return [r.model_dump() for r in results]


# ----------------------------------------------------------------------- resources


def test_stage_options_ask_for_fractional_gpus():
    cpu = stage_options(Settings())
    assert cpu["embed"].num_gpus == 0 and "num_gpus" not in cpu["embed"].map_batches_kwargs()
    gpu = stage_options(Settings(embed_num_gpus=0.25, embed_actors=4))
    kwargs = gpu["embed"].map_batches_kwargs()
    assert kwargs["num_gpus"] == 0.25
    assert isinstance(kwargs["compute"], ray.data.ActorPoolStrategy)
    assert gpu["embed"].actors == 4
    assert gpu["extract"].num_gpus == 0 and gpu["extract"].actors is None
    # Two embedding actors and a standardizer on a 2-CPU node still leave room to read files.
    two = stage_options(Settings(embed_actors=2))
    assert two["read"].num_cpus + two["standardize"].num_cpus + 2 * two["embed"].num_cpus <= 2
    # Read tasks at once: enough to keep the standardizers fed, no more (each new one can
    # start a worker process of its own).
    assert cpu["read"].tasks == 2 and stage_options(Settings(standardize_actors=3))["read"].tasks == 4


def test_stage_resources_pin_stages_to_the_nodes_that_offer_them():
    options = stage_options(Settings(stage_resources={"extract": {"cpu_pool": 0.01}, "embed": {"gpu_pool": 1}}))
    assert options["extract"].map_batches_kwargs()["resources"] == {"cpu_pool": 0.01}
    assert options["embed"].map_batches_kwargs()["resources"] == {"gpu_pool": 1.0}
    assert "resources" not in options["standardize"].map_batches_kwargs()
    assert "resources" not in options["match_chunk"].remote_options()
    match = stage_options(Settings(stage_resources={"match_chunk": {"scoring": 0.5}}))["match_chunk"]
    assert match.remote_options() == {"num_cpus": 0.5, "num_gpus": 0.0, "resources": {"scoring": 0.5}}
    for bad in ({"embed": {"GPU": 1}}, {"embed": {"pool": 0}}, {"embedding": {"pool": 1}}):
        with pytest.raises(ValueError):
            Settings(stage_resources=bad)


# -------------------------------------------------------------------------- ingest


def test_ray_data_ingest_stores_good_files_and_reports_bad_ones(ray_cluster, tmp_path, examples_dir):
    folder = tmp_path / "in"
    folder.mkdir()
    for p in [*(examples_dir / "cvs").iterdir(), *(examples_dir / "bad").iterdir()]:
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "truncated.pdf").write_bytes((examples_dir / "cvs" / "priya_raman_frontend.pdf").read_bytes()[:400])
    settings = _settings(tmp_path, ingest_batch_size=4)
    seen: list[tuple[int, int]] = []
    report = run_ingest([str(folder)], settings, on_progress=lambda d, t: seen.append((d, t)))

    assert report.status is JobStatus.succeeded
    good = {Path(o.file).name for o in report.outcomes if o.ok}
    assert good == {p.name for p in (examples_dir / "cvs").iterdir()}
    bad = {Path(o.file).name: o for o in report.failed}
    assert set(bad) == {"empty.txt", "encrypted.pdf", "image.png", "scanned.pdf", "truncated.pdf"}
    assert all(o.stage == "extract" and o.error for o in bad.values())
    assert bad["encrypted.pdf"].code != bad["scanned.pdf"].code

    store = Store(settings.data_dir)
    assert store.count_cvs() == len(good)
    # The pool's full-text index is there for whole-pool matching (its vectors are held in memory: no ANN index).
    indexes = {ix.columns[0]: ix.index_type for ix in store._table("cvs", create=False).list_indices()}
    assert indexes == {"lexical_text": "FTS", "cv_id": "BTree"}
    job = ray.get(get_progress_actor(settings).get.remote(report.job_id))
    assert job.status == JobStatus.succeeded and job.processed == len(report.outcomes) and job.failed == len(bad)
    assert {f.stage for f in job.failures} == {"extract"}
    assert [d for d, _ in seen] == sorted(d for d, _ in seen) and seen[-1][0] == len(report.outcomes)
    # The stages' own account of their time, summed over batches and workers.
    assert set(report.times.seconds) == {"extract", "standardize", "features", "embed", "write", "rows"}
    assert all(s > 0 for s in report.times.seconds.values()), report.times

    # Same files again: nothing is processed twice, nothing stored twice.
    again = run_ingest([str(folder)], settings)
    assert sum(o.skipped for o in again.outcomes) == len(good)
    assert store.count_cvs() == len(good)


def test_ingest_pipeline_matches_the_in_process_path(ray_cluster, tmp_path, examples_dir):
    from cvmatch_ray.local_ingest import LocalIngestor

    settings = _settings(tmp_path)
    report = run_ingest([str(examples_dir / "cvs")], settings)
    local = LocalIngestor.from_settings(settings.model_copy(update={"data_dir": str(tmp_path / "local")}))
    local.ingest([(str(p), p.read_bytes()) for p in sorted((examples_dir / "cvs").iterdir())])
    ray_store = Store(settings.data_dir)
    for o in report.outcomes:
        a, b = ray_store.get_cv(o.id), local.store.get_cv(o.id)
        assert a.profile == b.profile
        np.testing.assert_allclose(a.vectors, b.vectors, atol=1e-5)


def test_four_embedding_actors_share_one_logical_gpu(ray_cluster, tmp_path, examples_dir):
    assert ray.cluster_resources().get("GPU", 0) >= 1
    settings = _settings(tmp_path, embed_num_gpus=0.25, embed_actors=4, ingest_batch_size=1)
    report = run_ingest([str(examples_dir / "cvs")], settings)
    assert report.status is JobStatus.succeeded and report.stored == 5
    # The pool really had four actors at a quarter GPU each, alive at the same time.
    from ray.util.state import list_actors

    actors = list_actors(
        address=ray_cluster.dashboard_url,
        filters=[("class_name", "=", "MapWorker(MapBatches(EmbedStage))")],
        limit=1000,
        detail=True,
    )
    gpu_shares = [a.required_resources.get("GPU") for a in actors]
    assert gpu_shares.count(0.25) >= 4


# ------------------------------------------------------------------------ matching


@pytest.fixture(scope="module")
def pool_300(ray_cluster, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pool")
    # A task per few chunks even for 300 CVs (by default a job this small is scored by its
    # driver in one go): the tests below watch, kill and cancel jobs between chunks.
    settings = _settings(tmp, match_task_min_cvs=0)
    store = Store(settings.data_dir)
    jd_id, cv_ids = _fill(store, 300)
    return settings, store, jd_id, cv_ids


def test_match_job_progress_moves_chunk_by_chunk(pool_300):
    settings, store, jd_id, cv_ids = pool_300
    plan = create_match_job(settings, jd_id=jd_id, cv_ids=cv_ids, chunk_size=50)
    actor = get_progress_actor(settings)
    seen = []
    runner = threading.Thread(target=run_plan, args=(settings, plan), kwargs={"parallelism": 1})
    runner.start()
    while runner.is_alive():
        p = ray.get(actor.get.remote(plan.job_id))
        seen.append((p.current_chunk, p.processed, p.status))
        time.sleep(0.005)
    runner.join()
    final = ray.get(actor.get.remote(plan.job_id))
    assert final.status == JobStatus.succeeded
    assert (final.total, final.total_chunks, final.current_chunk, final.processed, final.percent) == (300, 6, 6, 300, 100)
    chunks = [c for c, _, _ in seen]
    assert chunks == sorted(chunks), "progress went backwards"
    assert len({c for c in chunks if 0 < c < 6}) >= 2, f"saw no intermediate chunks: {sorted(set(chunks))}"
    assert all(processed == 50 * c for c, processed, _ in seen)
    assert final.seconds_per_chunk is not None and final.seconds_per_chunk > 0


def _metric_total(exposition: str, name: str) -> float:
    """The sum over every series of ``name`` in a Prometheus text exposition."""
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in exposition.splitlines()
        if line.startswith((name + "{", name + " "))
    )


def test_a_match_job_shows_in_rays_metrics(ray_cluster, pool_300):
    # What docs/deployment.md tells operators to look for: the chunks a job scored, on the
    # head's Prometheus endpoint (which the dashboard's Metrics view reads).
    if ray_cluster.metrics_url is None:
        pytest.skip("an existing cluster's metrics endpoint is unknown: set CVMATCH_TEST_METRICS_URL")
    import httpx

    settings, store, jd_id, cv_ids = pool_300
    before = _metric_total(httpx.get(ray_cluster.metrics_url).text, "ray_cvmatch_match_chunks_total")
    plan = create_match_job(settings, jd_id=jd_id, cv_ids=cv_ids, chunk_size=50)
    assert run_plan(settings, plan) is JobStatus.succeeded
    deadline = time.monotonic() + 90  # Ray's agents export every few seconds
    while True:
        exposition = httpx.get(ray_cluster.metrics_url).text
        chunks = _metric_total(exposition, "ray_cvmatch_match_chunks_total")
        if chunks >= before + 6 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert chunks >= before + 6, [line for line in exposition.splitlines() if "cvmatch" in line]
    assert _metric_total(exposition, "ray_cvmatch_cvs_processed_total") >= 300


@pytest.mark.parametrize(("chunk_size", "parallelism", "task_min_cvs"),
                         [(50, 4, 0), (7, 2, 0), (300, 1, 0), (1000, 3, 0), (50, 4, 2000), (7, 2, 100)])
def test_results_do_not_depend_on_chunking(pool_300, chunk_size, parallelism, task_min_cvs):
    # task_min_cvs 2000: the driver scores the whole job itself; 100: tasks of 98 CVs.
    settings, store, jd_id, cv_ids = pool_300
    settings = settings.model_copy(update={"match_task_min_cvs": task_min_cvs})
    expected = _dump(rank_stored(store, jd_id, cv_ids))
    plan = create_match_job(settings, jd_id=jd_id, cv_ids=cv_ids, chunk_size=chunk_size)
    assert run_plan(settings, plan, parallelism=parallelism) is JobStatus.succeeded
    assert _dump(job_results(store, plan.job_id)) == expected


def test_unknown_cv_ids_fail_alone(pool_300):
    settings, store, jd_id, cv_ids = pool_300
    plan = create_match_job(settings, jd_id=jd_id, cv_ids=[*cv_ids[:10], "b" * 32], chunk_size=4)
    assert run_plan(settings, plan) is JobStatus.succeeded
    job = ray.get(get_progress_actor(settings).get.remote(plan.job_id))
    assert job.failed == 1 and job.failures[0].item_id == "b" * 32
    assert len(job_results(store, plan.job_id)) == 10


def test_progress_actor_killed_mid_job_recovers_from_lancedb(pool_300):
    settings, store, jd_id, cv_ids = pool_300
    job_id = submit_match_job(settings, jd_id=jd_id, cv_ids=cv_ids, chunk_size=5, parallelism=1)
    actor = get_progress_actor(settings)
    deadline = time.monotonic() + 60
    while ray.get(actor.get.remote(job_id)).current_chunk < 3:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    before = ray.get(actor.get.remote(job_id))
    ray.kill(actor, no_restart=True)

    # A new actor comes up with the job as it was written through, and the job finishes.
    deadline = time.monotonic() + 120
    while True:
        try:
            actor = get_progress_actor(settings)
            now = ray.get(actor.get.remote(job_id))
        except ray.exceptions.RayActorError:
            time.sleep(0.1)
            continue
        assert now.current_chunk >= before.current_chunk and now.processed >= before.processed
        if now.status.is_terminal():
            break
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert now.status == JobStatus.succeeded and now.current_chunk == 60 and now.processed == 300
    assert len(job_results(store, job_id)) == 300


def _wait_job_end(settings, job_id: str, timeout: float = 180.0):
    actor = get_progress_actor(settings)
    deadline = time.monotonic() + timeout
    while not (job := ray.get(actor.get.remote(job_id))).status.is_terminal():
        assert time.monotonic() < deadline, job
        time.sleep(0.05)
    return job


def _wait_chunks(settings, job_id: str, n: int) -> None:
    actor = get_progress_actor(settings)
    deadline = time.monotonic() + 60
    while ray.get(actor.get.remote(job_id)).current_chunk < n:
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_a_match_job_outlives_the_process_that_started_it(pool_300):
    # What the API's ingress replica is to a job: a process that may die right after.
    settings, store, jd_id, cv_ids = pool_300

    @ray.remote(num_cpus=0)
    class Submitter:
        def submit(self) -> str:
            return submit_match_job(settings, jd_id=jd_id, cv_ids=cv_ids, chunk_size=5, parallelism=1)

    submitter = Submitter.remote()
    job_id = ray.get(submitter.submit.remote())
    ray.kill(submitter, no_restart=True)
    assert _wait_job_end(settings, job_id).status == JobStatus.succeeded
    assert _dump(job_results(store, job_id)) == _dump(rank_stored(store, jd_id, cv_ids))


def test_a_match_job_whose_driver_died_goes_on_from_its_last_chunk(ray_cluster, pool_300):
    from cvmatch_ray.pipelines.match_driver import resume_stalled_match_jobs
    from cvmatch_ray.progress import ProgressClient

    settings, store, jd_id, cv_ids = pool_300
    job_id = submit_match_job(settings, jd_id=jd_id, cv_ids=cv_ids, chunk_size=5, parallelism=1)
    _wait_chunks(settings, job_id, 3)
    # Killed for good (no Ray restart): only the recovery round can bring a driver back.
    ray.kill(ray.get_actor(f"cvmatch-match-{job_id}", namespace=settings.ray_namespace), no_restart=True)
    time.sleep(0.5)
    stalled_at = ray.get(get_progress_actor(settings).get.remote(job_id)).current_chunk
    assert stalled_at < 60
    deadline = time.monotonic() + 30
    while resume_stalled_match_jobs(settings, ProgressClient(settings), older_than_s=0) != [job_id]:
        assert time.monotonic() < deadline, "the dead driver was never replaced"
        time.sleep(0.2)
    job = _wait_job_end(settings, job_id)
    assert (job.status, job.current_chunk, job.processed) == (JobStatus.succeeded, 60, 300)
    assert _dump(job_results(store, job_id)) == _dump(rank_stored(store, jd_id, cv_ids))
    if ray_cluster.temp_dir:
        # The second driver scored only the chunks not reported yet.
        logs = "".join(
            p.read_text(errors="replace") for p in Path(ray_cluster.temp_dir).glob("session_*/logs/worker-*.err")
        )
        starts = re.findall(rf"match job {job_id}: 300 CVs in 60 chunks \((\d+) to go\)", logs)
        # (a line may be in more than one log file: a set of the two drivers' starts)
        first, second = sorted({int(n) for n in starts}, reverse=True)
        assert first == 60 and second <= 60 - stalled_at, starts


def test_a_cancelled_match_job_stops_and_keeps_its_results(pool_300):
    settings, store, jd_id, cv_ids = pool_300
    job_id = submit_match_job(settings, jd_id=jd_id, cv_ids=cv_ids, chunk_size=1, parallelism=1)
    _wait_chunks(settings, job_id, 3)
    ray.get(get_progress_actor(settings).cancel.remote(job_id))
    deadline = time.monotonic() + 60
    while True:  # the driver stops at its next chunk and removes itself
        try:
            ray.get_actor(f"cvmatch-match-{job_id}", namespace=settings.ray_namespace)
        except ValueError:
            break
        assert time.monotonic() < deadline, "the driver of a cancelled job is still there"
        time.sleep(0.1)
    job = ray.get(get_progress_actor(settings).get.remote(job_id))
    assert job.status == JobStatus.cancelled and 3 <= job.current_chunk < 300
    assert len(job_results(store, job_id)) >= 3
