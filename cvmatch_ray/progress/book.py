"""The progress book: every job's state and the rules that keep it honest.

Plain Python, no Ray: progress never goes backwards, chunk reports are idempotent by chunk
index, terminal states are final, the ETA comes from the mean wall time per finished
chunk. Optionally written through to a :class:`~cvmatch_ray.storage.jobs.JobTable`, so a
restarted book reloads every job. Every method is idempotent, because the actor around it
replays calls that were in flight when it died (``max_task_retries=-1``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import pyarrow as pa

from cvmatch_ray.config import DEFAULT_TENANT
from cvmatch_ray.progress.models import (
    MAX_FAILURES_KEPT,
    FailureRecord,
    InvalidReportError,
    JobConflictError,
    JobKind,
    JobNotFoundError,
    JobProgress,
    JobStatus,
    ProgressStoreError,
    StepReport,
    UploadStep,
)
from cvmatch_ray.progress.queued import QueuedJobs
from cvmatch_ray.progress.records import JobRecord, now_dt
from cvmatch_ray.schemas import CVStats, clean_line
from cvmatch_ray.storage.jobs import JobTable

logger = logging.getLogger(__name__)

#: Why a job failed: (message, error code, stage); all None when it did not.
_Failure = tuple[str | None, str | None, str | None]
_NO_FAILURE: _Failure = (None, None, None)


class ProgressBook(QueuedJobs):
    """All jobs' progress, with its rules; optionally written through to a :class:`JobTable`.

    Thread-safe. Changes that must survive a crash (a job's creation, every chunk report,
    terminal states) are written before the method returns; concurrent callers share one
    write (group commit), so a threaded actor stays fast on slow object storage. Upload
    steps between the first and the last are coalesced: written at most every
    ``coalesce_s`` per job, or by :meth:`flush`.
    """

    def __init__(
        self,
        table: JobTable | None = None,
        *,
        coalesce_s: float = 0.5,
        max_cached_jobs: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Build the book, reloading every job from ``table`` if given.

        Args:
            table: the durable copy; None keeps everything in memory only.
            coalesce_s: longest a coalesced change waits before it is written.
            max_cached_jobs: finished jobs beyond this many are dropped from memory (oldest
                first) and read back from the table on demand; unfinished jobs always stay.
            clock: wall clock in epoch seconds (injectable for tests).
        """
        self._table = table
        self._coalesce_s = coalesce_s
        self._max_cached = max_cached_jobs
        self._clock = clock
        self._lock = threading.RLock()  # guards the records and the dirty set
        self._write_lock = threading.Lock()  # one table writer at a time
        self._records: dict[str, JobRecord] = {}
        # The jobs evicted from memory, in the table only, with the CV each works on and
        # its tenant: a lookup of any other id that is not in memory is answered without a
        # table query (every new job's create looks its id up first).
        self._evicted: dict[str, tuple[str | None, str]] = {}
        self._dirty: set[str] = set()
        self._seq = 0  # bumped by every change
        self._durable_seq = 0  # every change up to here is in the table
        if table is not None:
            records = [JobRecord.from_json(state) for state in table.load_all()]
            for record in sorted(records, key=lambda r: r.progress.created_at):
                self._records[record.progress.job_id] = record
                record.last_write = self._clock()
            self._evict()
            logger.info("progress book reloaded %d jobs from %s", len(self._records), table.uri)

    # ---------------------------------------------------------------- commands

    def create(
        self,
        job_id: str,
        kind: JobKind,
        total: int,
        *,
        total_chunks: int = 0,
        jd_id: str | None = None,
        cv_id: str | None = None,
        tenant: str = DEFAULT_TENANT,
        durable: bool = True,
    ) -> JobProgress:
        """Register a queued job; creating an existing job returns it unchanged.

        Args:
            job_id: caller-chosen unique id.
            kind: "match", "upload" or "ingest".
            total: items the job will process (CVs to score, documents to ingest; 1 for an upload).
            total_chunks: chunks the items are split into (0 if not chunked).
            jd_id: the JD a match job scores against.
            cv_id: the CV an upload job processes.
            tenant: whose data the job works on.
            durable: write the job before returning. False coalesces the write like an
                intermediate step (see the class docstring): for a caller that keeps its
                own durable note of the job, as an accepted upload does.

        Raises:
            JobConflictError: ``job_id`` exists with another kind.
            InvalidReportError: negative totals.
        """
        if total < 0 or total_chunks < 0:
            raise InvalidReportError(f"job {job_id}: negative total ({total}) or total_chunks ({total_chunks})")
        with self._lock:
            existing = self._lookup(job_id)
            if existing is not None:
                if existing.progress.kind != kind:
                    raise JobConflictError(f"job {job_id} exists as a {existing.progress.kind} job, not {kind}")
                return self._snapshot(existing)
            record = self._add_job(
                job_id, kind, total, total_chunks=total_chunks, jd_id=jd_id, cv_id=cv_id, tenant=tenant,
                written=durable,
            )
            seq = self._seq
            result = self._snapshot(record)
        if durable:
            self._make_durable(seq)
        return result

    def known(self, job_ids: Iterable[str]) -> list[str]:
        """Which of ``job_ids`` the book has (in memory or only in the table)."""
        with self._lock:
            return [j for j in job_ids if j in self._records or j in self._evicted]

    def start(self, job_id: str) -> JobProgress:
        """Mark a queued job running (no-op otherwise)."""
        with self._lock:
            record = self._require(job_id)
            if record.progress.status != JobStatus.queued:
                return self._snapshot(record)
            record.start(self._clock())
            seq = self._changed(record)
            result = self._snapshot(record)
        self._make_durable(seq)
        return result

    def chunk_done(
        self,
        job_id: str,
        chunk_index: int,
        processed: int,
        failures: Sequence[FailureRecord | Mapping[str, Any]] = (),
    ) -> JobProgress:
        """Count one finished chunk, once: a repeated ``chunk_index`` changes nothing.

        Written to the table before returning. The returned status tells a pipeline
        whether to keep going (a cancelled job ignores further reports).

        Args:
            job_id: the job.
            chunk_index: 0-based chunk index, unique within the job.
            processed: items of this chunk that finished, failed ones included.
            failures: the items of this chunk that failed.

        Raises:
            JobNotFoundError: unknown job.
            InvalidReportError: negative counts, more failures than processed items, or a
                chunk index past ``total_chunks``.
        """
        return self.chunks_done(job_id, [(chunk_index, processed, failures)])

    def chunks_done(
        self,
        job_id: str,
        reports: Sequence[tuple[int, int, Sequence[FailureRecord | Mapping[str, Any]]]],
    ) -> JobProgress:
        """Count several finished chunks, ``(chunk_index, processed, failures)`` each, as
        :meth:`chunk_done` does one, with one table write for all of them.

        Every report is checked before any is counted, so a bad one counts none.

        Raises:
            JobNotFoundError: unknown job.
            InvalidReportError: as :meth:`chunk_done`, for any of the reports.
        """
        checked: list[tuple[int, int, list[FailureRecord]]] = []
        for chunk_index, processed, failures in reports:
            records = [f if isinstance(f, FailureRecord) else FailureRecord.model_validate(f) for f in failures]
            if chunk_index < 0 or processed < 0 or len(records) > processed:
                raise InvalidReportError(
                    f"job {job_id}: chunk {chunk_index} reports {processed} processed, {len(records)} failures"
                )
            checked.append((chunk_index, processed, records))
        with self._lock:
            record = self._require(job_id)
            p = record.progress
            if p.status.is_terminal():
                return self._snapshot(record)
            for chunk_index, _, _ in checked:
                if p.total_chunks and chunk_index >= p.total_chunks:
                    raise InvalidReportError(f"job {job_id}: chunk {chunk_index} of {p.total_chunks}")
            now = self._clock()
            counted = 0
            for chunk_index, processed, records in checked:
                if not record.chunks.add(chunk_index):
                    logger.debug("job %s: chunk %d already counted", job_id, chunk_index)
                    continue
                counted += 1
                p.processed += processed
                p.failed += len(records)
                room = MAX_FAILURES_KEPT - len(p.failures)
                if room > 0:
                    p.failures.extend(records[:room])
            if not counted:
                return self._snapshot(record)
            if p.status == JobStatus.queued:
                record.start(now)
            p.current_chunk = record.chunks.count
            record.last_chunk_at = now
            record.update_rate(now)
            record.raise_percent(record.chunked_percent())
            seq = self._changed(record)
            result = self._snapshot(record)
        self._make_durable(seq)
        return result

    def set_step(
        self,
        job_id: str,
        step: UploadStep,
        stats: CVStats | None = None,
        *,
        error: str | None = None,
        error_code: str | None = None,
        error_stage: str | None = None,
    ) -> JobProgress:
        """Move an upload to ``step``; an earlier step than the current one is ignored.

        ``done`` finishes the job as succeeded and ``failed`` as failed (with ``error``).
        Intermediate steps are coalesced (see the class docstring).

        Raises:
            JobNotFoundError: unknown job.
        """
        with self._lock:
            record = self._require(job_id)
            seq = self._set_step(record, UploadStep(step), stats, (error, error_code, error_stage))
            result = self._snapshot(record)
        if seq is not None:
            self._make_durable(seq)
        return result

    def report_steps(self, reports: Sequence[StepReport]) -> int:
        """:meth:`set_step` for many reports, in order, with at most one table write.

        For a worker that keeps many uploads in flight: one call carries the steps they
        reached since its last call. A report on a job the book does not know (forgotten:
        its CV was deleted meanwhile) is skipped.

        Returns:
            How many reports were applied.
        """
        applied = 0
        due: int | None = None
        with self._lock:
            for report in reports:
                record = self._lookup(report.job_id)
                if record is None:
                    logger.info("step report on unknown job %s skipped", report.job_id)
                    continue
                seq = self._set_step(
                    record, UploadStep(report.step), report.stats, (report.error, report.error_code, report.error_stage)
                )
                applied += 1
                if seq is not None:
                    due = seq
        if due is not None:
            self._make_durable(due)
        return applied

    def finish(
        self,
        job_id: str,
        status: JobStatus,
        error: str | None = None,
        *,
        stats: CVStats | None = None,
        error_code: str | None = None,
        error_stage: str | None = None,
    ) -> JobProgress:
        """End a job; a job already ended keeps its first ending.

        Raises:
            JobNotFoundError: unknown job.
            InvalidReportError: ``status`` is not terminal.
        """
        status = JobStatus(status)
        if not status.is_terminal():
            raise InvalidReportError(f"job {job_id}: finish() needs a terminal status, not {status.value}")
        with self._lock:
            record = self._require(job_id)
            seq = self._finish(record, status, (error, error_code, error_stage), stats)
            result = self._snapshot(record)
        if seq is not None:
            self._make_durable(seq)
        return result

    def cancel(self, job_id: str) -> JobProgress:
        """Cancel a job; pipelines see it in the status their next report returns."""
        return self.finish(job_id, JobStatus.cancelled)

    def forget(self, job_ids: Iterable[str]) -> int:
        """Remove jobs from memory and from the table, for good; unknown ids are skipped.

        For data that must go (a deleted CV's upload jobs): a later report on a forgotten
        job raises :class:`JobNotFoundError`; their rows are erased from disk too.

        Returns:
            How many of the jobs existed.

        Raises:
            ProgressStoreError: the table could not be written; nothing was forgotten.
            ErasureError: forgotten, but their bytes remain until the next ``forget``.
        """
        ids = list(dict.fromkeys(job_ids))
        if not ids:
            return 0
        # Under the write lock no write of these jobs is in flight; the table goes first, so
        # a job is never gone from memory but still in the table to be reloaded.
        with self._write_lock:
            stored = 0
            if self._table is not None:
                try:
                    stored = self._table.delete(ids)
                except (OSError, RuntimeError, ValueError, pa.ArrowException) as e:
                    raise ProgressStoreError(f"could not remove {len(ids)} job(s) from the jobs table") from e
            with self._lock:
                unwritten = 0
                for job_id in ids:
                    self._dirty.discard(job_id)
                    record = self._records.pop(job_id, None)
                    self._evicted.pop(job_id, None)
                    # A job written once is in the table (only forget removes rows), so
                    # only never-written ones add to the rows deleted.
                    if record is not None and (self._table is None or record.durable is None):
                        unwritten += 1
        if self._table is not None:
            self._table.erase_deleted()  # outside the lock: it waits out writes in flight
        forgotten = stored + unwritten
        if forgotten:
            logger.info("forgot %d job(s)", forgotten)
        return forgotten

    def flush(self) -> int:
        """Write every pending change (and compact the table when due); returns rows written."""
        with self._lock:
            seq = self._seq
            pending = len(self._dirty)
        self._make_durable(seq)
        if self._table is not None:
            with self._write_lock:
                self._table.optimize_if_due()
        return pending

    # ------------------------------------------------------------------- queries

    def get(self, job_id: str) -> JobProgress:
        """The job's state now (ETA and elapsed time as of this call).

        Raises:
            JobNotFoundError: unknown job.
        """
        with self._lock:
            return self._snapshot(self._require(job_id), durable=True)

    def latest_for_jd(self, jd_id: str, tenant: str = DEFAULT_TENANT) -> JobProgress | None:
        """The most recently created match job of ``tenant``'s JD ``jd_id``, or None."""

        def wanted(r: JobRecord) -> bool:
            return r.progress.kind == "match" and r.progress.jd_id == jd_id and r.progress.tenant == tenant

        with self._lock:
            cached = [r for r in self._records.values() if wanted(r)]
            if not cached and self._table is not None:
                stored = [JobRecord.from_json(state) for state in self._table.find_by_jd(jd_id)]
                cached = [r for r in stored if wanted(r)]
            if not cached:
                return None
            return self._snapshot(max(cached, key=lambda r: r.progress.created_at), durable=True)

    def list(self, kind: JobKind | None = None, limit: int = 50) -> list[JobProgress]:
        """Jobs in memory (all unfinished ones and the newest finished), newest first."""
        with self._lock:
            records = [r for r in self._records.values() if kind is None or r.progress.kind == kind]
            records.sort(key=lambda r: r.progress.created_at, reverse=True)
            return [self._snapshot(r, durable=True) for r in records[: max(0, limit)]]

    def jobs_of_cv(self, cv_id: str, tenant: str = DEFAULT_TENANT) -> list[str]:
        """Ids of every job that works on ``tenant``'s CV ``cv_id`` (in memory or only in the
        table), sorted."""
        with self._lock:
            in_memory = [j for j, r in self._records.items() if (r.progress.cv_id, r.progress.tenant) == (cv_id, tenant)]
            return sorted(in_memory + [j for j, of in self._evicted.items() if of == (cv_id, tenant)])

    # ------------------------------------------------------------------ internals

    def _lookup(self, job_id: str) -> JobRecord | None:
        record = self._records.get(job_id)
        if record is None and job_id in self._evicted:
            # A finished job evicted from memory: read back from the table.
            assert self._table is not None
            state = self._table.find(job_id)
            record = JobRecord.from_json(state) if state is not None else None
            if record is not None:
                record.last_write = self._clock()
                self._records[job_id] = record
                del self._evicted[job_id]
        return record

    def _add_job(
        self,
        job_id: str,
        kind: JobKind,
        total: int,
        *,
        total_chunks: int = 0,
        jd_id: str | None = None,
        cv_id: str | None = None,
        tenant: str = DEFAULT_TENANT,
        written: bool,
    ) -> JobRecord:
        """Register a new queued job (caller holds ``_lock``); ``written``: the caller
        writes it through now, else the flusher writes it with its next batch."""
        now = self._clock()
        progress = JobProgress(
            job_id=job_id,
            kind=kind,
            jd_id=jd_id,
            cv_id=cv_id,
            tenant=tenant,
            total=total,
            total_chunks=total_chunks,
            created_at=now_dt(now),
            updated_at=now_dt(now),
            step=UploadStep.queued if kind == "upload" else None,
        )
        record = JobRecord(progress)
        if not written:
            record.last_write = now  # so the flusher, not the next step, writes it
            record.unwritten = progress.model_copy()
        self._records[job_id] = record
        self._changed(record)
        return record

    def _set_step(
        self, record: JobRecord, step: UploadStep, stats: CVStats | None, error: _Failure
    ) -> int | None:
        """Apply one step report (caller holds ``_lock``); returns the sequence number to
        write through now, or None when the change may wait for the flusher."""
        if step == UploadStep.done:
            return self._finish(record, JobStatus.succeeded, _NO_FAILURE, stats)
        if step == UploadStep.failed:
            return self._finish(record, JobStatus.failed, error, stats)
        p = record.progress
        if p.status.is_terminal() or (p.step is not None and step.order <= p.step.order and stats is None):
            return None
        now = self._clock()
        if p.status == JobStatus.queued and step != UploadStep.queued:
            record.start(now)
        if p.step is None or step.order > p.step.order:
            p.step = step
            record.raise_percent(step.percent)
        if stats is not None:
            p.stats = stats
        record.touch(now)
        seq = self._changed(record)
        return seq if now - record.last_write >= self._coalesce_s else None

    def _finish(
        self, record: JobRecord, status: JobStatus, error: _Failure, stats: CVStats | None
    ) -> int | None:
        """End a job (caller holds ``_lock``); returns the sequence number to write
        through, or None when it had ended already (its first ending stands)."""
        p = record.progress
        if p.status.is_terminal():
            return None
        now = self._clock()
        p.status = status
        p.finished_at = now_dt(now)
        if p.started_at is not None:
            p.total_seconds = max(0.0, now - p.started_at.timestamp())
        p.eta_seconds = 0.0 if status == JobStatus.succeeded else None
        message, code, stage = error
        if message:
            p.error = clean_line(message, 2000)
        p.error_code, p.error_stage = code, stage
        if stats is not None:
            p.stats = stats
        if p.kind == "upload":
            if status == JobStatus.succeeded:
                p.step = UploadStep.done
                p.processed = max(p.processed, p.total)
            elif status == JobStatus.failed:
                p.step = UploadStep.failed
                p.processed = max(p.processed, p.total)
                p.failed = max(p.failed, p.total)
        if status == JobStatus.succeeded:
            record.raise_percent(100.0)
        record.touch(now)
        logger.info("job %s (%s) %s after %s s", p.job_id, p.kind, status.value, p.total_seconds)
        return self._changed(record)

    def _require(self, job_id: str) -> JobRecord:
        record = self._lookup(job_id)
        if record is None:
            raise JobNotFoundError(f"no job {job_id}")
        return record

    def _snapshot(self, record: JobRecord, *, durable: bool = False) -> JobProgress:
        """A copy for callers, with time-dependent fields brought up to now.

        With ``durable``, the state as last written to the table (readers get this one:
        a report still being written could be lost with the actor, and a reader must
        never see progress go backwards).
        """
        source = record.progress
        if durable and self._table is not None:
            source = record.durable or record.unwritten or record.progress
        # Shallow copy plus a new failures list: records and stats are replaced, never
        # mutated, so a deep copy (slow with 1000 failures) would buy nothing.
        p = source.model_copy(update={"failures": list(source.failures)})
        if p.status == JobStatus.running and p.started_at is not None:
            now = self._clock()
            p.total_seconds = max(0.0, now - p.started_at.timestamp())
            if p.eta_seconds is not None and record.last_chunk_at is not None:
                p.eta_seconds = max(0.0, p.eta_seconds - (now - record.last_chunk_at))
        return p

    def _changed(self, record: JobRecord) -> int:
        """Note a change (caller holds ``_lock``); returns its sequence number."""
        self._seq += 1
        self._dirty.add(record.progress.job_id)
        return self._seq

    def _make_durable(self, seq: int) -> None:
        """Return once every change up to ``seq`` is in the table (group commit).

        Whoever gets the write lock first writes every dirty job, so callers queued behind
        it usually find their change already written and return without a write.
        """
        if self._table is None:
            with self._lock:
                self._dirty.clear()
                self._durable_seq = self._seq
            return
        with self._write_lock:
            if self._durable_seq >= seq:
                return
            with self._lock:
                ids = self._dirty
                self._dirty = set()
                upto = self._seq
                batch = [self._records[i] for i in ids if i in self._records]
                # Serialized under the lock, written outside it: reports keep flowing
                # while the table write is in progress.
                payload = [r.to_row() for r in batch]
                written_states = [r.progress.model_copy(update={"failures": list(r.progress.failures)}) for r in batch]
            written = False
            try:
                self._table.upsert(payload)
                written = True
            except (OSError, RuntimeError, ValueError, pa.ArrowException) as e:
                # Lance maps object-store and commit failures onto these builtins.
                raise ProgressStoreError(f"could not write {len(payload)} job(s) to the jobs table") from e
            finally:
                if not written:
                    # Keep them dirty: the next commit or flush() retries.
                    with self._lock:
                        self._dirty |= ids
            now = self._clock()
            with self._lock:
                for r, state in zip(batch, written_states):
                    r.last_write = now
                    if r.durable is None or state.updated_at >= r.durable.updated_at:
                        r.durable = state
                self._durable_seq = max(self._durable_seq, upto)
                self._evict()

    def _evict(self) -> None:
        """Drop the oldest finished, already-written jobs past ``max_cached_jobs``."""
        excess = len(self._records) - self._max_cached
        if excess <= 0 or self._table is None:
            return
        finished = [
            r
            for r in self._records.values()
            if r.progress.status.is_terminal() and r.progress.job_id not in self._dirty
        ]
        finished.sort(key=lambda r: r.progress.updated_at)
        for r in finished[:excess]:
            del self._records[r.progress.job_id]
            self._evicted[r.progress.job_id] = (r.progress.cv_id, r.progress.tenant)

