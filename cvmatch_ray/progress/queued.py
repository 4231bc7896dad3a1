"""The book's side of the work queue: queued jobs claimed, their leases, and taking back
what a dead worker held.

A mixin of :class:`~cvmatch_ray.progress.book.ProgressBook` (its records and lock): the
rules for jobs a worker claims live here, next to each other, rather than among the
rules of progress. Plain Python, no Ray.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence

from cvmatch_ray.errors import ErrorCode
from cvmatch_ray.progress.models import JobKind, JobProgress, JobStatus, QueuedJob
from cvmatch_ray.progress.records import JobRecord, now_dt


class QueuedJobs:
    """Claims and leases of queued jobs (see :class:`ProgressBook`, which provides the state)."""

    _lock: threading.RLock
    _records: dict[str, JobRecord]
    _clock: Callable[[], float]
    _seq: int

    def add_queued(self, kind: JobKind, jobs: Sequence[Sequence[str | None]], *, total: int = 1) -> list[str]:
        """Register queued jobs, ``QueuedJob``s (or ``(job_id, cv_id)``: the default tenant's),
        for a work queue, without a write.

        A caller that queues work keeps its own durable note of it (an accepted upload's
        blob), so these are written with the book's next batch of changes. Ids that
        exist already are left as they are.

        Returns:
            The ids of the jobs created.
        """
        created: list[str] = []
        with self._lock:
            for job in (QueuedJob(*j) for j in jobs):
                if self._lookup(job.job_id) is None:
                    self._add_job(job.job_id, kind, total, cv_id=job.cv_id, tenant=job.tenant, written=False)
                    created.append(job.job_id)
        return created

    def start_queued(self, job_ids: Sequence[str]) -> list[QueuedJob]:
        """Mark the still-queued jobs of ``job_ids`` running (one lock, no write).

        Returns:
            The jobs started; forgotten or finished ones are skipped.
        """
        now = self._clock()
        started: list[QueuedJob] = []
        with self._lock:
            for job_id in job_ids:
                record = self._records.get(job_id)
                if record is None or record.progress.status != JobStatus.queued:
                    continue
                record.progress.attempts += 1
                record.start(now)
                self._changed(record)
                started.append(QueuedJob(job_id, record.progress.cv_id, record.progress.tenant))
        return started

    def queued(self, kind: JobKind) -> list[str]:
        """Ids of the queued jobs of ``kind``, oldest first (unfinished jobs are all in memory)."""
        with self._lock:
            records = [r for r in self._records.values() if r.progress.kind == kind and r.progress.status == JobStatus.queued]
            records.sort(key=lambda r: r.progress.created_at)
            return [r.progress.job_id for r in records]

    def requeue_stalled(
        self, kind: JobKind, older_than_s: float, *, limit: int = 200, max_attempts: int = 0
    ) -> list[str]:
        """Take back running jobs of ``kind`` unchanged for ``older_than_s`` (expired leases).

        Whoever held them is presumed dead: each is queued again, or failed as
        ``poison_document`` once it was claimed ``max_attempts`` times (0: never).

        Returns:
            The ids of the jobs queued again, longest stalled first.
        """
        with self._lock:
            stale = self._unchanged(kind, older_than_s, running_only=True)[: max(0, limit)]
            return [r.progress.job_id for r in stale if self._put_back(r, max_attempts)]

    def release(self, job_id: str, *, max_attempts: int = 0) -> JobProgress:
        """A worker gives back a running job it could not finish through no fault of the
        document's: queued again, or failed as ``poison_document`` after ``max_attempts``
        claims (0: never). Anything but a running job is left as it is."""
        with self._lock:
            record = self._require(job_id)
            if record.progress.status == JobStatus.running:
                self._put_back(record, max_attempts)
            seq, result = self._seq, self._snapshot(record)
        self._make_durable(seq)
        return result

    def heartbeat(self, job_ids: Iterable[str]) -> int:
        """Renew the lease of the running jobs among ``job_ids`` (kept in memory only).

        Returns:
            How many were running.
        """
        now, renewed = self._clock(), 0
        with self._lock:
            for job_id in job_ids:
                record = self._records.get(job_id)
                if record is not None and record.progress.status == JobStatus.running:
                    record.touch(now)
                    renewed += 1
        return renewed

    def _put_back(self, record: JobRecord, max_attempts: int) -> bool:
        """Queue a running job again, or fail it as poison after ``max_attempts`` claims
        (caller holds ``_lock``); True when it was queued again."""
        p = record.progress
        if max_attempts and p.attempts >= max_attempts:
            message = f"processing this document ended abnormally {p.attempts} times; it is not tried again"
            self._finish(record, JobStatus.failed, (message, ErrorCode.poison_document.value, ErrorCode.poison_document.stage.value), None)
            return False
        p.status = JobStatus.queued
        record.touch(self._clock())
        self._changed(record)
        return True

    def stalled(self, kind: JobKind, older_than_s: float) -> list[str]:
        """Ids of unfinished jobs of ``kind`` unchanged for ``older_than_s`` (queued or running)."""
        with self._lock:
            return [r.progress.job_id for r in self._unchanged(kind, older_than_s, running_only=False)]

    def _unchanged(self, kind: JobKind, older_than_s: float, *, running_only: bool) -> list[JobRecord]:
        """Unfinished (or only running) jobs of ``kind`` unchanged for ``older_than_s``, longest
        unchanged first (caller holds ``_lock``). Unfinished jobs are never evicted: memory
        holds every candidate."""
        cutoff = now_dt(self._clock() - older_than_s)
        found = [
            r for r in self._records.values()
            if r.progress.kind == kind and r.progress.updated_at <= cutoff
            and (r.progress.status == JobStatus.running if running_only else not r.progress.status.is_terminal())
        ]
        found.sort(key=lambda r: r.progress.updated_at)
        return found

    def done_chunks(self, job_id: str) -> list[list[int]]:
        """The chunks of ``job_id`` reported done, as inclusive ``[start, end]`` ranges."""
        with self._lock:
            return self._require(job_id).chunks.ranges()
