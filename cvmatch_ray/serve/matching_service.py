"""What the API does for matching, behind its routes: match jobs (start, follow, cancel,
results), whole-pool ranking and reverse matching.

A mixin of :class:`~cvmatch_ray.serve.service.APIService` (its settings, store, blobs and
progress client: one tenant's): the matching half of the service lives here, next to
itself, rather than among the upload rules. A match job belongs to the tenant whose
settings started it (``JobProgress.tenant``); another tenant's job is answered as unknown.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from cvmatch_ray.config import Settings
from cvmatch_ray.errors import UnknownDocument
from cvmatch_ray.ids import validate_id
from cvmatch_ray.match.rank import job_results, rank_jobs
from cvmatch_ray.match.retrieve import match_pool
from cvmatch_ray.pipelines.match_driver import read_plan, submit_match_job
from cvmatch_ray.progress import JobProgress, JobStatus, ProgressClient
from cvmatch_ray.serve.errors import InvalidRequest, RequestTooLarge, checked_id
from cvmatch_ray.serve.models import (
    JobsMatchRequest,
    JobsMatchResults,
    MatchAccepted,
    MatchProgress,
    MatchRequest,
    MatchResults,
    PoolMatchResults,
)
from cvmatch_ray.storage.blobs import BlobStore
from cvmatch_ray.storage.tables import Store

logger = logging.getLogger(__name__)


class MatchingService:
    """Match jobs and rankings of one tenant (see :class:`APIService`, which provides the state)."""

    settings: Settings
    store: Store
    blobs: BlobStore
    progress: ProgressClient

    _blocking: Callable[..., Awaitable[Any]]  # runs a blocking call in the service's threads
    _job: Callable[[str], Awaitable[JobProgress | None]]  # a progress job, or None

    async def submit_match(self, request: MatchRequest) -> MatchAccepted:
        """Start a chunked matching job in the background.

        Raises:
            UnknownDocument: the JD is not stored.
            InvalidRequest: a CV id is malformed (a request error, not a per-item failure).
            RequestTooLarge: more CV ids than ``settings.match_max_cvs``.
        """
        if request.cv_ids is not None and len(request.cv_ids) > self.settings.match_max_cvs:
            raise RequestTooLarge(
                f"{len(request.cv_ids)} cv_ids, more than the {self.settings.match_max_cvs} one job takes; "
                "split the request, or omit cv_ids to match every stored CV"
            )
        jd_id = checked_id(request.jd_id, "jd_id")
        if not await self._blocking(self.store.has_jd, jd_id):
            raise UnknownDocument(f"no JD with id {jd_id!r}")
        cv_ids = None
        if request.cv_ids is not None:
            try:
                cv_ids = [validate_id(c, "cv_id") for c in request.cv_ids]
            except ValueError as e:
                raise InvalidRequest(str(e)) from e
        job_id = await self._blocking(
            submit_match_job, self.settings, jd_id=jd_id, cv_ids=cv_ids, chunk_size=request.chunk_size,
            # What the results endpoint needs to remember of the request.
            meta={"top_k": request.top_k},
        )
        logger.info("match job %s started for JD %s (%s CVs)", job_id, jd_id, len(cv_ids) if cv_ids is not None else "all")
        return MatchAccepted(job_id=job_id, jd_id=jd_id, status=JobStatus.queued)

    async def _match_job(self, job_or_jd_id: str) -> JobProgress:
        job = await self._job(job_or_jd_id)
        if job is None:
            job = await self.progress.acall("latest_for_jd", job_or_jd_id, self.settings.tenant)
        # Another tenant's job is no job of this one's (and its results are not in this store).
        if job is None or job.kind != "match" or job.tenant != self.settings.tenant:
            raise UnknownDocument(f"no matching job for {job_or_jd_id!r}")
        return job

    async def cancel_match(self, job_id: str) -> MatchProgress:
        """Cancel a match job: its driver stops at its next chunk; results so far stay.

        Raises:
            UnknownDocument: no such job.
        """
        job = await self._match_job(job_id)
        cancelled: JobProgress = await self.progress.acall("cancel", job.job_id)
        logger.info("match job %s: cancel asked (%s)", job.job_id, cancelled.status.value)
        return MatchProgress.of(cancelled)

    async def match_progress(self, job_or_jd_id: str) -> MatchProgress:
        """A matching job's progress, by job id or by JD id (that JD's latest job).

        Raises:
            UnknownDocument: no such job.
        """
        return MatchProgress.of(await self._match_job(job_or_jd_id))

    async def match_jobs(self, request: JobsMatchRequest) -> JobsMatchResults:
        """The best stored JDs for a stored CV, scored exactly as the forward direction.

        Raises:
            UnknownDocument: the CV is not stored.
            InvalidRequest: an id is malformed.
        """
        cv_id = checked_id(request.cv_id, "cv_id")
        try:
            jd_ids = [validate_id(j, "jd_id") for j in request.jd_ids] if request.jd_ids is not None else None
        except ValueError as e:
            raise InvalidRequest(str(e)) from e
        results = await self._blocking(
            rank_jobs, self.store, cv_id, jd_ids, top_k=request.top_k, weights=self.settings.weights,
            idf_sample=self.settings.retrieval.lexical_idf_sample,
        )
        return JobsMatchResults(cv_id=cv_id, count=len(results), results=results)

    async def match_results(self, job_id: str, *, top_k: int | None = None) -> MatchResults:
        """A job's results so far, best first; ``top_k`` defaults to the request's.

        Raises:
            UnknownDocument: no such job.
        """
        job = await self._match_job(job_id)
        if top_k is None:
            plan = await self._blocking(read_plan, self.blobs, job.job_id)
            if plan is not None:
                top_k = plan.get("top_k")
        results = await self._blocking(job_results, self.store, job.job_id, limit=top_k,
                                       idf_sample=self.settings.retrieval.lexical_idf_sample)
        return MatchResults(
            job_id=job.job_id,
            jd_id=job.jd_id,
            status=job.status,
            complete=job.status.is_terminal(),
            total=job.total,
            processed=job.processed,
            failed=job.failed,
            count=len(results),
            results=results,
        )

    async def best_cvs(self, jd_id: str, *, top_k: int) -> PoolMatchResults:
        """The best ``top_k`` stored CVs for a stored JD, over the whole pool (``match_pool``).

        Raises:
            UnknownDocument: no such JD.
        """
        jd_id = checked_id(jd_id, "jd_id")
        found = await self._blocking(
            match_pool, self.store, jd_id, top_k=top_k, weights=self.settings.weights, settings=self.settings.retrieval
        )
        return PoolMatchResults(
            jd_id=jd_id, pool=found.pool, candidates=found.candidates, exact=found.exact,
            milliseconds=round(found.timings_ms["total"], 1), count=len(found.results), results=found.results,
        )
