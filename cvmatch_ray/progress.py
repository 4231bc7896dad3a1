"""Job progress: a pure book of jobs, its LanceDB write-through, and the Ray actor around it.

Three layers, in the order a report travels:

* :class:`ProgressBook` is plain Python: a dict of :class:`JobProgress` and the rules that
  keep it honest (progress never goes backwards, chunk reports are idempotent by chunk
  index, terminal states are final, ETA from the mean wall time per finished chunk). It
  knows nothing of Ray and is tested without a cluster.
* :class:`JobTable` is the durable copy: a small LanceDB table ``jobs`` in the same database
  as the rest of the store, one row per job, upserted by ``job_id``. Every change is written
  through; a restarted book reloads from it.
* :class:`ProgressBookActor` wraps the book once as a detached, restartable named actor
  (:func:`get_progress_actor`); :class:`ProgressReporter` is what a pipeline holds.

Why every method is idempotent: the actor runs with ``max_task_retries=-1``, so a call that
was in flight when the actor died is replayed on the restarted actor. Creating a job twice
returns the first, a chunk index counts once, and a finished job ignores further changes,
so a replay can never double count.
"""

from __future__ import annotations

import bisect
import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any, Literal, NamedTuple

import pyarrow as pa
import ray
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from ray.actor import ActorHandle

from cvmatch_ray.config import Settings
from cvmatch_ray.schemas import CVStats, clean_line

logger = logging.getLogger(__name__)

JobKind = Literal["match", "upload", "ingest"]

#: Failure records kept per job; ``JobProgress.failed`` still counts every failure.
MAX_FAILURES_KEPT = 1000

ACTOR_NAME = "cvmatch-progress"


# ------------------------------------------------------------------------- errors


class ProgressError(Exception):
    """Base class for progress-tracking errors."""


class JobNotFoundError(ProgressError, LookupError):
    """No job with this id, in memory or in the ``jobs`` table."""


class JobConflictError(ProgressError, ValueError):
    """A job id was reused for a job of another kind."""


class InvalidReportError(ProgressError, ValueError):
    """A progress report that cannot be true (negative counts, chunk index out of range...)."""


class ProgressStoreError(ProgressError):
    """The ``jobs`` table could not be written; the change is kept in memory and retried."""


class ProgressActorConflictError(ProgressError):
    """The named progress actor already serves another data directory."""


# ------------------------------------------------------------------------- models


class JobStatus(str, Enum):
    """Where a job is in its life; the last three are final."""

    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"

    def is_terminal(self) -> bool:
        """True for states a job never leaves."""
        return self in _TERMINAL


_TERMINAL = frozenset({JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled})


class UploadStep(str, Enum):
    """The steps one uploaded document goes through, in order."""

    queued = "queued"
    extracting = "extracting"
    standardizing = "standardizing"
    embedding = "embedding"
    storing = "storing"
    done = "done"
    failed = "failed"

    @property
    def percent(self) -> float | None:
        """Progress bar position at this step; ``None`` for ``failed`` (the bar stays put)."""
        return _STEP_PERCENT[self]

    @property
    def order(self) -> int:
        """Position in the pipeline; ``failed`` ranks last so nothing follows it."""
        return _STEP_ORDER[self]


_STEP_PERCENT: dict[UploadStep, float | None] = {
    UploadStep.queued: 0.0,
    UploadStep.extracting: 10.0,
    UploadStep.standardizing: 35.0,
    UploadStep.embedding: 70.0,
    UploadStep.storing: 90.0,
    UploadStep.done: 100.0,
    UploadStep.failed: None,
}
_STEP_ORDER = {step: i for i, step in enumerate(UploadStep)}


class StepReport(NamedTuple):
    """One upload step report, as :meth:`ProgressBook.report_steps` takes them."""

    job_id: str
    step: UploadStep
    stats: CVStats | None = None
    error: str | None = None


class FailureRecord(BaseModel):
    """One item that failed: which, at what stage, and why (no PII: ids and error codes)."""

    model_config = ConfigDict(extra="forbid")

    item_id: str = Field(max_length=200)
    stage: str = Field(max_length=60)
    reason: str = Field(max_length=500)

    @field_validator("item_id", "stage", "reason", mode="before")
    @classmethod
    def _one_line(cls, value: Any, info: ValidationInfo) -> str:
        # Reasons are often exception messages: multi-line and unbounded. Cut rather than
        # reject, so a verbose failure never turns into a failed progress report.
        return clean_line(str(value), _FAILURE_LIMITS[info.field_name])


_FAILURE_LIMITS = {"item_id": 200, "stage": 60, "reason": 500}


