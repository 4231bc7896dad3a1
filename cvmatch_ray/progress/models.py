"""Job progress as the API shows it and the ``jobs`` table stores it: statuses, upload steps, errors."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from cvmatch_ray.config import DEFAULT_TENANT
from cvmatch_ray.schemas import CVStats, clean_line

JobKind = Literal["match", "upload", "ingest"]

#: Failure records kept per job; ``JobProgress.failed`` still counts every failure.
MAX_FAILURES_KEPT = 1000


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
    error_code: str | None = None
    error_stage: str | None = None


class QueuedJob(NamedTuple):
    """A job in a work queue: its id, the CV it works on and the tenant whose data that is."""

    job_id: str
    cv_id: str | None
    tenant: str = DEFAULT_TENANT


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
    so it already reflects how many chunks run in parallel. A job names what it works on:
    ``jd_id`` for a match job, ``cv_id`` for an upload (never encoded in ``job_id``), and
    the ``tenant`` whose data that is: the API answers a job to that tenant's keys only.
    """

    model_config = ConfigDict(extra="forbid")

    job_id: str
    kind: JobKind
    status: JobStatus = JobStatus.queued
    jd_id: str | None = None
    cv_id: str | None = None
    tenant: str = DEFAULT_TENANT
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
    error_code: str | None = Field(None, description="Why the job failed, as a code of ``errors.ErrorCode``.")
    error_stage: str | None = Field(None, description="Where it failed, as a ``errors.Stage``.")
    attempts: int = Field(0, ge=0, description="Times a worker claimed this queued job.")

