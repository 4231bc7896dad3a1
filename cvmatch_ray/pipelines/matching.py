"""Chunked parallel matching of one JD against many stored CVs.

The CV ids are cut into chunks (the progress granularity); a Ray task takes a run of
several chunks, reads their CVs' scoring columns from LanceDB in one query and scores them
in one pass of the core vectorized scorer. The job's driver (a detached actor for API jobs,
``match_driver.py``; the caller's process for the CLI and batch jobs) keeps a bounded
number of tasks in flight, gathers the scored chunks and writes their results in one
commit per batch (one writer, so no commit conflicts), then reports the batch's chunks to
the progress actor in one call. Any chunk size or parallelism
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

import pyarrow as pa
import ray

from cvmatch_ray import metrics
from cvmatch_ray.config import ScoreWeights, Settings, StoreSettings
from cvmatch_ray.errors import UnknownDocument
from cvmatch_ray.match.rank import jd_features
from cvmatch_ray.match.results import match_rows
from cvmatch_ray.match.scoring import JDFeatures, score_table
from cvmatch_ray.pipelines.resources import stage_options
from cvmatch_ray.progress import JobStatus, ProgressClient
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


# A task scores several chunks: one read and one vectorized pass for all of them. At most
# this many CVs a task (a fraction of a second of scoring), and about this many tasks per
# slot of parallelism, so a job's progress still moves in several steps and its workers
# share it; but at least ``settings.match_task_min_cvs``, below which a task costs more to
# schedule than to run.
TASK_MAX_CVS = 5_000
TASKS_PER_SLOT = 4
# Scored chunks wait in the driver until this many of the job's chunks (at least two) or
# this many seconds have gathered, and are then written in one commit and reported together.
WRITES_PER_JOB = 16
WRITE_INTERVAL_S = 1.0


@dataclass(frozen=True)
class ScoredChunks:
    """What scoring a run of chunks gives back: every scored CV's row in one table (one
    object to send, not one per chunk) and, per chunk, its CVs that could not be scored."""

    indices: list[int]
    rows: pa.Table | None  # stored form (``match.results.match_rows``); None: none scored
    failures: list[list[dict]]  # per chunk of ``indices``: {"item_id", "stage", "reason"}
    seconds: float  # per chunk

    @property
    def scored(self) -> int:
        return self.rows.num_rows if self.rows is not None else 0


def chunks_per_task(n_chunks: int, chunk_size: int, parallelism: int, min_cvs: int = 0) -> int:
    """How many of a job's ``n_chunks`` chunks one scoring task takes."""
    spread = -(-n_chunks // (parallelism * TASKS_PER_SLOT))
    return max(1, min(max(spread, min_cvs // chunk_size), TASK_MAX_CVS // chunk_size))


def chunks_per_write(total_chunks: int) -> int:
    """How many scored chunks the driver gathers before it writes and reports them."""
    return max(2, -(-total_chunks // WRITES_PER_JOB))


def score_chunks(
    settings: Settings, jd: JDFeatures, chunks: list[tuple[int, list[str]]], weights: ScoreWeights
) -> ScoredChunks:
    """Score several chunks ``(index, cv_ids)`` of stored CVs with one read and one scoring
    pass; ids not in the store fail alone."""
    start = time.perf_counter()
    ids = [c for _, chunk in chunks for c in chunk]
    # Each CV's score depends on its own row only, so one pass over many chunks gives every
    # chunk the results it would get alone. No result object is built per CV: the evidence
    # is made when a result is read (``match.rank.job_results``).
    rows = match_rows(score_table(jd, _store(settings).read_cv_features(ids), weights))
    chunk_of = {c: index for index, chunk in chunks for c in chunk}
    found = rows.column("cv_id").to_pylist()
    rows = rows.append_column("chunk", pa.array([chunk_of[c] for c in found], pa.int32()))
    found = set(found)
    failures = [[{"item_id": c, "stage": "match", "reason": "no stored CV with this id"} for c in chunk if c not in found]
                for _, chunk in chunks]
    seconds = (time.perf_counter() - start) / max(1, len(chunks))
    return ScoredChunks([i for i, _ in chunks], rows, failures, seconds)


_score_chunks_task = ray.remote(score_chunks)


def _failed_chunks(indices: list[int], chunks: list[list[str]], error: ray.exceptions.RayError) -> ScoredChunks:
    reason = f"chunk failed: {type(error).__name__}"
    failures = [[{"item_id": c, "stage": "match", "reason": reason} for c in chunks[i]] for i in indices]
    return ScoredChunks(indices, None, failures, 0.0)


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
    size = chunk_size or settings.match_chunk_size
    chunks = chunked(ids, size)
    limit = parallelism or settings.match_parallelism
    task = _score_chunks_task.options(**stage_options(settings)["match_chunk"].remote_options())
    resumed = progress.call("get", job_id).status is JobStatus.running
    job = progress.call("start", job_id)
    if job.status.is_terminal():
        return job.status  # cancelled before it started, or finished by an earlier driver
    # A driver started again after one died goes on from the chunks already reported
    # (their results are written before they are reported: none is lost, none redone).
    done = {i for start, end in progress.call("done_chunks", job_id) for i in range(start, end + 1)}
    todo = [i for i in range(len(chunks)) if i not in done]
    if resumed:
        # Rows of chunks written but not reported when the last driver died: results are
        # appended (an append's cost does not grow with the table, a merge's does), so they
        # must go before their chunks are scored again.
        store.delete_match_chunks(job_id, todo)
    logger.info("match job %s: %d CVs in %d chunks (%d to go)", job_id, len(ids), len(chunks), len(todo))
    per_task = chunks_per_task(len(todo), size, limit, settings.match_task_min_cvs)
    groups = [todo[i : i + per_task] for i in range(0, len(todo), per_task)]
    per_write = chunks_per_write(len(chunks))

    if len(groups) == 1:
        # One task's worth of CVs: scored here, since a task would cost more than the scoring.
        scored = score_chunks(settings, jd, [(i, chunks[i]) for i in groups[0]], settings.weights)
        status = _write_and_report(store, progress, job_id, chunks, [scored])
        return status if status == JobStatus.cancelled else _finish(progress, job_id, len(ids))

    in_flight: dict[ray.ObjectRef, list[int]] = {}
    scored: list[ScoredChunks] = []  # scored, not yet written nor reported
    last_write = time.monotonic()
    next_group = 0
    while next_group < len(groups) or in_flight:
        while next_group < len(groups) and len(in_flight) < limit:
            group = groups[next_group]
            in_flight[task.remote(settings, jd, [(i, chunks[i]) for i in group], settings.weights)] = group
            next_group += 1
        wait_s = max(0.0, last_write + WRITE_INTERVAL_S - time.monotonic()) if scored else None
        ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=wait_s)
        if ready:  # and whatever else has finished meanwhile
            ready, _ = ray.wait(list(in_flight), num_returns=len(in_flight), timeout=0)
        for ref in ready:
            group = in_flight.pop(ref)
            try:
                scored.append(ray.get(ref))
            except ray.exceptions.RayError as e:
                # A task that cannot score its chunks fails their CVs, not the job.
                logger.warning("match job %s: chunks %d-%d failed: %s", job_id, group[0], group[-1], type(e).__name__)
                scored.append(_failed_chunks(group, chunks, e))
        finished = next_group == len(groups) and not in_flight
        waiting = sum(len(s.indices) for s in scored)
        if scored and (finished or waiting >= per_write or time.monotonic() - last_write >= WRITE_INTERVAL_S):
            status = _write_and_report(store, progress, job_id, chunks, scored)
            scored, last_write = [], time.monotonic()
            if status == JobStatus.cancelled:
                for ref in in_flight:
                    ray.cancel(ref)
                logger.info("match job %s cancelled", job_id)
                return JobStatus.cancelled

    return _finish(progress, job_id, len(ids))


def _finish(progress: ProgressClient, job_id: str, n_cvs: int) -> JobStatus:
    """End a job whose chunks are all reported: failed when every CV failed."""
    failed_items = progress.call("get", job_id).failed  # this driver's and any earlier one's
    status = JobStatus.failed if n_cvs and failed_items == n_cvs else JobStatus.succeeded
    progress.call("finish", job_id, status, "every CV failed" if status is JobStatus.failed else None)
    logger.info("match job %s %s: %d CVs, %d failed", job_id, status.value, n_cvs, failed_items)
    return status


def _write_and_report(
    store: Store, progress: ProgressClient, job_id: str, chunks: list[list[str]], scored: list[ScoredChunks]
) -> JobStatus:
    """Write the results of scored chunks in one commit, then report them in one call:
    a chunk is reported only once its results are stored. Returns the job's status."""
    tables = [s.rows for s in scored if s.scored]
    if tables:
        store.append_match_rows(job_id, pa.concat_tables(tables))
    reports = []
    for s in scored:
        for index, failures in zip(s.indices, s.failures, strict=True):
            metrics.observe_latency("match_chunk", s.seconds)
            reports.append((index, len(chunks[index]), failures))
    metrics.record_match_chunks(len(reports))
    metrics.record_processed("match", sum(s.scored for s in scored))
    return progress.call("chunks_done", job_id, reports).status


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