class JobProgress(BaseModel):
    """The state of one job, as the API returns it and as the ``jobs`` table stores it.

    ``current_chunk`` counts finished chunks (not an index: chunks finish out of order).
    ``processed`` counts finished items, failed ones included; ``failed`` counts every
    failure while ``failures`` keeps the first :data:`MAX_FAILURES_KEPT` records.
    ``seconds_per_chunk`` is the mean wall time per finished chunk since the job started,
    so it already reflects how many chunks run in parallel.
    """

    model_config = ConfigDict(extra="forbid")

    job_id: str
    kind: JobKind
    status: JobStatus = JobStatus.queued
    jd_id: str | None = None
    total: int = Field(0, ge=0)
    processed: int = Field(0, ge=0)
    failed: int = Field(0, ge=0)
    failures: list[FailureRecord] = Field(default_factory=list)
    current_chunk: int = Field(0, ge=0)
    total_chunks: int = Field(0, ge=0)
    percent: float = Field(0.0, ge=0, le=100)
    seconds_per_chunk: float | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    updated_at: datetime
    total_seconds: float | None = None
    eta_seconds: float | None = None
    step: UploadStep | None = None
    stats: CVStats | None = None
    error: str | None = None


# ---------------------------------------------------------------- finished chunk set


class _ChunkSet:
    """Finished chunk indices as sorted, disjoint, inclusive ranges.

    Chunks finish roughly in order, so this stays a handful of ranges where a set of ints
    would grow with the job; the ranges are also what gets persisted.
    """

    def __init__(self, ranges: Iterable[Sequence[int]] = ()) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []
        self.count = 0
        for start, end in ranges:
            for i in range(int(start), int(end) + 1):
                self.add(i)

    def __contains__(self, index: int) -> bool:
        k = bisect.bisect_right(self._starts, index) - 1
        return k >= 0 and self._ends[k] >= index

    def add(self, index: int) -> bool:
        """Add ``index``; False if it was already there."""
        if index in self:
            return False
        k = bisect.bisect_right(self._starts, index)
        joins_left = k > 0 and self._ends[k - 1] == index - 1
        joins_right = k < len(self._starts) and self._starts[k] == index + 1
        if joins_left and joins_right:
            self._ends[k - 1] = self._ends[k]
            del self._starts[k]
            del self._ends[k]
        elif joins_left:
            self._ends[k - 1] = index
        elif joins_right:
            self._starts[k] = index
        else:
            self._starts.insert(k, index)
            self._ends.insert(k, index)
        self.count += 1
        return True

    def ranges(self) -> list[list[int]]:
        """The set as ``[[start, end], ...]`` (inclusive), for JSON."""
        return [[s, e] for s, e in zip(self._starts, self._ends, strict=True)]


class _Record:
    """A job plus the bookkeeping that is persisted but not part of the public model."""

    __slots__ = ("progress", "chunks", "last_chunk_at", "last_write", "durable", "unwritten")

    def __init__(self, progress: JobProgress, chunks: _ChunkSet | None = None, last_chunk_at: float | None = None):
        self.progress = progress
        self.chunks = chunks or _ChunkSet()
        # Epoch seconds of the latest counted chunk: the ETA is measured from there.
        self.last_chunk_at = last_chunk_at
        # Clock time of the last write of this job to the table (0 = never written).
        self.last_write = 0.0
        # The state as last written to the table (what a restarted actor would reload):
        # readers see this, so nothing they were shown can be lost with the actor.
        self.durable: JobProgress | None = None
        # What readers see of a job created without a write, until its first write: the
        # job as created (the live state could be shown and then taken back by a write
        # of an earlier one).
        self.unwritten: JobProgress | None = None

    def to_row(self) -> dict[str, Any]:
        """The ``jobs`` table row: filterable columns plus the whole state as JSON."""
        p = self.progress
        state = {
            "v": 1,
            "progress": p.model_dump(mode="json"),
            "done_chunks": self.chunks.ranges(),
            "last_chunk_at": self.last_chunk_at,
        }
        return {
            "job_id": p.job_id,
            "kind": p.kind,
            "jd_id": p.jd_id,
            "status": p.status.value,
            "updated_at": p.updated_at,
            "state_json": json.dumps(state),
        }

    @classmethod
    def from_json(cls, text: str) -> _Record:
        data = json.loads(text)
        record = cls(
            JobProgress.model_validate(data["progress"]),
            _ChunkSet(data.get("done_chunks", ())),
            data.get("last_chunk_at"),
        )
        record.durable = record.progress.model_copy(update={"failures": list(record.progress.failures)})
        return record


# ------------------------------------------------------------------ durable table


