"""The progress book as a detached, restartable named actor, and the one way to get it."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

import ray
from ray.actor import ActorHandle

from cvmatch_ray.config import DEFAULT_TENANT, Settings
from cvmatch_ray.progress.book import ProgressBook
from cvmatch_ray.progress.models import (
    FailureRecord,
    JobKind,
    JobProgress,
    JobStatus,
    ProgressActorConflictError,
    ProgressStoreError,
    QueuedJob,
    StepReport,
    UploadStep,
)
from cvmatch_ray.progress.queue import WorkQueue
from cvmatch_ray.schemas import CVStats
from cvmatch_ray.storage.erasure import GRACE
from cvmatch_ray.storage.jobs import JobTable
from cvmatch_ray.storage.lance import resolve_data_dir

logger = logging.getLogger(__name__)

ACTOR_NAME = "cvmatch-progress"


class ProgressBookActor:
    """The progress book as a long-lived actor (see :func:`get_progress_actor`).

    Runs threaded (``max_concurrency``) so concurrent reports share table writes; a
    background thread writes coalesced changes every ``flush_interval_s``.
    """

    def __init__(
        self,
        data_dir: str,
        *,
        flush_interval_s: float = 0.5,
        erase_grace_s: float = GRACE.total_seconds(),
        storage_options: Mapping[str, str] | None = None,
    ) -> None:
        """Args:
            data_dir: the deployment's data directory, where the ``jobs`` table lives.
            flush_interval_s: how often coalesced changes are written.
            erase_grace_s: how long a write may take (``storage.erasure``).
            storage_options: the object store's options (``StoreSettings.storage_options``):
                handed over, not read from this process's environment, which on another
                node need not have them.
        """
        self._data_dir = resolve_data_dir(data_dir)
        table = JobTable(self._data_dir, erase_grace=timedelta(seconds=erase_grace_s), storage_options=storage_options)
        self._book = ProgressBook(table, coalesce_s=flush_interval_s)
        self._queues = {"upload": WorkQueue(self._book, "upload")}
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
        cv_id: str | None = None,
        tenant: str = DEFAULT_TENANT,
        durable: bool = True,
    ) -> JobProgress:
        """See :meth:`ProgressBook.create`."""
        return self._book.create(
            job_id, kind, total, total_chunks=total_chunks, jd_id=jd_id, cv_id=cv_id, tenant=tenant, durable=durable
        )

    def start(self, job_id: str) -> JobProgress:
        """See :meth:`ProgressBook.start`."""
        return self._book.start(job_id)

    def chunk_done(
        self, job_id: str, chunk_index: int, processed: int, failures: Sequence[FailureRecord | Mapping[str, Any]] = ()
    ) -> JobProgress:
        """See :meth:`ProgressBook.chunk_done`."""
        return self._book.chunk_done(job_id, chunk_index, processed, failures)

    def chunks_done(
        self, job_id: str, reports: Sequence[tuple[int, int, Sequence[FailureRecord | Mapping[str, Any]]]]
    ) -> JobProgress:
        """See :meth:`ProgressBook.chunks_done`."""
        return self._book.chunks_done(job_id, reports)

    def set_step(self, job_id: str, step: UploadStep, stats: CVStats | None = None, **error: str | None) -> JobProgress:
        """See :meth:`ProgressBook.set_step` (``error``, ``error_code``, ``error_stage``)."""
        return self._book.set_step(job_id, step, stats, **error)

    def report_steps(self, reports: Sequence[StepReport]) -> int:
        """See :meth:`ProgressBook.report_steps`."""
        return self._book.report_steps(reports)

    def finish(
        self, job_id: str, status: JobStatus, error: str | None = None, *, stats: CVStats | None = None,
        error_code: str | None = None, error_stage: str | None = None,
    ) -> JobProgress:
        """See :meth:`ProgressBook.finish`."""
        return self._book.finish(job_id, status, error, stats=stats, error_code=error_code, error_stage=error_stage)

    def cancel(self, job_id: str) -> JobProgress:
        """See :meth:`ProgressBook.cancel`."""
        return self._book.cancel(job_id)

    def get(self, job_id: str) -> JobProgress:
        """See :meth:`ProgressBook.get`."""
        return self._book.get(job_id)

    def latest_for_jd(self, jd_id: str, tenant: str = DEFAULT_TENANT) -> JobProgress | None:
        """See :meth:`ProgressBook.latest_for_jd`."""
        return self._book.latest_for_jd(jd_id, tenant)

    def list(self, kind: JobKind | None = None, limit: int = 50) -> list[JobProgress]:
        """See :meth:`ProgressBook.list`."""
        return self._book.list(kind, limit)

    def enqueue(self, kind: JobKind, jobs: Sequence[Sequence[str | None]], *, total: int = 1) -> int:
        """See :meth:`WorkQueue.put` (``jobs`` are ``QueuedJob``s)."""
        return self._queue(kind).put(jobs, total=total)

    def claim_queued(
        self, kind: JobKind, limit: int, *, wait_s: float = 0.0, settle_s: float = 0.0, max_delay_s: float = 2.0
    ) -> list[QueuedJob]:
        """See :meth:`WorkQueue.claim` (a long poll holds one of the actor's threads)."""
        return self._queue(kind).claim(limit, wait_s=wait_s, settle_s=settle_s, max_delay_s=max_delay_s)

    def requeue_stale(self, kind: JobKind, older_than_s: float, *, limit: int = 200, max_attempts: int = 0) -> list[str]:
        """See :meth:`WorkQueue.requeue_stalled`."""
        return self._queue(kind).requeue_stalled(older_than_s, limit=limit, max_attempts=max_attempts)

    def release(self, kind: JobKind, job_id: str, *, max_attempts: int = 0) -> JobProgress:
        """See :meth:`WorkQueue.release`."""
        return self._queue(kind).release(job_id, max_attempts=max_attempts)

    def stalled(self, kind: JobKind, older_than_s: float) -> list[str]:
        """See :meth:`ProgressBook.stalled`."""
        return self._book.stalled(kind, older_than_s)

    def done_chunks(self, job_id: str) -> list[list[int]]:
        """See :meth:`ProgressBook.done_chunks`."""
        return self._book.done_chunks(job_id)

    def heartbeat(self, job_ids: Sequence[str]) -> int:
        """See :meth:`ProgressBook.heartbeat`."""
        return self._book.heartbeat(job_ids)

    def known(self, job_ids: Sequence[str]) -> list[str]:
        """See :meth:`ProgressBook.known`."""
        return self._book.known(job_ids)

    def forget(self, job_ids: Sequence[str]) -> int:
        """See :meth:`ProgressBook.forget`."""
        return self._book.forget(job_ids)

    def jobs_of_cv(self, cv_id: str, tenant: str = DEFAULT_TENANT) -> list[str]:
        """See :meth:`ProgressBook.jobs_of_cv`."""
        return self._book.jobs_of_cv(cv_id, tenant)

    def flush(self) -> int:
        """See :meth:`ProgressBook.flush`."""
        return self._book.flush()

    def _queue(self, kind: JobKind) -> WorkQueue:
        try:
            return self._queues[kind]
        except KeyError:
            raise ValueError(f"no work queue for {kind} jobs") from None


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
        settings: ``data_dir`` (the LanceDB URI), ``ray_namespace`` and
            ``store.erase_grace_s`` (of the actor this call creates) are used.
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
            return _get_or_create(settings, data_dir, max_concurrency)
        except ray.exceptions.RayActorError:
            # The name still pointed at an actor killed for good (ray.kill(no_restart=True)
            # is asynchronous); once the GCS drops it, the next try creates a new one.
            if attempt == _GET_ATTEMPTS - 1:
                raise
            logger.info("progress actor is gone; creating it again")
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


_GET_ATTEMPTS = 10


def _get_or_create(settings: Settings, data_dir: str, max_concurrency: int) -> ActorHandle:
    namespace = settings.ray_namespace
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
        ).remote(
            data_dir, erase_grace_s=settings.store.erase_grace_s, storage_options=dict(settings.store.storage_options)
        )
        actor_id = handle._actor_id.hex()
        if actor_id not in _actor_data_dirs:
            # Also waits for __init__ (the reload), so table errors surface here, not later.
            _actor_data_dirs[actor_id] = ray.get(handle.data_dir.remote())
    if _actor_data_dirs[actor_id] != data_dir:
        raise ProgressActorConflictError(f"actor {ACTOR_NAME!r} in namespace {namespace!r} serves another data_dir")
    return handle


