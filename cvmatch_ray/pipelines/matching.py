"""Chunked parallel matching of one JD against many stored CVs.

The CV ids are cut into chunks; each chunk is a Ray task that reads its CVs' scoring
columns from LanceDB and scores them with the core vectorized scorer. The job's driver (a
detached actor for API jobs, ``match_driver.py``; the caller's process for the CLI and
batch jobs) keeps a
bounded number of chunks in flight, writes each chunk's results as it arrives (one writer,
so no commit conflicts) and reports to the progress actor. Any chunk size or parallelism
gives the same results as the in-process path, and memory stays bounded by the chunks in
flight, not by the number of CVs.
"""

from __future__ import annotations

import functools
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import ray

from cvmatch_ray import metrics
from cvmatch_ray.config import ScoreWeights, Settings, StoreSettings
from cvmatch_ray.errors import UnknownDocument
from cvmatch_ray.match.rank import jd_features
from cvmatch_ray.match.scoring import JDFeatures, score_table
from cvmatch_ray.pipelines.resources import stage_options
from cvmatch_ray.progress import JobStatus, ProgressClient
from cvmatch_ray.schemas import MatchResult
from cvmatch_ray.storage.tables import Store

logger = logging.getLogger(__name__)


def new_job_id() -> str:
    return "job_" + uuid.uuid4().hex[:16]


def chunked(ids: Sequence[str], size: int) -> list[list[str]]:
    """Split ``ids`` into consecutive chunks of at most ``size``."""
    if size <= 0:
        raise ValueError("chunk size must be positive")
    return [list(ids[i : i + size]) for i in range(0, len(ids), size)]


def _store(settings: Settings) -> Store:
    """The settings' tenant's store, one handle per worker process and database (opening one
    is not free)."""
    return _cached_store(settings.tenant_dir, settings.store.model_dump_json())


@functools.lru_cache(maxsize=4)
def _cached_store(uri: str, store_json: str) -> Store:
    return Store.open(uri, StoreSettings.model_validate_json(store_json))


@dataclass(frozen=True)
class ChunkOutput:
    index: int
    results: list[MatchResult]
    missing: list[str]
    seconds: float


def score_chunk(
    settings: Settings, jd: JDFeatures, cv_ids: list[str], index: int, weights: ScoreWeights
) -> ChunkOutput:
    """Score one chunk of stored CVs; ids not in the store come back as ``missing``."""
    start = time.perf_counter()
    table = _store(settings).read_cv_features(cv_ids)
    batch = score_table(jd, table, weights)
    found = set(batch.cv_ids.tolist())
    return ChunkOutput(
        index=index,
        results=batch.results(),
        missing=[c for c in cv_ids if c not in found],
        seconds=time.perf_counter() - start,
    )


_score_chunk_task = ray.remote(score_chunk)