def resolve_data_dir(uri: str) -> str:
    """Make a local LanceDB path absolute; object-store URIs (``s3://``...) pass through.

    The actor may run with another working directory than the caller, so a relative
    ``./cvmatch_data`` must be pinned to the caller's meaning before it travels.
    """
    if "://" in uri:
        return uri
    return os.path.abspath(os.path.expanduser(uri))


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class JobTable:
    """The ``jobs`` LanceDB table: one row per job, upserted by ``job_id``.

    Columns other than ``state_json`` are there to filter on without parsing JSON.
    """

    NAME = "jobs"
    SCHEMA = pa.schema(
        [
            pa.field("job_id", pa.string(), nullable=False),
            pa.field("kind", pa.string()),
            pa.field("jd_id", pa.string()),
            pa.field("status", pa.string()),
            pa.field("updated_at", pa.timestamp("us", tz="UTC")),
            pa.field("state_json", pa.string()),
        ]
    )

    def __init__(
        self,
        uri: str,
        *,
        optimize_every: int = 500,
        keep_versions_for: timedelta = timedelta(minutes=10),
    ) -> None:
        """Open (or create) the table.

        Args:
            uri: LanceDB database URI (a folder, or ``s3://...``); made absolute if local.
            optimize_every: compact and prune old versions after this many writes. Each
                upsert adds a table version and small files; left alone, reads slow down.
            keep_versions_for: how old a version must be before it is pruned.
        """
        # Imported here, not at module import: lancedb starts a runtime that warns when a
        # process forks afterwards, and drivers that only hold a reporter never need it.
        import lancedb

        self.uri = resolve_data_dir(uri)
        self._db = lancedb.connect(self.uri)
        self._table = self._db.create_table(self.NAME, schema=self.SCHEMA, exist_ok=True)
        self._optimize_every = optimize_every
        self._keep_versions_for = keep_versions_for
        self._writes_since_optimize = 0

    def upsert(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert or replace ``rows`` (from ``_Record.to_row``) in one merge."""
        if not rows:
            return
        data = pa.Table.from_pylist(rows, schema=self.SCHEMA)
        (
            self._table.merge_insert("job_id")
            .when_matched_update_all()
            .when_not_matched_insert_all()
            .execute(data)
        )
        self._writes_since_optimize += 1

    def optimize_if_due(self) -> bool:
        """Compact the table when enough writes have piled up; True if it did."""
        if self._writes_since_optimize < self._optimize_every:
            return False
        self._table.optimize(cleanup_older_than=self._keep_versions_for)
        self._writes_since_optimize = 0
        return True

    def load_all(self) -> list[_Record]:
        """Every stored job."""
        states = self._table.to_arrow().column("state_json").to_pylist()
        return [_Record.from_json(s) for s in states]

    def find(self, job_id: str) -> _Record | None:
        """The stored job ``job_id``, or None."""
        rows = self._query(f"job_id = {_sql_str(job_id)}")
        return rows[0] if rows else None

    def find_by_jd(self, jd_id: str) -> list[_Record]:
        """Stored match jobs of one JD."""
        return self._query(f"jd_id = {_sql_str(jd_id)}")

    def delete(self, job_ids: Sequence[str]) -> int:
        """Remove the rows of ``job_ids`` in one commit; returns how many there were."""
        if not job_ids:
            return 0
        result = self._table.delete(f"job_id IN ({', '.join(_sql_str(i) for i in job_ids)})")
        self._writes_since_optimize += 1
        return result.num_deleted_rows

    def _query(self, where: str) -> list[_Record]:
        table = self._table.search().where(where).select(["state_json"]).to_arrow()
        return [_Record.from_json(s) for s in table.column("state_json").to_pylist()]


# -------------------------------------------------------------------- the book


def _now_dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


class ProgressBook:
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
        self._records: dict[str, _Record] = {}
        # Ids of the jobs evicted from memory, in the table only: a lookup of any other id
        # that is not in memory is answered without a table query (every new job's create
        # looks its id up first).
        self._evicted: set[str] = set()
        # Queued jobs that workers may claim (``enqueue``/``claim_queued``), oldest first,
        # by kind: job id -> when it was put in line (``time.monotonic``). With
        # ``_last_enqueue`` (by kind) it tells a claimer whether a burst is still arriving.
        # ``_queue_changed`` wakes waiting claimers.
        self._claimable: dict[str, dict[str, float]] = {}
        self._last_enqueue: dict[str, float] = {}
        self._queue_changed = threading.Condition(self._lock)
        self._dirty: set[str] = set()
        self._seq = 0  # bumped by every change
        self._durable_seq = 0  # every change up to here is in the table
        if table is not None:
            for record in sorted(table.load_all(), key=lambda r: r.progress.created_at):
                self._records[record.progress.job_id] = record
                record.last_write = self._clock()
                if record.progress.kind == "upload" and record.progress.status == JobStatus.queued:
                    # Waiting for a worker when the book stopped: claimable again.
                    self._claimable.setdefault("upload", {})[record.progress.job_id] = float("-inf")
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
        durable: bool = True,
    ) -> JobProgress:
        """Register a queued job; creating an existing job returns it unchanged.

        Args:
            job_id: caller-chosen unique id.
            kind: "match", "upload" or "ingest".
            total: items the job will process (CVs to score, documents to ingest; 1 for an upload).
            total_chunks: chunks the items are split into (0 if not chunked).
            jd_id: the JD a match job scores against.
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
            record = self._add_job(job_id, kind, total, total_chunks=total_chunks, jd_id=jd_id, written=durable)
            seq = self._seq
            result = self._snapshot(record)
        if durable:
            self._make_durable(seq)
        return result

    def enqueue(self, kind: JobKind, job_ids: Sequence[str], *, total: int = 1) -> int:
        """Create queued jobs that workers take with :meth:`claim_queued`, oldest first.

        Not written through (a caller that enqueues keeps its own durable note of the
        work, as an accepted upload's blob is); the book writes them with its next batch
        of changes. Ids that exist already are left as they are.

        Returns:
            How many jobs were created.
        """
        created = 0
        with self._lock:
            queue = self._claimable.setdefault(kind, {})
            now = time.monotonic()
            for job_id in job_ids:
                if self._lookup(job_id) is not None:
                    continue
                self._add_job(job_id, kind, total, written=False)
                queue[job_id] = now
                created += 1
            if created:
                self._last_enqueue[kind] = now
                self._queue_changed.notify_all()
        return created

    def claim_queued(
        self,
        kind: JobKind,
        limit: int,
        *,
        wait_s: float = 0.0,
        settle_s: float = 0.0,
        max_delay_s: float = 2.0,
    ) -> list[str]:
        """Take up to ``limit`` queued jobs of ``kind`` (oldest first) and mark them running.

        Each job is handed to one caller. With ``wait_s``, waits that long for work when
        there is none (a long poll: workers learn of new work at once without polling).

        With ``settle_s``, work is handed out only once no job has been put in line for
        ``settle_s`` (a burst of uploads has stopped arriving) or the oldest job has waited
        ``max_delay_s``: on a machine that both accepts and processes uploads, the
        processing then starts after a burst instead of competing with it for the CPU.
        A backlog is never held back (its oldest job has waited long enough).

        Returns:
            The ids of the jobs taken (empty when none came within ``wait_s``).
        """
        deadline = time.monotonic() + max(0.0, wait_s)
        with self._lock:
            queue = self._claimable.setdefault(kind, {})
            while True:
                now_mono = time.monotonic()
                ready_in = self._ready_in(kind, queue, now_mono, settle_s, max_delay_s)
                if ready_in <= 0:
                    break
                left = deadline - now_mono
                if left <= 0:
                    return []
                self._queue_changed.wait(min(left, ready_in))
            now = self._clock()
            taken: list[str] = []
            while queue and len(taken) < limit:
                job_id = next(iter(queue))
                del queue[job_id]
                record = self._records.get(job_id)
                if record is None or record.progress.status != JobStatus.queued:
                    continue  # forgotten or finished meanwhile
                self._start(record, now)
                self._changed(record)
                taken.append(job_id)
        return taken

    def _ready_in(
        self, kind: str, queue: dict[str, float], now: float, settle_s: float, max_delay_s: float
    ) -> float:
        """Seconds until ``queue`` may be handed out (<= 0: now; inf: it is empty)."""
        if not queue:
            return math.inf
        if settle_s <= 0:
            return 0.0
        quiet_in = self._last_enqueue.get(kind, -math.inf) + settle_s - now
        oldest_in = next(iter(queue.values())) + max_delay_s - now
        return min(quiet_in, oldest_in)

    def requeue_stale(self, kind: JobKind, older_than_s: float, *, limit: int = 200) -> list[str]:
        """Put running jobs of ``kind`` that have not changed for ``older_than_s`` back in line.

        Whoever was processing them is presumed dead; a worker claims them again with
        :meth:`claim_queued`. Their step and percent stay (progress never goes back).

        Returns:
            The ids of the jobs put back, longest stalled first.
        """
        with self._lock:
            now = self._clock()
            cutoff = _now_dt(now - older_than_s)
            # Unfinished jobs are never evicted: memory holds every candidate.
            stale = [
                r
                for r in self._records.values()
                if r.progress.kind == kind and r.progress.status == JobStatus.running and r.progress.updated_at <= cutoff
            ]
            stale.sort(key=lambda r: r.progress.updated_at)
            queue = self._claimable.setdefault(kind, {})
            for r in stale[: max(0, limit)]:
                r.progress.status = JobStatus.queued
                self._touch(r.progress, now)
                self._changed(r)
                queue[r.progress.job_id] = float("-inf")  # long overdue: first in line
            if stale:
                self._queue_changed.notify_all()
            return [r.progress.job_id for r in stale[: max(0, limit)]]

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
            self._start(record, self._clock())
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
        records = [f if isinstance(f, FailureRecord) else FailureRecord.model_validate(f) for f in failures]
        if chunk_index < 0 or processed < 0 or len(records) > processed:
            raise InvalidReportError(
                f"job {job_id}: chunk {chunk_index} reports {processed} processed, {len(records)} failures"
            )
        with self._lock:
            record = self._require(job_id)
            p = record.progress
            if p.status.is_terminal():
                return self._snapshot(record)
            if p.total_chunks and chunk_index >= p.total_chunks:
                raise InvalidReportError(f"job {job_id}: chunk {chunk_index} of {p.total_chunks}")
            if not record.chunks.add(chunk_index):
                logger.debug("job %s: chunk %d already counted", job_id, chunk_index)
                return self._snapshot(record)
            now = self._clock()
            if p.status == JobStatus.queued:
                self._start(record, now)
            p.processed += processed
            p.failed += len(records)
            room = MAX_FAILURES_KEPT - len(p.failures)
            if room > 0:
                p.failures.extend(records[:room])
            p.current_chunk = record.chunks.count
            record.last_chunk_at = now
            self._update_rate(record, now)
            self._raise_percent(p, self._chunked_percent(p))
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
    ) -> JobProgress:
        """Move an upload to ``step``; an earlier step than the current one is ignored.

        ``done`` finishes the job as succeeded and ``failed`` as failed (with ``error``).
        Intermediate steps are coalesced (see the class docstring).

        Raises:
            JobNotFoundError: unknown job.
        """
        with self._lock:
            record = self._require(job_id)
            seq = self._set_step(record, UploadStep(step), stats, error)
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
                seq = self._set_step(record, UploadStep(report.step), report.stats, report.error)
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
            seq = self._finish(record, status, error, stats)
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
        job raises :class:`JobNotFoundError`.

        Returns:
            How many of the jobs existed.

        Raises:
            ProgressStoreError: the table could not be written; nothing was forgotten.
        """
        ids = list(dict.fromkeys(job_ids))
        if not ids:
            return 0
        # Under the write lock, no write of these jobs is in flight; the table goes first,
        # so a job is never gone from memory but still in the table to be reloaded.
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
                    self._evicted.discard(job_id)
                    # A job written once is in the table (only forget removes rows), so
                    # only never-written ones add to the rows deleted.
                    if record is not None and (self._table is None or record.durable is None):
                        unwritten += 1
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

    def latest_for_jd(self, jd_id: str) -> JobProgress | None:
        """The most recently created match job of ``jd_id``, or None."""
        with self._lock:
            cached = [r for r in self._records.values() if r.progress.kind == "match" and r.progress.jd_id == jd_id]
            if not cached and self._table is not None:
                cached = [r for r in self._table.find_by_jd(jd_id) if r.progress.kind == "match"]
            if not cached:
                return None
            return self._snapshot(max(cached, key=lambda r: r.progress.created_at), durable=True)

    def list(self, kind: JobKind | None = None, limit: int = 50) -> list[JobProgress]:
        """Jobs in memory (all unfinished ones and the newest finished), newest first."""
        with self._lock:
            records = [r for r in self._records.values() if kind is None or r.progress.kind == kind]
            records.sort(key=lambda r: r.progress.created_at, reverse=True)
            return [self._snapshot(r, durable=True) for r in records[: max(0, limit)]]

    def job_ids(self, prefix: str) -> list[str]:
        """Ids of every job whose id starts with ``prefix`` (in memory or only in the table), sorted."""
        with self._lock:
            return sorted(j for ids in (self._records, self._evicted) for j in ids if j.startswith(prefix))

    # ------------------------------------------------------------------ internals

    def _lookup(self, job_id: str) -> _Record | None:
        record = self._records.get(job_id)
        if record is None and job_id in self._evicted:
            # A finished job evicted from memory: read back from the table.
            assert self._table is not None
            record = self._table.find(job_id)
            if record is not None:
                record.last_write = self._clock()
                self._records[job_id] = record
                self._evicted.discard(job_id)
        return record

    def _add_job(
        self,
        job_id: str,
        kind: JobKind,
        total: int,
        *,
        total_chunks: int = 0,
        jd_id: str | None = None,
        written: bool,
    ) -> _Record:
        """Register a new queued job (caller holds ``_lock``); ``written``: the caller
        writes it through now, else the flusher writes it with its next batch."""
        now = self._clock()
        progress = JobProgress(
            job_id=job_id,
            kind=kind,
            jd_id=jd_id,
            total=total,
            total_chunks=total_chunks,
            created_at=_now_dt(now),
            updated_at=_now_dt(now),
            step=UploadStep.queued if kind == "upload" else None,
        )
        record = _Record(progress)
        if not written:
            record.last_write = now  # so the flusher, not the next step, writes it
            record.unwritten = progress.model_copy()
        self._records[job_id] = record
        self._changed(record)
        return record

    def _set_step(
        self, record: _Record, step: UploadStep, stats: CVStats | None, error: str | None
    ) -> int | None:
        """Apply one step report (caller holds ``_lock``); returns the sequence number to
        write through now, or None when the change may wait for the flusher."""
        if step == UploadStep.done:
            return self._finish(record, JobStatus.succeeded, None, stats)
        if step == UploadStep.failed:
            return self._finish(record, JobStatus.failed, error, stats)
        p = record.progress
        if p.status.is_terminal() or (p.step is not None and step.order <= p.step.order and stats is None):
            return None
        now = self._clock()
        if p.status == JobStatus.queued and step != UploadStep.queued:
            self._start(record, now)
        if p.step is None or step.order > p.step.order:
            p.step = step
            self._raise_percent(p, step.percent)
        if stats is not None:
            p.stats = stats
        self._touch(p, now)
        seq = self._changed(record)
        return seq if now - record.last_write >= self._coalesce_s else None

    def _finish(
        self, record: _Record, status: JobStatus, error: str | None, stats: CVStats | None
    ) -> int | None:
        """End a job (caller holds ``_lock``); returns the sequence number to write
        through, or None when it had ended already (its first ending stands)."""
        p = record.progress
        if p.status.is_terminal():
            return None
        now = self._clock()
        p.status = status
        p.finished_at = _now_dt(now)
        if p.started_at is not None:
            p.total_seconds = max(0.0, now - p.started_at.timestamp())
        p.eta_seconds = 0.0 if status == JobStatus.succeeded else None
        if error:
            p.error = clean_line(error, 2000)
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
            self._raise_percent(p, 100.0)
        self._touch(p, now)
        logger.info("job %s (%s) %s after %s s", p.job_id, p.kind, status.value, p.total_seconds)
        return self._changed(record)

    def _require(self, job_id: str) -> _Record:
        record = self._lookup(job_id)
        if record is None:
            raise JobNotFoundError(f"no job {job_id}")
        return record

    def _start(self, record: _Record, now: float) -> None:
        record.progress.status = JobStatus.running
        record.progress.started_at = _now_dt(now)
        self._touch(record.progress, now)

    @staticmethod
    def _touch(p: JobProgress, now: float) -> None:
        p.updated_at = _now_dt(now)

    def _update_rate(self, record: _Record, now: float) -> None:
        p = record.progress
        self._touch(p, now)
        if p.started_at is None or record.chunks.count == 0:
            return
        elapsed = max(0.0, now - p.started_at.timestamp())
        p.total_seconds = elapsed
        p.seconds_per_chunk = elapsed / record.chunks.count
        if p.total_chunks:
            p.eta_seconds = p.seconds_per_chunk * max(0, p.total_chunks - record.chunks.count)
        elif p.total and p.processed:
            p.eta_seconds = elapsed / p.processed * max(0, p.total - p.processed)

    @staticmethod
    def _chunked_percent(p: JobProgress) -> float:
        if p.total:
            return 100.0 * p.processed / p.total
        if p.total_chunks:
            return 100.0 * p.current_chunk / p.total_chunks
        return 0.0

    @staticmethod
    def _raise_percent(p: JobProgress, value: float | None) -> None:
        if value is not None:
            p.percent = round(min(100.0, max(p.percent, value)), 2)

    def _snapshot(self, record: _Record, *, durable: bool = False) -> JobProgress:
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

    def _changed(self, record: _Record) -> int:
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
            self._evicted.add(r.progress.job_id)


# ------------------------------------------------------------------- Ray actor


class ProgressBookActor:
    """The progress book as a long-lived actor (see :func:`get_progress_actor`).

    Runs threaded (``max_concurrency``) so concurrent reports share table writes; a
    background thread writes coalesced changes every ``flush_interval_s``.
    """

    def __init__(self, data_dir: str, *, flush_interval_s: float = 0.5) -> None:
        self._data_dir = resolve_data_dir(data_dir)
        self._book = ProgressBook(JobTable(self._data_dir), coalesce_s=flush_interval_s)
        self._interval = flush_interval_s
        self._stop = threading.Event()
        self._flusher = threading.Thread(target=self._flush_loop, name="cvmatch-progress-flush", daemon=True)
        self._flusher.start()

    def _flush_loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._book.flush()
            except ProgressStoreError as e:
                # Changes stay dirty and are retried on the next tick; a dead loop would
                # silently stop persisting, so log and carry on.
                logger.warning("progress flush failed: %s", e.__cause__ or e)

    def data_dir(self) -> str:
        """The LanceDB URI this actor writes to."""
        return self._data_dir

    def create(
        self,
        job_id: str,
        kind: JobKind,
        total: int,
        *,
        total_chunks: int = 0,
        jd_id: str | None = None,
        durable: bool = True,
    ) -> JobProgress:
        """See :meth:`ProgressBook.create`."""
        return self._book.create(job_id, kind, total, total_chunks=total_chunks, jd_id=jd_id, durable=durable)

    def start(self, job_id: str) -> JobProgress:
        """See :meth:`ProgressBook.start`."""
        return self._book.start(job_id)

    def chunk_done(
        self, job_id: str, chunk_index: int, processed: int, failures: Sequence[FailureRecord | Mapping[str, Any]] = ()
    ) -> JobProgress:
        """See :meth:`ProgressBook.chunk_done`."""
        return self._book.chunk_done(job_id, chunk_index, processed, failures)

    def set_step(
        self, job_id: str, step: UploadStep, stats: CVStats | None = None, *, error: str | None = None
    ) -> JobProgress:
        """See :meth:`ProgressBook.set_step`."""
        return self._book.set_step(job_id, step, stats, error=error)

    def report_steps(self, reports: Sequence[StepReport]) -> int:
        """See :meth:`ProgressBook.report_steps`."""
        return self._book.report_steps(reports)

    def finish(
        self, job_id: str, status: JobStatus, error: str | None = None, *, stats: CVStats | None = None
    ) -> JobProgress:
        """See :meth:`ProgressBook.finish`."""
        return self._book.finish(job_id, status, error, stats=stats)

    def cancel(self, job_id: str) -> JobProgress:
        """See :meth:`ProgressBook.cancel`."""
        return self._book.cancel(job_id)

    def get(self, job_id: str) -> JobProgress:
        """See :meth:`ProgressBook.get`."""
        return self._book.get(job_id)

    def latest_for_jd(self, jd_id: str) -> JobProgress | None:
        """See :meth:`ProgressBook.latest_for_jd`."""
        return self._book.latest_for_jd(jd_id)

    def list(self, kind: JobKind | None = None, limit: int = 50) -> list[JobProgress]:
        """See :meth:`ProgressBook.list`."""
        return self._book.list(kind, limit)

    def enqueue(self, kind: JobKind, job_ids: Sequence[str], *, total: int = 1) -> int:
        """See :meth:`ProgressBook.enqueue`."""
        return self._book.enqueue(kind, job_ids, total=total)

    def claim_queued(
        self, kind: JobKind, limit: int, *, wait_s: float = 0.0, settle_s: float = 0.0, max_delay_s: float = 2.0
    ) -> list[str]:
        """See :meth:`ProgressBook.claim_queued` (a long poll holds one of the actor's threads)."""
        return self._book.claim_queued(kind, limit, wait_s=wait_s, settle_s=settle_s, max_delay_s=max_delay_s)

    def requeue_stale(self, kind: JobKind, older_than_s: float, *, limit: int = 200) -> list[str]:
        """See :meth:`ProgressBook.requeue_stale`."""
        return self._book.requeue_stale(kind, older_than_s, limit=limit)

    def known(self, job_ids: Sequence[str]) -> list[str]:
        """See :meth:`ProgressBook.known`."""
        return self._book.known(job_ids)

    def forget(self, job_ids: Sequence[str]) -> int:
        """See :meth:`ProgressBook.forget`."""
        return self._book.forget(job_ids)

    def job_ids(self, prefix: str) -> list[str]:
        """See :meth:`ProgressBook.job_ids`."""
        return self._book.job_ids(prefix)

    def flush(self) -> int:
        """See :meth:`ProgressBook.flush`."""
        return self._book.flush()


# Wrapping a class does not touch the cluster; doing it once means the class is exported
# to the cluster once per process instead of on every get_progress_actor() call.
ProgressActor = ray.remote(ProgressBookActor)

_getter_lock = threading.Lock()
_actor_data_dirs: dict[str, str] = {}  # actor id -> its data_dir, asked once


def get_progress_actor(settings: Settings, *, max_concurrency: int = 32) -> ActorHandle:
    """Get the cluster's progress actor, creating it (and reloading its jobs) if needed.

    Cheap to call repeatedly: a name lookup in the GCS; the data directory is checked once
    per actor per process.

    Args:
        settings: ``data_dir`` (the LanceDB URI) and ``ray_namespace`` are used.
        max_concurrency: threads serving calls; concurrent chunk reports share one write.

    Raises:
        RuntimeError: Ray is not initialized (the caller owns ``ray.init``).
        ProgressActorConflictError: the actor already runs for another ``data_dir``.
    """
    if not ray.is_initialized():
        raise RuntimeError("ray.init() must be called before get_progress_actor()")
    data_dir = resolve_data_dir(settings.data_dir)
    for attempt in range(_GET_ATTEMPTS):
        try:
            return _get_or_create(settings.ray_namespace, data_dir, max_concurrency)
        except ray.exceptions.RayActorError:
            # The name still pointed at an actor killed for good (ray.kill(no_restart=True)
            # is asynchronous); once the GCS drops it, the next try creates a new one.
            if attempt == _GET_ATTEMPTS - 1:
                raise
            logger.info("progress actor is gone; creating it again")
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


_GET_ATTEMPTS = 10


def _get_or_create(namespace: str, data_dir: str, max_concurrency: int) -> ActorHandle:
    with _getter_lock:
        handle = ProgressActor.options(
            name=ACTOR_NAME,
            namespace=namespace,
            get_if_exists=True,
            lifetime="detached",
            num_cpus=0,
            # On the head node: a detached actor on an autoscaled worker would be killed
            # (and restarted elsewhere) every time that node scales down.
            resources={"node:__internal_head__": 0.001},
            # Escape any placement group the caller runs in.
            scheduling_strategy="DEFAULT",
            max_restarts=-1,
            max_task_retries=-1,
            max_concurrency=max_concurrency,
        ).remote(data_dir)
        actor_id = handle._actor_id.hex()
        if actor_id not in _actor_data_dirs:
            # Also waits for __init__ (the reload), so table errors surface here, not later.
            _actor_data_dirs[actor_id] = ray.get(handle.data_dir.remote())
    if _actor_data_dirs[actor_id] != data_dir:
        raise ProgressActorConflictError(f"actor {ACTOR_NAME!r} in namespace {namespace!r} serves another data_dir")
    return handle


class ProgressReporter:
    """What a pipeline holds to report one job's progress; picklable into Ray tasks.

    Steps and ``start`` are fire-and-forget. Chunk reports are awaited by default (the
    reply carries the status, so a pipeline notices a cancel); ``wait=False`` sends them
    without waiting. :meth:`finish` first waits for everything sent before it: the actor
    is threaded, so only waiting keeps a late chunk from arriving after the job ended.
    """

    def __init__(self, actor: ActorHandle, job_id: str, *, timeout_s: float = 120.0) -> None:
        self.actor = actor
        self.job_id = job_id
        self.timeout_s = timeout_s
        self._pending: list[ray.ObjectRef] = []
        self._last: JobProgress | None = None

    def __getstate__(self) -> dict[str, Any]:
        # Refs in flight belong to the process that sent them.
        return {"actor": self.actor, "job_id": self.job_id, "timeout_s": self.timeout_s}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["actor"], state["job_id"], timeout_s=state["timeout_s"])

    @property
    def cancelled(self) -> bool:
        """True once a reply has shown the job cancelled."""
        return self._last is not None and self._last.status == JobStatus.cancelled

    def start(self) -> None:
        """Mark the job running (fire-and-forget)."""
        self._send(self.actor.start.remote(self.job_id))

    def set_step(self, step: UploadStep, stats: CVStats | None = None, *, error: str | None = None) -> None:
        """Move an upload to ``step`` (fire-and-forget)."""
        self._send(self.actor.set_step.remote(self.job_id, step, stats, error=error))

    def chunk_done(
        self,
        chunk_index: int,
        processed: int,
        failures: Sequence[FailureRecord | Mapping[str, Any]] = (),
        *,
        wait: bool = True,
    ) -> JobProgress | None:
        """Report a finished chunk; with ``wait`` returns the job state once it is durable."""
        ref = self.actor.chunk_done.remote(self.job_id, chunk_index, processed, list(failures))
        if not wait:
            self._send(ref)
            return None
        return self._await(ref)

    def finish(
        self, status: JobStatus, error: str | None = None, *, stats: CVStats | None = None
    ) -> JobProgress | None:
        """Wait for earlier reports, then end the job; returns its final state."""
        self.drain()
        return self._await(self.actor.finish.remote(self.job_id, status, error, stats=stats))

    def get(self) -> JobProgress:
        """The job's state now."""
        progress = ray.get(self.actor.get.remote(self.job_id), timeout=self.timeout_s)
        self._last = progress
        return progress

    def drain(self) -> None:
        """Wait for every fire-and-forget report sent so far."""
        pending, self._pending = self._pending, []
        for ref in pending:
            self._await(ref)

    def _send(self, ref: ray.ObjectRef) -> None:
        self._pending.append(ref)
        if len(self._pending) >= 64:
            # Bound the list: collect what has already landed.
            ready, self._pending = ray.wait(self._pending, num_returns=len(self._pending), timeout=0)
            for done in ready:
                self._await(done)

    def _await(self, ref: ray.ObjectRef) -> JobProgress | None:
        try:
            progress = ray.get(ref, timeout=self.timeout_s)
        except ProgressStoreError as e:
            # The actor kept the change in memory and retries the write; losing the
            # pipeline over a progress-store hiccup would be worse than a stale bar.
            logger.warning("job %s: progress not yet durable: %s", self.job_id, e)
            return None
        if progress is not None:
            self._last = progress
        return progress
