"""Request and response bodies of the HTTP API.

Stored documents are answered with the shared schemas (``CVPublic``, ``JDPublic``,
``MatchResult``); the models here are the API's own envelopes around them. Requests are
strict (``extra="forbid"``), so a misspelt field is a 422, not a silently ignored option.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from cvmatch_ray.progress import FailureRecord, JobProgress, JobStatus, UploadStep
from cvmatch_ray.schemas import CVStats, JDProfile, MatchResult

# Chunks of more CVs than this would hold one Ray task's memory hostage for little gain.
MAX_CHUNK_SIZE = 10_000
# Failure records returned with a progress answer; the job keeps more (see progress.py).
MAX_FAILURES_SHOWN = 100


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorDetail(BaseModel):
    """Why a document was refused: a stable code, the stage that refused it, a reason."""

    code: str
    stage: str | None = None
    message: str


class ErrorResponse(BaseModel):
    """The body of every 4xx/5xx answer."""

    detail: ErrorDetail | str | list


# ------------------------------------------------------------------------ uploads


class UploadAccepted(BaseModel):
    """A CV upload accepted for background processing (HTTP 202)."""

    cv_id: str = Field(description="Content-derived id: the same bytes always get the same id.")
    status: UploadStep = Field(description="Where the upload is now; 'done' for a CV already stored.")
    duplicate: bool = Field(False, description="These bytes were uploaded before; nothing new was started.")
    error: str | None = Field(None, description="Why an earlier upload of these bytes failed.")


class UploadProgress(BaseModel):
    """Where one CV upload is: its step, a percentage and, once standardized, its stats."""

    cv_id: str
    job_id: str | None = Field(None, description="The progress job of the latest upload of these bytes.")
    status: JobStatus
    step: UploadStep
    percent: float = Field(ge=0, le=100)
    stats: CVStats | None = None
    error: str | None = None
    error_code: str | None = Field(None, description="Why the upload failed (an error code), when it did.")
    error_stage: str | None = Field(None, description="The step it failed at, when it did.")
    created_at: datetime | None = None
    updated_at: datetime | None = None
    total_seconds: float | None = None

    @classmethod
    def of(cls, cv_id: str, job: JobProgress) -> UploadProgress:
        """The public view of an upload job."""
        return cls(
            cv_id=cv_id,
            job_id=job.job_id,
            status=job.status,
            step=job.step or UploadStep.queued,
            percent=job.percent,
            stats=job.stats,
            # "code: message", what a client reads first; the code alone is error_code.
            error=f"{job.error_code}: {job.error}" if job.error_code and job.error else job.error,
            error_code=job.error_code,
            error_stage=job.error_stage,
            created_at=job.created_at,
            updated_at=job.updated_at,
            total_seconds=job.total_seconds,
        )


class JDTextIn(_Request):
    """A job description given as text."""

    text: str = Field(min_length=1, max_length=1_000_000, description="The job description, plain text.")
    filename: str | None = Field(None, max_length=255, description="A name to keep with it.")


class JDAccepted(BaseModel):
    """A stored job description (HTTP 200)."""

    jd_id: str
    profile: JDProfile
    duplicate: bool = Field(False, description="This JD was stored before; it was not processed again.")


# ----------------------------------------------------------------------- matching


class MatchRequest(_Request):
    """Score stored CVs against a stored JD, in chunks, in the background."""

    jd_id: str = Field(min_length=1, max_length=64)
    cv_ids: list[str] | None = Field(
        None, description="CVs to score; omitted = every stored CV. Unknown ids fail one by one."
    )
    chunk_size: int = Field(50, gt=0, le=MAX_CHUNK_SIZE, description="CVs per chunk (per Ray task).")
    top_k: int | None = Field(None, gt=0, description="Default number of results /api/match-results returns.")


class MatchAccepted(BaseModel):
    """A matching job started (HTTP 202)."""

    job_id: str
    jd_id: str
    status: JobStatus


class MatchProgress(BaseModel):
    """Where a matching job is, chunk by chunk."""

    job_id: str
    jd_id: str | None
    status: JobStatus
    current_chunk: int = Field(description="Chunks finished so far.")
    total_chunks: int
    percent: float
    total: int = Field(description="CVs in the job.")
    processed: int = Field(description="CVs finished, failed ones included.")
    failed: int
    seconds_per_chunk: float | None
    total_seconds: float | None
    eta_seconds: float | None
    error: str | None = None
    failures: list[FailureRecord] = Field(default_factory=list, description=f"At most {MAX_FAILURES_SHOWN}.")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, job: JobProgress) -> MatchProgress:
        """The public view of a matching job."""
        return cls(
            job_id=job.job_id,
            jd_id=job.jd_id,
            status=job.status,
            current_chunk=job.current_chunk,
            total_chunks=job.total_chunks,
            percent=job.percent,
            total=job.total,
            processed=job.processed,
            failed=job.failed,
            seconds_per_chunk=job.seconds_per_chunk,
            total_seconds=job.total_seconds,
            eta_seconds=job.eta_seconds,
            error=job.error,
            failures=job.failures[:MAX_FAILURES_SHOWN],
            created_at=job.created_at,
            updated_at=job.updated_at,
        )


class MatchResults(BaseModel):
    """A job's ranked results, best first (ties by cv_id); partial while it runs."""

    job_id: str
    jd_id: str | None
    status: JobStatus
    complete: bool = Field(description="The job has ended: no more results will come.")
    total: int = Field(description="CVs in the job.")
    processed: int
    failed: int
    count: int = Field(description="Results in this answer.")
    results: list[MatchResult]


class JobsMatchRequest(_Request):
    """Rank stored JDs for a stored CV (reverse matching), answered at once."""

    cv_id: str = Field(min_length=1, max_length=64)
    jd_ids: list[str] | None = Field(None, description="JDs to rank; omitted = every stored JD.")
    top_k: int | None = Field(None, gt=0)


class JobsMatchResults(BaseModel):
    """The best JDs for a CV, best first (ties by jd_id); each score equals the forward one."""

    cv_id: str
    count: int
    results: list[MatchResult]


class PoolMatchResults(BaseModel):
    """The best stored CVs for a JD over the whole pool, best first (ties by cv_id)."""

    jd_id: str
    pool: int = Field(description="CVs stored when the JD was matched.")
    candidates: int = Field(description="CVs scored in full.")
    exact: bool = Field(
        description="The ranking is the scorer's over the whole pool (below retrieval.ann_min_rows, no BM25 weight)."
    )
    milliseconds: float
    count: int
    results: list[MatchResult]


# ------------------------------------------------------------------------- others


class Deleted(BaseModel):
    """What a DELETE removed."""

    cv_id: str
    deleted: Literal[True] = True


class Health(BaseModel):
    """The API replica answers; which backends it fronts."""

    status: Literal["ok"] = "ok"
    version: str
    standardizer: str
    embedding_model: str
    embedding_dim: int
    auth: bool = Field(description="Whether an X-API-Key is required.")
