"""Job progress: what the progress endpoints read and what pipelines report to.

In the order a report travels: ``models`` (statuses, steps, ``JobProgress``), ``book``
(the rules, plain Python), ``storage.jobs.JobTable`` (its durable LanceDB copy),
``queue`` (accepted uploads waiting for a worker), ``actor`` (book and queue as one
detached actor) and ``client`` (the one reporter every caller holds).
"""

from cvmatch_ray.progress.actor import ACTOR_NAME, ProgressBookActor, get_progress_actor
from cvmatch_ray.progress.book import ProgressBook
from cvmatch_ray.progress.client import ProgressClient
from cvmatch_ray.progress.models import (
    MAX_FAILURES_KEPT,
    FailureRecord,
    InvalidReportError,
    JobConflictError,
    JobKind,
    JobNotFoundError,
    JobProgress,
    JobStatus,
    ProgressActorConflictError,
    ProgressError,
    ProgressStoreError,
    QueuedJob,
    StepReport,
    UploadStep,
)
from cvmatch_ray.progress.queue import WorkQueue
from cvmatch_ray.storage.jobs import JobTable
from cvmatch_ray.storage.lance import resolve_data_dir

__all__ = [
    "ACTOR_NAME",
    "MAX_FAILURES_KEPT",
    "FailureRecord",
    "InvalidReportError",
    "JobConflictError",
    "JobKind",
    "JobNotFoundError",
    "JobProgress",
    "JobStatus",
    "JobTable",
    "ProgressActorConflictError",
    "ProgressBook",
    "ProgressBookActor",
    "ProgressClient",
    "ProgressError",
    "ProgressStoreError",
    "QueuedJob",
    "StepReport",
    "UploadStep",
    "WorkQueue",
    "get_progress_actor",
    "resolve_data_dir",
]