def run_match_job(
    settings: Settings,
    *,
    job_id: str,
    jd_id: str,
    cv_ids: Sequence[str],
    chunk_size: int | None = None,
    parallelism: int | None = None,
) -> JobStatus:
    """Run a matching job to its end, reporting every chunk; returns the final status.

    The job must already exist in the progress actor (``create_match_job``), with the
    same ``cv_ids`` and ``chunk_size``.
    """
    progress = ProgressClient(settings)
    store = _store(settings)
    try:
        jd = jd_features(store, jd_id, idf_sample=settings.retrieval.lexical_idf_sample)
    except (LookupError, ValueError) as e:
        logger.warning("match job %s failed: its JD cannot be read (%s)", job_id, type(e).__name__)
        progress.call("finish", job_id, JobStatus.failed, str(e))
        return JobStatus.failed
    ids = list(cv_ids)
    chunks = chunked(ids, chunk_size or settings.match_chunk_size)
    limit = parallelism or settings.match_parallelism
    task = _score_chunk_task.options(**stage_options(settings)["match_chunk"].remote_options())
    job = progress.call("start", job_id)
    if job.status.is_terminal():
        return job.status  # cancelled before it started, or finished by an earlier driver
    # A driver started again after one died goes on from the chunks already reported
    # (their results are written before they are reported: none is lost, none redone).
    done = {i for start, end in progress.call("done_chunks", job_id) for i in range(start, end + 1)}
    todo = [i for i in range(len(chunks)) if i not in done]
    logger.info("match job %s: %d CVs in %d chunks (%d to go)", job_id, len(ids), len(chunks), len(todo))

    in_flight: dict[ray.ObjectRef, int] = {}
    next_chunk = 0  # position in todo
    while next_chunk < len(todo) or in_flight:
        while next_chunk < len(todo) and len(in_flight) < limit:
            index = todo[next_chunk]
            in_flight[task.remote(settings, jd, chunks[index], index, settings.weights)] = index
            next_chunk += 1
        [done], _ = ray.wait(list(in_flight), num_returns=1)
        index = in_flight.pop(done)
        try:
            out: ChunkOutput = ray.get(done)
        except ray.exceptions.RayError as e:
            # A chunk that cannot be scored fails its own CVs, not the job.
            logger.warning("match job %s: chunk %d failed: %s", job_id, index, type(e).__name__)
            failures = [{"item_id": c, "stage": "match", "reason": f"chunk failed: {type(e).__name__}"} for c in chunks[index]]
            out = ChunkOutput(index, [], [], 0.0)
        else:
            failures = [{"item_id": c, "stage": "match", "reason": "no stored CV with this id"} for c in out.missing]
            if out.results:
                store.write_matches(job_id, out.results)
        metrics.observe_latency("match_chunk", out.seconds)
        metrics.record_match_chunks()
        metrics.record_processed("match", len(out.results))
        report = progress.call("chunk_done", job_id, index, len(chunks[index]), failures)
        if report.status == JobStatus.cancelled:
            for ref in in_flight:
                ray.cancel(ref)
            logger.info("match job %s cancelled after %d of %d chunks", job_id, report.current_chunk, len(chunks))
            return JobStatus.cancelled

    failed_items = progress.call("get", job_id).failed  # this driver's and any earlier one's
    status = JobStatus.failed if ids and failed_items == len(ids) else JobStatus.succeeded
    progress.call("finish", job_id, status, "every CV failed" if status is JobStatus.failed else None)
    logger.info("match job %s %s: %d CVs, %d failed", job_id, status.value, len(ids), failed_items)
    return status


@dataclass(frozen=True)
class MatchPlan:
    job_id: str
    jd_id: str
    cv_ids: list[str]
    chunk_size: int

    @property
    def total_chunks(self) -> int:
        return -(-len(self.cv_ids) // self.chunk_size)


def bounded_chunk_size(settings: Settings, n_cvs: int, requested: int | None = None) -> int:
    """The chunk size a job of ``n_cvs`` runs with: the requested one (or the setting), raised
    so the job has at most ``settings.match_max_chunks`` chunks (a bound on its tasks and reports)."""
    wanted = requested or settings.match_chunk_size
    return max(wanted, -(-n_cvs // settings.match_max_chunks))


def create_match_job(
    settings: Settings,
    *,
    jd_id: str,
    cv_ids: Sequence[str] | None,
    chunk_size: int | None = None,
    job_id: str | None = None,
) -> MatchPlan:
    """Check the JD, resolve the CV ids (all the tenant's stored CVs when None) and register a
    queued job of ``settings.tenant``.

    Raises:
        UnknownDocument: the JD is not stored.
    """
    store = _store(settings)
    if not store.has_jd(jd_id):
        raise UnknownDocument(f"no JD with id {jd_id!r}")
    ids = list(dict.fromkeys(cv_ids)) if cv_ids is not None else store.list_cv_ids()
    plan = MatchPlan(job_id or new_job_id(), jd_id, ids, bounded_chunk_size(settings, len(ids), chunk_size))
    ProgressClient(settings).call(
        "create", plan.job_id, "match", len(ids), total_chunks=plan.total_chunks, jd_id=jd_id, tenant=settings.tenant
    )
    return plan


def run_plan(settings: Settings, plan: MatchPlan, *, parallelism: int | None = None) -> JobStatus:
    """Run a planned job in this process (CLI, batch jobs)."""
    return run_match_job(
        settings, job_id=plan.job_id, jd_id=plan.jd_id, cv_ids=plan.cv_ids,
        chunk_size=plan.chunk_size, parallelism=parallelism,
    )
